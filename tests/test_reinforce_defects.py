"""REINFORCE and GRPO defects shared with the trainer: rollout length, the KL reference."""

import pytest

import envs
import jaxpg


@pytest.mark.parametrize("algo, option", [("reinforce", "num_steps"), ("grpo", "max_steps")])
def test_rollout_length_follows_max_episode_steps(algo, option):
    env, env_params = envs.make("LQR-v0")
    assert int(env_params.max_steps_in_episode) == 200
    per_iteration = 16 * 20
    trainer = jaxpg.make_trainer(algo, env, env_params, max_episode_steps=20, total_timesteps=per_iteration * 10,
                                 **({"num_envs": 16} if algo == "reinforce" else {"num_groups": 4, "group_size": 4}))
    assert getattr(trainer.config, option) == 20 and trainer.config.num_steps == 20
    assert trainer.steps_per_iteration == per_iteration and trainer.total_iterations == 10
    # A limit above the env's own leaves the env's.
    longer = jaxpg.make_trainer(algo, env, env_params, max_episode_steps=500)
    assert getattr(longer.config, option) == 200
    # An explicit rollout length still wins.
    explicit = jaxpg.make_trainer(algo, env, env_params, max_episode_steps=20, **{option: 50})
    assert getattr(explicit.config, option) == 50


def _compensated(policy_params, mean, std):
    """Policy parameters that, fed (obs - mean) / std, compute what `policy_params` compute fed
    obs itself: the first layer absorbs the normalisation."""
    layer = policy_params["params"]["MLP_0"]["Dense_0"]
    kernel = layer["kernel"] * std[:, None]
    bias = layer["bias"] + mean @ layer["kernel"]
    mlp = {**policy_params["params"]["MLP_0"], "Dense_0": {"kernel": kernel, "bias": bias}}
    return {"params": {**policy_params["params"], "MLP_0": mlp}}


@pytest.mark.integration
@pytest.mark.parametrize("algo", ["reinforce", "grpo"])
def test_kl_reference_keeps_the_normalisation_it_was_built_with(algo):
    """With normalize_observations, pi_ref(a|s) must stay the function of the raw observation it
    was at the start: after the statistics move, a policy that computes exactly the reference's
    action distribution (its first layer absorbing the new normalisation) is at KL 0 from it."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from jaxpg.core.normalize import RunningStats

    env, env_params = envs.make("CartPole-v1")
    sizes = dict(num_envs=4, num_steps=16) if algo == "reinforce" else dict(num_groups=2, group_size=2, max_steps=16)
    options = dict(normalize_observations=True, hidden_sizes=(8,), total_timesteps=64, beta=0.1, **sizes)
    plain = jaxpg.make_trainer(algo, env, env_params, **options)
    # A sharp reference, so that evaluating it on differently normalised inputs shows in the KL.
    reference = plain.policy_net.init(jax.random.key(0), jnp.zeros((1, 4)))
    reference["params"]["Dense_0"]["kernel"] = reference["params"]["Dense_0"]["kernel"] * 300.0
    trainer = jaxpg.make_trainer(algo, env, env_params, policy_params=reference, **options)
    state = trainer.init(jax.random.key(1))
    mean = jnp.asarray([0.05, 0.3, -0.02, -0.4], jnp.float32)
    var = jnp.asarray([0.01, 0.5, 0.002, 0.8], jnp.float32)
    moved = RunningStats(mean, var, jnp.asarray(1000.0))
    same_function = _compensated(reference, mean, jnp.sqrt(var + 1e-8))
    state = state.replace(obs_stats=moved, params={**state.params, "policy": same_function})
    _, metrics = trainer.step(state)
    assert float(metrics["kl_to_reference"]) < 1e-6
    for kept, given in zip(jax.tree.leaves(state.extra.reference), jax.tree.leaves(reference)):
        np.testing.assert_array_equal(kept, given)
