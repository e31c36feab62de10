"""GRPO's pieces against plain NumPy, its group rollouts, its config checks, and learning."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import envs
import jaxpg
from jaxpg.grpo import ADVANTAGE_EPS, aggregate, clipped_surrogate, group_advantages, k3_kl


@pytest.mark.parametrize("scale", ["group", "batch", "none"])
def test_group_advantages_match_numpy(scale):
    rng = np.random.default_rng(0)
    returns = rng.normal(size=24).astype(np.float32)
    returns[8:12] = 3.0  # one group with zero spread
    adv, std = group_advantages(jnp.asarray(returns), 4, scale)
    groups = returns.reshape(6, 4)
    centred = groups - groups.mean(1, keepdims=True)
    divisor = {"group": groups.std(1, keepdims=True), "batch": returns.std(), "none": 1.0}[scale]
    np.testing.assert_allclose(adv, (centred / (divisor + ADVANTAGE_EPS)).reshape(-1), rtol=1e-4, atol=1e-5)
    assert np.all(np.asarray(adv)[8:12] == 0) and np.isfinite(np.asarray(adv)).all()
    np.testing.assert_allclose(std, groups.std(1), rtol=1e-5)


@pytest.mark.parametrize("loss_type", ["grpo", "bnpo", "dr_grpo"])
def test_loss_aggregations_match_numpy(loss_type):
    rng = np.random.default_rng(1)
    T, B = 7, 6
    per_step = rng.normal(size=(T, B)).astype(np.float32)
    lengths = rng.integers(1, T + 1, size=B)
    mask = (np.arange(T)[:, None] < lengths[None]).astype(np.float32)
    expected = {
        "grpo": np.mean([per_step[: lengths[b], b].mean() for b in range(B)]),
        "bnpo": sum(per_step[: lengths[b], b].sum() for b in range(B)) / lengths.sum(),
        "dr_grpo": sum(per_step[: lengths[b], b].sum() for b in range(B)) / (B * T),
    }[loss_type]
    np.testing.assert_allclose(aggregate(jnp.asarray(per_step), jnp.asarray(mask), loss_type), expected, rtol=1e-5)


def test_asymmetric_clipping_acts_on_the_correct_side_only():
    ratios = np.array([0.5, 0.79, 1.0, 1.25, 1.5, 0.5, 1.5])
    advantages = jnp.array([1.0, 1.0, 1.0, 1.0, 1.0, -1.0, -1.0])
    objective, low, high = clipped_surrogate(
        jnp.log(ratios)[None], advantages, jnp.ones((1, 7)), 0.2, 0.28, "token"
    )
    # Positive advantage: capped above at 1.28; below 0.8 the unclipped (smaller) term wins.
    np.testing.assert_allclose(objective[0, :5], [0.5, 0.79, 1.0, 1.25, 1.28], rtol=1e-6)
    # Negative advantage: floored at -(0.8) from below; above, the unclipped -1.5 wins.
    np.testing.assert_allclose(objective[0, 5:], [-0.8, -1.5], rtol=1e-6)
    assert np.asarray(high[0]).tolist() == [False, False, False, False, True, False, False]
    assert np.asarray(low[0]).tolist() == [False, False, False, False, False, True, False]


def test_sequence_level_ratio_is_the_geometric_mean():
    log_ratio = jnp.log(jnp.array([[1.1, 0.9], [1.3, 1.0], [2.0, 1.2]]))
    mask = jnp.array([[1.0, 1.0], [1.0, 1.0], [0.0, 1.0]])
    objective, _, _ = clipped_surrogate(log_ratio, jnp.ones(2), mask, 0.5, 0.5, "sequence")
    expected = [np.sqrt(1.1 * 1.3), (0.9 * 1.0 * 1.2) ** (1 / 3)]
    np.testing.assert_allclose(objective[0], expected, rtol=1e-5)


def test_k3_is_nonnegative_and_unbiased_for_categoricals_and_gaussians():
    key = jax.random.key(0)
    p_logits, q_logits = jnp.array([0.3, -1.0, 2.0]), jnp.array([0.0, 0.5, 1.0])
    samples = jax.random.categorical(key, p_logits, shape=(200_000,))
    log_p, log_q = jax.nn.log_softmax(p_logits), jax.nn.log_softmax(q_logits)
    estimates = k3_kl(log_p[samples], log_q[samples])
    exact = float(jnp.sum(jnp.exp(log_p) * (log_p - log_q)))
    assert float(estimates.min()) >= 0
    assert abs(float(estimates.mean()) - exact) < 4 * float(estimates.std()) / np.sqrt(2e5)
    x = 0.4 + 1.3 * jax.random.normal(key, (200_000,))
    gauss = lambda x, m, s: -0.5 * ((x - m) / s) ** 2 - jnp.log(s) - 0.5 * jnp.log(2 * jnp.pi)
    estimates = k3_kl(gauss(x, 0.4, 1.3), gauss(x, -0.2, 1.0))
    exact = np.log(1.0 / 1.3) + (1.3**2 + 0.6**2) / 2 - 0.5
    assert float(estimates.min()) >= 0
    assert abs(float(estimates.mean()) - exact) < 4 * float(estimates.std()) / np.sqrt(2e5)


def test_bad_configs_are_rejected_naming_the_field():
    env, params = envs.make("CartPole-v1")
    cases = [
        (dict(group_size=1), "group_size=1 must be an integer >= 2"),
        (dict(beta=-0.1), "beta=-0.1 is out of range"),
        (dict(clip_eps=1.5), "clip_eps=1.5 is out of range"),
        (dict(clip_eps=0.0), "clip_eps=0 is out of range"),
        (dict(clip_eps_high=0.0), "clip_eps_high=0 is out of range"),
        (dict(scale_rewards="max"), "scale_rewards='max' is unknown; accepted: group, batch, none"),
        (dict(loss_type="dapo"), "loss_type='dapo' is unknown; accepted: grpo, bnpo, dr_grpo"),
        (dict(importance_sampling_level="step"), "importance_sampling_level='step' is unknown"),
    ]
    for options, message in cases:
        with pytest.raises(ValueError, match=message):
            jaxpg.make_trainer("grpo", env, params, **options)


def test_group_members_start_identical_and_common_random_numbers_couple_them():
    env, params = envs.make("CartPole-v1")
    groups, size, steps = 3, 4, 120
    obs, state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(jax.random.key(0), groups), params)
    obs, state = jax.tree.map(lambda x: jnp.repeat(x, size, axis=0), (obs, state))
    always_right = lambda o, k: (jnp.ones(o.shape[0], jnp.int32),) * 2 + (jnp.zeros(o.shape[0]),)

    def trajectories(group_size):
        _, batch = jaxpg.rollout(env, params, always_right, state, obs, jax.random.key(1), steps, group_size)
        return np.asarray(batch.obs).reshape(steps, groups, size, 4)

    shared = trajectories(size)
    assert np.all(shared[0] == shared[0, :, :1])  # identical start states
    # With common random numbers, identical actions give identical outcomes, resets included.
    assert np.all(shared == shared[:, :, :1])
    independent = trajectories(1)
    assert np.all(independent[0] == independent[0, :, :1])
    assert not np.all(independent == independent[:, :, :1])  # after the first reset they differ


def test_grpo_defaults_learn_cartpole():
    env, params = envs.make("CartPole-v1")
    trainer = jaxpg.make_trainer("grpo", env, params, progress=False)
    keys = jax.random.split(jax.random.key(0), 2)
    state, metrics = jax.jit(jax.vmap(trainer.train))(keys)
    returns = jax.vmap(lambda s, k: jaxpg.evaluate(trainer, s, k, 32))(state, jax.random.split(jax.random.key(9), 2))
    assert float(returns.mean()) >= 475, returns.mean(axis=1)
    assert float(np.asarray(metrics["episode_return"])[:, 0].mean()) < 60
    for name in ("group_return_std", "zero_spread_fraction", "clip_fraction_low", "clip_fraction_high",
                 "kl_to_reference", "approx_kl", "entropy", "grad_norm"):
        assert np.isfinite(np.asarray(metrics[name])).all(), name


@pytest.mark.parametrize("env_id", ["Pendulum-v1", "MountainCar-v0"])
def test_grpo_runs_gymnax_environments_unchanged(env_id):
    """A continuous and a discrete gymnax environment, straight from `gymnax.make`."""
    env, params = envs.make(env_id)
    trainer = jaxpg.make_trainer("grpo", env, params, num_groups=2, group_size=2, hidden_sizes=(16,),
                                 total_timesteps=2 * 2 * 200 * 2, progress=False)
    state, metrics = trainer.train(jax.random.key(0))
    assert np.asarray(metrics["episode_return"]).shape == (2,)
    assert np.isfinite(np.asarray(metrics["episode_return"])).all()
    assert not np.asarray(metrics["nonfinite"]).any()
    action = trainer.act(state, trainer.reset_envs(jax.random.key(1), 3)[0], jax.random.key(2))
    assert action.shape[0] == 3
