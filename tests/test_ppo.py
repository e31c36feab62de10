"""PPO specifics: truncation bootstrapping, continuous control, every distribution."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import struct
from gymnax.environments import environment, spaces

import envs
import jaxpg


@struct.dataclass
class ConstantState(environment.EnvState):
    time: jax.Array


class ConstantReward(environment.Environment):
    """Reward 1 forever, cut by a 10-step time limit; the observation never changes.

    The true value of the (single) state is 1 / (1 - gamma). A learner that treats the time
    limit as termination instead learns the average truncated return, 4.1 for gamma = 0.9.
    """

    @property
    def default_params(self):
        return environment.EnvParams(max_steps_in_episode=10)

    def step_env(self, key, state, action, params):
        state = ConstantState(time=state.time + 1)
        return jnp.zeros(1), state, jnp.ones(()), jnp.zeros((), bool), {}

    def reset_env(self, key, params):
        return jnp.zeros(1), ConstantState(time=jnp.zeros((), jnp.int32))

    def action_space(self, params=None):
        return spaces.Discrete(2)


@pytest.mark.integration
def test_truncation_bootstraps_from_the_final_observation():
    env = ConstantReward()
    trainer = jaxpg.make_trainer(
        "ppo", env, env.default_params, num_envs=8, num_steps=32, total_timesteps=8 * 32 * 150,
        gamma=0.9, lr=3e-3, lr_schedule="constant",
    )
    state, _ = trainer.train(jax.random.key(0))
    value = float(trainer.value(state.params, state.obs_stats, jnp.zeros(1)))
    assert abs(value - 10.0) < 1.0, value  # 4.1 if truncation were treated as termination


def pendulum_trainer(total_timesteps, distribution="gaussian", **overrides):
    env, params = envs.make("Pendulum-v1")
    config = dict(
        num_envs=16, num_steps=128, total_timesteps=total_timesteps, update_epochs=10,
        num_minibatches=4, lr=1e-3, gamma=0.95, gae_lambda=0.95, ent_coef=0.0,
        normalize_rewards=True, distribution=distribution, init_std=1.0,
    )
    config.update(overrides)
    return jaxpg.make_trainer("ppo", env, params, **config)


def final_returns(trainer, num_seeds):
    keys = jax.random.split(jax.random.key(1), num_seeds)
    state, metrics = jax.jit(jax.vmap(trainer.train))(keys)
    evaluate = jax.vmap(lambda s, k: jaxpg.evaluate(trainer, s, k, 16))
    returns = evaluate(state, jax.random.split(jax.random.key(2), num_seeds))
    return np.asarray(returns).mean(axis=1), np.asarray(metrics["episode_return"])


@pytest.mark.slow
@pytest.mark.parametrize("distribution", [  # beta, the slowest (30 s), under -m slow for CI time
    "gaussian", "squashed_gaussian", pytest.param("beta", marks=pytest.mark.slow), "fixed_std_gaussian"])
def test_every_continuous_distribution_makes_progress_on_pendulum(distribution):
    """A short run must lift Pendulum's return well above a random policy's (about -1200)."""
    overrides = {"init_std": 0.5} if distribution == "fixed_std_gaussian" else {}
    trainer = pendulum_trainer(16 * 128 * 40, distribution, **overrides)
    evaluated, curve = final_returns(trainer, 1)
    assert np.nanmean(curve[:, :3]) < -1000
    assert evaluated.mean() > -900, evaluated


@pytest.mark.slow
def test_ppo_solves_pendulum():
    trainer = pendulum_trainer(16 * 128 * 300)
    evaluated, _ = final_returns(trainer, 3)
    assert evaluated.mean() >= -250, evaluated
