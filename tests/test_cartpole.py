import gymnasium
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import envs


@pytest.fixture(scope="module")
def cartpole():
    env, params = envs.make("CartPole-v1")
    return env, params, jax.jit(env.step)


def test_matches_gymnasium_step_by_step_over_many_episodes(cartpole):
    """Each transition from an identical state with an identical action agrees to 1e-5.

    Our side runs every episode in one compiled scan (600 steps, the episodes vmapped); the
    reference then replays each episode's actions, re-synchronised to our float32 state before
    every step."""
    env, params, _ = cartpole
    episodes, horizon = 40, 600
    # Half the episodes use a balancing controller so that truncation at 500 is exercised.
    balance = np.arange(episodes) % 2 == 1
    random_actions = np.random.default_rng(0).integers(2, size=(episodes, horizon))

    @jax.jit
    def play(key, balance, random_actions):
        obs, state = env.reset(key, params)

        def one_step(carry, inputs):
            obs, state = carry
            step_key, random_action = inputs
            action = jnp.where(balance, (obs[2] + 0.5 * obs[3] > 0).astype(jnp.int32), random_action)
            next_obs, state, reward, terminated, truncated, info = env.step(step_key, state, action, params)
            out = (obs, action, info["final_observation"], reward, terminated, truncated)
            return (next_obs, state), out

        keys = jax.random.split(jax.random.fold_in(key, 1), horizon)
        return jax.lax.scan(one_step, (obs, state), (keys, random_actions))[1]

    keys = jax.random.split(jax.random.key(0), episodes)
    obs, actions, final_obs, rewards, terminated, truncated = map(
        np.asarray, jax.vmap(play)(keys, jnp.asarray(balance), jnp.asarray(random_actions))
    )
    reference = gymnasium.make("CartPole-v1")
    transitions = terminations = truncations = 0
    for episode in range(episodes):
        reference.reset(seed=episode)
        for t in range(horizon):
            reference.unwrapped.state = obs[episode, t].astype(np.float64)
            ref_obs, ref_reward, ref_terminated, ref_truncated, _ = reference.step(int(actions[episode, t]))
            np.testing.assert_allclose(final_obs[episode, t], ref_obs, atol=1e-5)
            assert float(rewards[episode, t]) == ref_reward
            assert bool(terminated[episode, t]) == ref_terminated and bool(truncated[episode, t]) == ref_truncated
            transitions += 1
            if ref_terminated or ref_truncated:
                terminations += ref_terminated
                truncations += ref_truncated
                break
    assert transitions > 5000 and terminations >= 15 and truncations >= 5


def test_free_running_trajectories_agree(cartpole):
    """Without re-synchronising, whole random-action episodes stay within 1e-5."""
    env, params, step = cartpole
    reference = gymnasium.make("CartPole-v1")
    rng = np.random.default_rng(1)
    key = jax.random.key(1)
    for episode in range(20):
        key, reset_key = jax.random.split(key)
        obs, state = env.reset(reset_key, params)
        reference.reset(seed=episode)
        reference.unwrapped.state = np.asarray(obs, np.float64)
        done = False
        while not done:
            action = int(rng.integers(2))
            key, step_key = jax.random.split(key)
            obs, state, reward, terminated, truncated, info = step(step_key, state, action, params)
            ref_obs, ref_reward, ref_terminated, ref_truncated, _ = reference.step(action)
            np.testing.assert_allclose(info["final_observation"], ref_obs, atol=1e-5)
            assert bool(terminated) == ref_terminated
            done = ref_terminated or ref_truncated


def test_reset_distribution_and_auto_reset(cartpole):
    env, params, step = cartpole
    obs, state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(jax.random.key(2), 4096), params)
    assert obs.shape == (4096, 4) and obs.dtype == jnp.float32
    assert float(jnp.abs(obs).max()) <= 0.05 and float(jnp.abs(obs).max()) > 0.049
    # A terminating step returns the terminal observation in info and a fresh reset obs.
    state = state.replace(theta=jnp.full((4096,), 0.25))
    obs2, state2, reward, terminated, truncated, info = jax.vmap(env.step, in_axes=(0, 0, None, None))(
        jax.random.split(jax.random.key(3), 4096), state, 1, params
    )
    assert bool(terminated.all()) and not bool(truncated.any())
    assert float(jnp.abs(obs2).max()) <= 0.05
    assert float(jnp.abs(info["final_observation"][:, 2]).min()) > 0.2
    assert bool((state2.time == 0).all()) and bool((reward == 1.0).all())


def test_truncates_at_500():
    env, params = envs.make("CartPole-v1", max_steps_in_episode=500)
    _, state = env.reset(jax.random.key(0), params)
    state = state.replace(time=jnp.asarray(499, jnp.int32))
    _, _, _, terminated, truncated, _ = env.step(jax.random.key(1), state, 0, params)
    assert bool(truncated) and not bool(terminated)


def test_make_errors_name_the_problem():
    with pytest.raises(ValueError, match="unknown environment id 'NoSuchEnv'.*CartPole-v1"):
        envs.make("NoSuchEnv")
    with pytest.raises(ValueError, match="unknown parameter.*gravityy"):
        envs.make("CartPole-v1", gravityy=1.0)


def test_gymnax_ids_fall_through():
    env, params = envs.make("Pendulum-v1")
    obs, state = env.reset(jax.random.key(0), params)
    assert obs.shape == (3,)
    env, params = envs.make("Acrobot-v1", max_steps_in_episode=50)
    assert params.max_steps_in_episode == 50
