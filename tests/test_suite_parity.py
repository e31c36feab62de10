"""Other suites through `envs.make("SUITE:ID")`: step-for-step parity with each suite's own API.

Each test plays a fixed action sequence through the adapter and through the suite's native API,
resetting the native environment where an episode ended with the key the adapter's auto-reset
used, and checks, step by step: observations (the adapter's `final_observation` at an end),
rewards, `terminated` and `truncated` (a time-limit cut must arrive as truncated), and the
observation that starts the next episode. Episodes are cut short by the suite's own time limit so
that both kinds of end occur within a few dozen steps. A suite that is not installed skips with
the extra that installs it; the `dev` extra installs them all.

The tests are in the unit tier and their cost is
compiling each suite's step and reset: once for the adapter (its reset and its rollout's scan in
one program) and once for the native walk (its step and its reset, each jitted once with outputs
that compile to the same types they came in with, see `jit_once`). They are a file of their own so
that `--dist loadfile` gives them one worker while the other runs the rest of the tier.
"""

import importlib.util

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import envs
from envs.adapters import SUITES


def needs(suite: str):
    package = SUITES[suite].package
    return pytest.mark.skipif(importlib.util.find_spec(package) is None,
                              reason=f"{suite} is not installed: pip install 'jaxpg[{SUITES[suite].extra}]'")


def jit_once(fn):
    """`jax.jit(fn)` whose outputs hold no weakly typed leaves.

    A suite's step returns some leaves weakly typed that its reset returns strongly typed (brax's
    `done` and `info["truncation"]`), or the other way round (Craftax's state), so the native
    walk's second step would see new input types and compile the step again. With every output
    leaf strongly typed, a reset's state and a step's state are the same input to the step."""
    def strong(x):
        x = jnp.asarray(x)  # a Python number in a state (Craftax's reset has some) would leave weakly typed
        return jax.lax.convert_element_type(x, x.dtype) if jax.typeof(x).weak_type else x

    return jax.jit(lambda *args: jax.tree.map(strong, fn(*args)))


def adapter_rollout(env, params, actions, key):
    """`(first_obs, obs, final_obs, reward, terminated, truncated, keys)` of the adapter over
    `actions`: its reset with `keys[0]` and its steps with `keys[1:]`, one compiled program."""
    keys = jax.random.split(key, len(actions) + 1)

    def step(state, inputs):
        step_key, action = inputs
        obs, state, reward, terminated, truncated, info = env.step(step_key, state, action, params)
        return state, (obs, info["final_observation"], reward, terminated, truncated)

    def rollout(keys, actions):
        first_obs, state = env.reset(keys[0], params)
        return first_obs, jax.lax.scan(step, state, (keys[1:], actions))[1]

    first_obs, out = jax.jit(rollout)(keys, actions)
    return (first_obs, *[jax.tree.map(np.asarray, x) for x in out], keys)


def same_observation(actual, desired, message=""):
    """Equal observation pytrees (the same structure): integer and boolean leaves to the bit,
    float ones to float rounding (the adapter's steps run in one scan, the native ones one
    jitted call at a time, and XLA may fuse them differently)."""
    assert jax.tree.structure(actual) == jax.tree.structure(desired), message
    for a, d in zip(jax.tree.leaves(actual), jax.tree.leaves(desired)):
        a, d = np.asarray(a), np.asarray(d)
        if np.issubdtype(d.dtype, np.floating):
            np.testing.assert_allclose(a, d, rtol=1e-5, atol=1e-6, err_msg=message)
        else:
            np.testing.assert_array_equal(a, d, err_msg=message)
            assert a.dtype == d.dtype, (message, a.dtype, d.dtype)


def at(tree, t):
    """Step `t` of a pytree of arrays stacked over time."""
    return jax.tree.map(lambda x: x[t], tree)


def check_against_native(adapter, native_reset, native_step, actions):
    """Walks the native environment alongside the adapter's rollout.

    `native_reset(key) -> (native_state, obs)`; `native_step(native_state, action) ->
    (native_state, obs, reward, terminated, truncated)` with the suite's own end signals.
    Returns the numbers of terminated and truncated ends seen."""
    first_obs, obs, final_obs, reward, terminated, truncated, keys = adapter
    state, native_obs = native_reset(keys[0])
    same_observation(first_obs, native_obs)
    ends = {"terminated": 0, "truncated": 0}
    for t, action in enumerate(np.asarray(actions)):
        state, native_obs, native_reward, native_terminated, native_truncated = native_step(state, action)
        same_observation(at(final_obs, t), native_obs, f"step {t}")
        np.testing.assert_allclose(reward[t], native_reward, rtol=1e-5, err_msg=f"step {t}")
        assert bool(terminated[t]) == bool(native_terminated), f"step {t}: terminated"
        assert bool(truncated[t]) == bool(native_truncated), f"step {t}: truncated"
        if native_terminated or native_truncated:
            ends["terminated" if native_terminated else "truncated"] += 1
            # The adapter's auto-reset got the whole step key (these suites' steps draw nothing).
            state, native_obs = native_reset(keys[t + 1])
            same_observation(at(obs, t), native_obs, f"step {t}: reset")
        else:
            same_observation(at(obs, t), native_obs, f"step {t}")
    return ends


def random_actions(n: int, num_actions: int, seed: int = 0):
    return jax.random.randint(jax.random.key(seed), (n,), 0, num_actions)


@needs("navix")
def test_navix_matches_its_transitions_and_splits_its_step_types():
    import navix

    native = navix.make("Navix-Empty-5x5-v0", max_steps=12)
    env, params = envs.make("navix:Navix-Empty-5x5-v0", max_steps=12)
    # Forward, forward, turn, forward, forward reaches the goal; twelve turns run out the time.
    actions = jnp.array(([2, 2, 1, 2, 2] + [0] * 12) * 2)
    step_fn, reset_fn = jit_once(native._step), jit_once(native.reset)

    def reset(key):
        timestep = reset_fn(key)
        return timestep, timestep.observation

    def step(timestep, action):
        # NAVIX's public step resets on the step after an end; a transition is its `_step`.
        timestep = step_fn(timestep, action)
        return timestep, timestep.observation, timestep.reward, timestep.step_type == 2, timestep.step_type == 1

    ends = check_against_native(adapter_rollout(env, params, actions, jax.random.key(1)), reset, step, actions)
    assert ends["terminated"] > 0 and ends["truncated"] > 0, ends


@needs("xminigrid")
def test_xminigrid_matches_its_steps_and_reads_the_goal_from_the_discount():
    import xminigrid

    native, native_params = xminigrid.make("MiniGrid-Empty-5x5")
    native_params = native_params.replace(max_steps=10)
    env, params = envs.make("xminigrid:MiniGrid-Empty-5x5")
    params = params.replace(max_steps_in_episode=10)
    # The first episode walks to the goal; the others turn or bump until the limit.
    actions = jnp.array(([0, 0, 1, 0, 0] + [1] * 10 + [0, 0, 2, 0, 0] + [0] * 3 + [1] * 7) * 3)
    step_fn, reset_fn = jit_once(native.step), jit_once(native.reset)

    def reset(key):
        timestep = reset_fn(native_params, key)
        return timestep, timestep.observation

    def step(timestep, action):
        timestep = step_fn(native_params, timestep, action)
        last = timestep.step_type == 2
        return (timestep, timestep.observation, timestep.reward, last & (timestep.discount == 0),
                last & (timestep.discount == 1))

    ends = check_against_native(adapter_rollout(env, params, actions, jax.random.key(2)), reset, step, actions)
    assert ends["terminated"] > 0 and ends["truncated"] > 0, ends


@needs("jumanji")
def test_jumanji_snake_splits_its_time_limit_from_a_death():
    import jumanji

    native = jumanji.make("Snake-v1", time_limit=15)
    env, params = envs.make("jumanji:Snake-v1", time_limit=15)
    actions = jnp.tile(jnp.array([0, 1, 2, 3]), 40)  # circles: a snake of length 1 survives
    actions = jnp.where(jnp.arange(160) % 97 > 80, 0, actions)  # and sometimes runs into a wall
    step_fn, reset_fn = jit_once(native.step), jit_once(native.reset)
    fields = lambda observation: dict(observation._asdict())  # grid, step_count, action_mask

    def reset(key):
        state, timestep = reset_fn(key)
        return state, fields(timestep.observation)

    def step(state, action):
        state, timestep = step_fn(state, action)
        last = timestep.step_type == 2
        cut = last & (state.step_count >= 15)
        return state, fields(timestep.observation), timestep.reward, last & ~cut, cut

    ends = check_against_native(adapter_rollout(env, params, actions, jax.random.key(3)), reset, step, actions)
    assert ends["terminated"] > 0 and ends["truncated"] > 0, ends


@needs("jumanji")
def test_jumanji_evaluation_horizon_is_its_time_limit():
    """`env_params.max_steps_in_episode`, the horizon `jaxpg.evaluate` runs to, is Jumanji's time
    limit, not gymnax's EnvParams default of 1 (which scored every evaluation on one step)."""
    assert envs.make("jumanji:Snake-v1")[1].max_steps_in_episode == 4000
    assert envs.make("jumanji:Snake-v1", time_limit=15)[1].max_steps_in_episode == 15


def brax_like_check(env, params, suite_env, limit, num_actions_dim, steps=120):
    """brax's State API under brax's own `EpisodeWrapper`, whose `info["truncation"]` marks a
    time-limit end; brax and Playground share it."""
    from brax.envs.wrappers.training import EpisodeWrapper

    native = EpisodeWrapper(suite_env, episode_length=limit, action_repeat=1)
    actions = jax.random.uniform(jax.random.key(4), (steps, num_actions_dim), minval=-1, maxval=1)
    reset_fn, step_fn = jit_once(native.reset), jit_once(native.step)

    def reset(key):
        state = reset_fn(key)
        return state, state.obs

    def step(state, action):
        state = step_fn(state, action)
        truncation = state.info["truncation"] > 0
        return state, state.obs, state.reward, (state.done > 0) & ~truncation, truncation

    return check_against_native(adapter_rollout(env, params, actions, jax.random.key(5)), reset, step, actions)


@needs("brax")
def test_brax_matches_its_episode_wrapper():
    env, params = envs.make("brax:inverted_pendulum", backend="spring", max_steps_in_episode=12)
    ends = brax_like_check(env, params, env.suite_env, 12, env.action_space(params).shape[0])
    assert ends["terminated"] > 0 and ends["truncated"] > 0, ends


@needs("playground")
def test_playground_matches_brax_episode_wrapper():
    env, params = envs.make("playground:CartpoleBalance", max_steps_in_episode=10)
    ends = brax_like_check(env, params, env.suite_env, 10, env.action_space(params).shape[0], steps=40)
    assert ends["truncated"] > 0, ends  # the dm_control tasks end only by the limit


# Craftax's world generation makes its step the slowest program of the unit tier to compile: this
# test takes about 10 s, nearly all of it XLA compiling the adapter's rollout (5.9 s) and the
# native step (1.8 s) and reset (0.6 s). No compiler option measured made them faster.
@needs("craftax")
def test_craftax_calls_an_end_at_its_time_limit_truncated():
    env, params = envs.make("craftax:Craftax-Classic-Symbolic-v1")
    params = params.replace(max_steps_in_episode=7)
    native = env.suite_env
    native_params = native.default_params.replace(max_timesteps=7)
    actions = random_actions(30, env.action_space(params).n)
    rollout = adapter_rollout(env, params, actions, jax.random.key(6))
    first_obs, obs, final_obs, reward, terminated, truncated, keys = rollout
    # Craftax's step draws: replay it with the key the adapter's step passed on.
    step_fn, reset_fn = jit_once(native.step_env), jit_once(native.reset_env)
    native_obs, state = reset_fn(keys[0], native_params)
    same_observation(first_obs, native_obs)
    for t, action in enumerate(np.asarray(actions)):
        step_key, reset_key = jax.random.split(keys[t + 1])
        native_obs, state, native_reward, done, info = step_fn(step_key, state, action, native_params)
        same_observation(final_obs[t], native_obs, f"step {t}")
        np.testing.assert_allclose(reward[t], native_reward, rtol=1e-5)
        # A random agent does not die in 7 steps: every Craftax `done` here is the time limit.
        assert not terminated[t] and bool(truncated[t]) == bool(done), t
        if done:
            native_obs, state = reset_fn(reset_key, native_params)
            same_observation(obs[t], native_obs, f"step {t}: reset")
    assert truncated.sum() == 4
