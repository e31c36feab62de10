import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import struct
from gymnax.environments import environment

import envs
from envs.autoreset import AutoResetEnv


@struct.dataclass
class State(environment.EnvState):
    x: jax.Array
    time: jax.Array


class Coin(AutoResetEnv[State, environment.EnvParams]):
    """Each step and reset record the key they were given; a step terminates when its action is 1
    and an episode is truncated after `max_steps_in_episode` (default 1) steps."""

    def reset_env(self, key, params):
        state = State(x=jax.random.uniform(key), time=jnp.int32(0))
        return state.x[None], state

    def step_env(self, key, state, action, params):
        state = State(x=jax.random.uniform(key) + 10.0, time=state.time + 1)
        return state.x[None], state, jnp.float32(1.0), action == 1, {"extra": state.x}


class NoDrawCoin(Coin):
    step_env_draws = False


class ExclusiveCoin(Coin):
    truncated_excludes_terminated = True


def test_own_environments_share_the_one_step():
    for env_id in envs.ENV_IDS:
        env, _ = envs.make(env_id)
        assert isinstance(env, AutoResetEnv), env_id
        assert type(env).step is AutoResetEnv.step, env_id


@pytest.mark.parametrize("action", [0, 1])
def test_step_matches_gymnax_and_splits_the_key(action):
    env, params = Coin(), environment.EnvParams(max_steps_in_episode=5)
    _, state = env.reset(jax.random.key(0), params)
    ours = env.step(jax.random.key(1), state, action, params)
    theirs = environment.Environment.step(env, jax.random.key(1), state, action, params)
    assert jax.tree.structure(ours) == jax.tree.structure(theirs)
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs)):
        np.testing.assert_array_equal(a, b)
    key_step, key_reset = jax.random.split(jax.random.key(1))
    obs, _, _, _, _, info = ours
    assert float(info["extra"]) == float(jax.random.uniform(key_step) + 10.0)
    if action == 1:  # reset: its key is the other half of the split
        assert float(obs[0]) == float(jax.random.uniform(key_reset))


def test_a_step_env_that_draws_nothing_passes_the_whole_key_to_the_reset():
    env, params = NoDrawCoin(), environment.EnvParams(max_steps_in_episode=5)
    _, state = env.reset(jax.random.key(0), params)
    obs, state, reward, terminated, truncated, info = env.step(jax.random.key(1), state, 1, params)
    assert float(obs[0]) == float(jax.random.uniform(jax.random.key(1)))
    assert bool(terminated) and not bool(truncated) and int(state.time) == 0
    assert float(info["final_observation"][0]) == float(info["extra"])


def test_truncation_with_and_without_termination():
    params = environment.EnvParams(max_steps_in_episode=1)
    for env, both in ((Coin(), True), (ExclusiveCoin(), False)):
        _, state = env.reset(jax.random.key(0), params)
        _, _, _, terminated, truncated, info = env.step(jax.random.key(1), state, 1, params)
        assert bool(terminated) and bool(truncated) == both
        assert bool(info["truncated"]) == both and bool(info["terminated"])
        _, _, _, terminated, truncated, _ = env.step(jax.random.key(1), state, 0, params)
        assert not bool(terminated) and bool(truncated)
