"""Learning tests: each algorithm must reach a return threshold over several vmapped seeds.

A broken gradient, sign error or masking bug leaves CartPole returns near 20-40; the thresholds
below are ones only a working learner reaches. PPO's defaults on CartPole are its preset, which
tests/test_presets.py holds to 475 on every one of 4 seeds.
"""

import jax
import numpy as np
import pytest

import envs
import jaxpg

pytestmark = pytest.mark.slow


def train_and_evaluate(trainer, num_seeds, seed=0, num_episodes=32):
    keys = jax.random.split(jax.random.key(seed), num_seeds)
    state, metrics = jax.jit(jax.vmap(trainer.train))(keys)
    eval_keys = jax.random.split(jax.random.key(seed + 100), num_seeds)
    returns = jax.jit(jax.vmap(lambda s, k: jaxpg.evaluate(trainer, s, k, num_episodes)))(state, eval_keys)
    return np.asarray(returns).mean(axis=1), metrics


def test_reinforce_with_value_baseline_learns_cartpole():
    """Budget: 3 seeds x 1.2M env steps (16 episodes x 500 steps x 150 iterations)."""
    env, params = envs.make("CartPole-v1")
    trainer = jaxpg.make_trainer(
        "reinforce", env, params, num_envs=16, total_timesteps=16 * 500 * 150, baseline="value"
    )
    per_seed, metrics = train_and_evaluate(trainer, 3)
    assert per_seed.mean() >= 450, per_seed
    assert np.asarray(metrics["episode_return"])[:, 0].mean() < 60  # it started from scratch

