"""GRPO's advantages against plain NumPy, its group rollouts, its config checks, and learning.

Its loss pieces are tested in test_losses.py."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import envs
import jaxpg
from envs.tokens import EOS, VOCAB_SIZE
from jaxpg.core.advantages import ADVANTAGE_EPS, group_advantages


@pytest.mark.parametrize("scale", ["group", "batch", "none"])
def test_group_advantages_match_numpy(scale):
    # TRL divides by torch's std, the unbiased (ddof=1) estimate, for both group and batch.
    rng = np.random.default_rng(0)
    returns = rng.normal(size=24).astype(np.float32)
    returns[8:12] = 3.0  # one group with zero spread
    adv, std = group_advantages(jnp.asarray(returns), 4, scale)
    groups = returns.reshape(6, 4)
    centred = groups - groups.mean(1, keepdims=True)
    divisor = {"group": groups.std(1, ddof=1, keepdims=True), "batch": returns.std(ddof=1), "none": 1.0}[scale]
    np.testing.assert_allclose(adv, (centred / (divisor + ADVANTAGE_EPS)).reshape(-1), rtol=1e-4, atol=1e-5)
    assert np.all(np.asarray(adv)[8:12] == 0) and np.isfinite(np.asarray(adv)).all()
    np.testing.assert_allclose(std, groups.std(1, ddof=1), rtol=1e-5)


def test_bad_configs_are_rejected_naming_the_field():
    env, params = envs.make("CartPole-v1")
    cases = [
        (dict(group_size=1), "group_size=1 must be an integer >= 2"),
        (dict(beta=-0.1), "beta=-0.1 is out of range"),
        (dict(clip_eps=1.5), "clip_eps=1.5 is out of range"),
        (dict(clip_eps=0.0), "clip_eps=0 is out of range"),
        (dict(clip_eps_high=0.0), "clip_eps_high=0 is out of range"),
        (dict(scale_rewards="max"), "scale_rewards='max' is unknown; accepted: group, batch, none"),
        (dict(loss_type="gspo"), "loss_type='gspo' is unknown; accepted: grpo, bnpo, dr_grpo, dapo"),
        (dict(num_envs=7), "num_envs is derived"),
        (dict(importance_sampling_level="step"), "importance_sampling_level='step' is unknown"),
        (dict(advantage="loo"), "advantage='loo' is unknown; accepted: group, rloo"),
        (dict(delta=1.0), "delta=1 is out of range"),
        (dict(mask_truncated_completions=1), "mask_truncated_completions=1 must be True or False"),
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


@pytest.mark.slow
def test_grpo_defaults_learn_cartpole():
    env, params = envs.make("CartPole-v1")
    trainer = jaxpg.make_trainer("grpo", env, params)
    keys = jax.random.split(jax.random.key(0), 2)
    state, metrics = jax.jit(jax.vmap(trainer.train))(keys)
    returns = jax.vmap(lambda s, k: jaxpg.evaluate(trainer, s, k, 32))(state, jax.random.split(jax.random.key(9), 2))
    assert float(returns.mean()) >= 475, returns.mean(axis=1)
    assert float(np.asarray(metrics["episode_return"])[:, 0].mean()) < 60
    for name in ("group_return_std", "zero_spread_fraction", "clip_fraction_low", "clip_fraction_high",
                 "kl_to_reference", "approx_kl", "entropy", "grad_norm"):
        assert np.isfinite(np.asarray(metrics[name])).all(), name


@pytest.mark.slow
@pytest.mark.parametrize("env_id", ["Pendulum-v1", "MountainCar-v0"])
def test_grpo_runs_gymnax_environments_unchanged(env_id):
    """A continuous and a discrete gymnax environment, straight from `gymnax.make`."""
    env, params = envs.make(env_id)
    trainer = jaxpg.make_trainer("grpo", env, params, num_groups=2, group_size=2, hidden_sizes=(16,),
                                 total_timesteps=2 * 2 * 200 * 2)
    state, metrics = trainer.train(jax.random.key(0))
    assert np.asarray(metrics["episode_return"]).shape == (2,)
    assert np.isfinite(np.asarray(metrics["episode_return"])).all()
    assert not np.asarray(metrics["nonfinite"]).any()
    action = trainer.act(state, trainer.reset_envs(jax.random.key(1), 3)[0], jax.random.key(2))
    assert action.shape[0] == 3


class NeverEOS(nn.Module):
    """A categorical policy over the token vocabulary that favours one digit and rarely ends."""

    @nn.compact
    def __call__(self, obs):
        start = lambda key: 4.0 * jax.nn.one_hot(3, VOCAB_SIZE) - 8.0 * jax.nn.one_hot(EOS, VOCAB_SIZE)
        bias = self.param("bias", start)
        return jnp.broadcast_to(bias, obs.shape[:-1] + (VOCAB_SIZE,)), jnp.zeros(())


@pytest.mark.integration
def test_token_options_reach_the_update():
    """mask_truncated_completions leaves never-terminated members out (no gradient at all when
    every member is truncated); delta and advantage='rloo' are accepted and stored."""
    env, params = envs.make("Copy-v0", num_digits=2, reward="partial")
    common = dict(policy_network=NeverEOS(), num_groups=4, group_size=4, total_timesteps=4 * 4 * 3, lr=0.1)
    trainer = jaxpg.make_trainer("grpo", env, params, mask_truncated_completions=True, **common)
    assert trainer.config.delta == float("inf") and float(trainer.hparams["delta"]) == float("inf")
    state = trainer.init(jax.random.key(0))
    new, metrics = trainer.step(state)
    assert float(metrics["truncated_fraction"]) == 1.0 and float(metrics["group_return_std"]) > 0
    np.testing.assert_array_equal(new.params["policy"]["params"]["bias"], state.params["policy"]["params"]["bias"])
    for options in (dict(), dict(advantage="rloo", scale_rewards="none", delta=1.5)):
        other = jaxpg.make_trainer("grpo", env, params, **common, **options)
        moved, _ = other.step(other.init(jax.random.key(0)))
        assert not np.array_equal(moved.params["policy"]["params"]["bias"], state.params["policy"]["params"]["bias"])
    assert float(other.hparams["delta"]) == 1.5 and other.config.advantage == "rloo"


@pytest.mark.integration
def test_a_swept_clip_eps_moves_both_clip_bounds():
    """clip_eps_high=None follows clip_eps where the loss is traced, so a clip_eps given as a
    hyperparameter (a sweep) narrows the upper bound too, not only the lower one."""
    env, params = envs.make("CartPole-v1")
    trainer = jaxpg.make_trainer("grpo", env, params, num_groups=4, group_size=4, max_steps=50, num_iterations=4,
                                 hidden_sizes=(16,), lr=3e-3, total_timesteps=4 * 4 * 50 * 2)
    assert trainer.config.clip_eps_high is None and np.isnan(trainer.hparams["clip_eps_high"])
    run = jax.jit(lambda hparams: trainer.train(jax.random.key(0), hparams)[1])
    narrow, wide = run({"clip_eps": 1e-4}), run({"clip_eps": 0.2})
    # After the first of 4 updates per batch the ratio has moved by about 1e-3: past 1 + 1e-4, far from 1.2.
    assert float(narrow["clip_fraction_high"].max()) > 0.05, narrow["clip_fraction_high"]
    assert float(wide["clip_fraction_high"].max()) == 0.0, wide["clip_fraction_high"]
    explicit = run({"clip_eps": 1e-4, "clip_eps_high": 0.2})
    assert float(explicit["clip_fraction_high"].max()) == 0.0
