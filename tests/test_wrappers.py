"""envs.wrappers: TimeLimit's truncation and auto-reset, RandomizedParams' per-episode draws."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import envs
import jaxpg
from envs.wrappers import RandomizedParams, TimeLimit


def run(env, params, key, num_steps, action):
    """Steps one environment `num_steps` times with a constant action: (states, step outputs)."""
    obs, state = env.reset(jax.random.key(0), params)

    def one(carry, step_key):
        obs, state = carry
        obs, state, reward, terminated, truncated, info = env.step(step_key, state, action, params)
        return (obs, state), (obs, state, reward, terminated, truncated, info)

    _, out = jax.lax.scan(one, (obs, state), jax.random.split(key, num_steps))
    return state, out


def test_time_limit_truncates_at_the_step_count_and_auto_resets():
    env, params = envs.make("LQR-v0", state_dim=2, action_dim=1)
    wrapped = TimeLimit(env, 5)
    _, (obs, state, reward, terminated, truncated, info) = run(wrapped, params, jax.random.key(1), 12, jnp.zeros(1))
    np.testing.assert_array_equal(truncated, np.arange(1, 13) % 5 == 0)
    assert not terminated.any()
    np.testing.assert_array_equal(state.steps, np.arange(1, 13) % 5)
    np.testing.assert_array_equal(info["truncated"], truncated)
    # After the cut: a fresh start (the inner clock too), the reached state in final_observation.
    np.testing.assert_array_equal(state.env_state.time, np.arange(1, 13) % 5)
    for t in (4, 9):
        assert np.all(np.abs(obs[t]) <= 1.0)
        assert not np.allclose(obs[t], info["final_observation"][t])
    np.testing.assert_array_equal(obs[:4], info["final_observation"][:4])


def test_time_limit_leaves_termination_and_the_env_limit_alone():
    env, params = envs.make("CartPole-v1")
    # Always pushing right ends CartPole (terminated) long before 100 steps.
    _, (_, state, _, terminated, truncated, _) = run(TimeLimit(env, 100), params, jax.random.key(2), 60, 1)
    _, (_, _, _, terminated_raw, truncated_raw, _) = run(env, params, jax.random.key(2), 60, 1)
    # Same start, same dynamics: the first episode ends where the raw environment's does (later
    # resets draw from other keys).
    first = int(np.argmax(terminated))
    assert terminated.sum() >= 3 and not truncated.any() and first == int(np.argmax(terminated_raw))
    assert state.steps[first] == 0 and state.steps[first + 1] == 1
    # A limit longer than the environment's own: the environment truncates as before.
    lqr, lqr_params = envs.make("LQR-v0", horizon=7)
    _, (_, _, _, _, truncated, _) = run(TimeLimit(lqr, 50), lqr_params, jax.random.key(3), 14, jnp.zeros(1))
    np.testing.assert_array_equal(truncated, np.arange(1, 15) % 7 == 0)


def test_time_limit_refuses_a_bad_count():
    env, _ = envs.make("CartPole-v1")
    with pytest.raises(ValueError, match="max_steps"):
        TimeLimit(env, 0)


@pytest.mark.integration
def test_max_episode_steps_none_is_the_unwrapped_env_and_a_count_cuts_training_episodes():
    env, params = envs.make("CartPole-v1")
    small = dict(num_envs=4, num_steps=16, total_timesteps=4 * 16 * 2, hidden_sizes=(8,))
    plain = jaxpg.make_trainer("ppo", env, params, **small)
    assert plain.train_env is env
    cut = jaxpg.make_trainer("ppo", env, params, max_episode_steps=5, **small)
    assert isinstance(cut.train_env, TimeLimit) and cut.env is env
    _, metrics = cut.train(jax.random.key(0))
    assert float(metrics["episode_length"].max()) <= 5.0


def scaled_length(key, p):
    return p.replace(length=p.length * jax.random.uniform(key, (), minval=0.5, maxval=2.0))


def test_randomized_params_draws_at_every_reset_and_an_episode_keeps_its_own():
    env, params = envs.make("CartPole-v1")
    wrapped = RandomizedParams(env, scaled_length)
    _, first = wrapped.reset(jax.random.key(0), params)
    _, second = wrapped.reset(jax.random.key(1), params)
    assert float(first.params.length) != float(second.params.length)
    assert 0.25 <= float(first.params.length) <= 1.0
    # Always pushing right: episodes end by termination; each keeps its length until it ends.
    state, (_, states, _, terminated, truncated, _) = run(wrapped, params, jax.random.key(3), 200, 1)
    lengths = np.asarray(states.params.length)
    done = np.asarray(terminated | truncated)
    assert done.sum() >= 3
    # states[t] follows step t: the step that ends an episode returns the next one's draw.
    changes = np.flatnonzero(np.diff(lengths) != 0) + 1
    np.testing.assert_array_equal(changes, np.flatnonzero(done[1:]) + 1)


def test_randomized_params_step_uses_the_drawn_params():
    env, params = envs.make("CartPole-v1")
    wrapped = RandomizedParams(env, lambda key, p: p.replace(length=jnp.asarray(2.0)))
    obs, state = wrapped.reset(jax.random.key(0), params)
    key = jax.random.key(1)
    wrapped_obs = wrapped.step(key, state, 1, params)[0]
    long_obs = env.step(jax.random.split(key)[0], state.env_state, 1, params.replace(length=2.0))[0]
    nominal_obs = env.step(jax.random.split(key)[0], state.env_state, 1, params)[0]
    np.testing.assert_allclose(wrapped_obs, long_obs)
    assert not np.allclose(wrapped_obs, nominal_obs)


@pytest.mark.slow
def test_randomized_params_trains_inside_a_trainer():
    env, params = envs.make("CartPole-v1")
    trainer = jaxpg.make_trainer(
        "ppo", RandomizedParams(env, scaled_length), params, num_envs=8, num_steps=32,
        total_timesteps=8 * 32 * 20, hidden_sizes=(16,), lr=3e-3,
    )
    state, metrics = trainer.train(jax.random.key(0))
    lengths = np.asarray(state.env_state.params.length)
    assert len(np.unique(lengths)) == 8
    assert np.isfinite(np.asarray(metrics["episode_return"])).all()
    assert float(metrics["episode_return"][-5:].mean()) > float(metrics["episode_return"][:3].mean())
