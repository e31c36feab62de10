"""Other suites through `envs.make("SUITE:ID")`: the registry's errors and training on each suite.

The step-for-step parity with each suite's own API is tests/test_suite_parity.py (unit tier). The
training tests here run under -m integration: each compiles a PPO program around a suite's step,
which the unit tier's 3 minutes cannot hold for all of them.
"""

import jax
import numpy as np
import pytest
from test_suite_parity import needs

import envs
from envs.adapters import SUITES


def test_unknown_suite_and_id_are_one_line_errors():
    with pytest.raises(ValueError, match="unknown suite 'nosuch'.*accepted: brax, playground"):
        envs.make("nosuch:Thing")
    installed = envs.suites()
    assert set(installed) <= set(SUITES)
    if "navix" in installed:
        with pytest.raises(ValueError, match="navix:Nope is not a NAVIX environment; accepted: .*Navix-Empty-5x5-v0"):
            envs.make("navix:Nope")


# (suite, id, env options, trainer options): Snake's dict observation with its action mask and
# XLand-MiniGrid's cell grid go through the CNN, the rest through the MLP. Craftax is left to its
# parity test: its observations are one flat vector, and compiling its world generation into a
# training program takes about a minute on 2 cores.
CNN = {"policy": "cnn", "cnn_channels": (4,)}
TRAINABLE = [("navix", "navix:Navix-Empty-5x5-v0", {}, {}), ("xminigrid", "xminigrid:MiniGrid-Empty-5x5", {}, CNN),
             ("jumanji", "jumanji:Snake-v1", {}, CNN), ("brax", "brax:inverted_pendulum", {"backend": "spring"}, {}),
             ("craftax", "craftax:Craftax-Classic-Symbolic-v1", {}, {"resets_per_step": 1})]


def train_two_iterations(algo, env, params, **size):
    import jaxpg

    trainer = jaxpg.make_trainer(algo, env, params, hidden_sizes=(16,), total_timesteps=2 * 64, **size)
    _, metrics = trainer.train(jax.random.key(0))
    assert np.isfinite(np.asarray(metrics["loss"])).all(), (algo, metrics["loss"])


@pytest.mark.integration
@pytest.mark.parametrize("suite, env_id, options, trainer_options", [
    pytest.param(*case, marks=needs(case[0]), id=case[1]) for case in TRAINABLE])
def test_ppo_trains_on_every_suite_unchanged(suite, env_id, options, trainer_options):
    """The trainers take a suite's environment as they take ours: two PPO iterations run, with
    finite losses."""
    train_two_iterations("ppo", *envs.make(env_id, **options), num_envs=4, num_steps=16, **trainer_options)


@pytest.mark.integration
@needs("navix")
def test_reinforce_and_grpo_train_on_a_suite_environment():
    env, params = envs.make("navix:Navix-Empty-5x5-v0")
    train_two_iterations("reinforce", env, params, num_envs=4, num_steps=16)
    train_two_iterations("grpo", env, params, num_groups=2, group_size=2, max_steps=16)


CHECKPOINTED = [*TRAINABLE, ("playground", "playground:CartpoleBalance", {}, {})]


@pytest.mark.integration
@pytest.mark.parametrize("suite, env_id, options, trainer_options", [
    pytest.param(*case, marks=needs(case[0]), id=case[1]) for case in CHECKPOINTED])
def test_every_suites_train_state_is_checkpointed_and_restored(suite, env_id, options, trainer_options, tmp_path):
    """A run's checkpoint holds the suite's environment states as they are (MJX's hold zero-size
    arrays, which orbax refuses on its own); nothing is compiled: the state is zeros of its shape."""
    import jax.numpy as jnp

    import jaxpg
    from jaxpg.run.checkpoint import Checkpoints

    env, params = envs.make(env_id, **options)
    trainer = jaxpg.make_trainer("ppo", env, params, num_envs=2, num_steps=4, **trainer_options)
    like = jax.eval_shape(jax.vmap(trainer.init), jax.random.split(jax.random.key(0), 2))
    is_key = lambda x: jnp.issubdtype(x.dtype, jax.dtypes.prng_key)
    state = jax.tree.map(lambda x: jax.random.wrap_key_data(jnp.ones((*x.shape, 2), jnp.uint32)) if is_key(x)
                         else jnp.ones(x.shape, x.dtype), like)
    checkpoints = Checkpoints(str(tmp_path))
    checkpoints.save(1, state, {})
    step, restored, _ = checkpoints.restore_latest(like, jax.random.key_impl(jax.random.key(0)))
    checkpoints.close()
    data = lambda t: [jax.random.key_data(x) if is_key(x) else x for x in jax.tree.leaves(t)]
    assert step == 1 and all(np.array_equal(a, b) for a, b in zip(data(state), data(restored)))
