"""Craftax (`craftax:ID`, e.g. `craftax:Craftax-Classic-Symbolic-v1`, `craftax:Craftax-Symbolic-v1`,
and the `-Pixels-` variants).

Craftax's `done` covers death, lava, beating the boss and its time limit alike
(`state.timestep >= params.max_timesteps`, 10,000 by default), and its `info["discount"]` is 0 on
all of them. The adapter asks Craftax's own `is_terminal` once with the limit lifted: that is
`terminated`; an end that only the limit explains is `truncated`. The limit is
`env_params.max_steps_in_episode` (default Craftax's), passed to Craftax at every step. The
adapter wraps Craftax's environment without its auto-reset (which builds a new world on every
step under `vmap`) and resets only where an episode ended.
"""

import jax
import jax.numpy as jnp

from envs.adapters.base import SuiteEnv, TimeLimitParams, start
from envs.gymnax_api import spaces

NO_LIMIT = jnp.iinfo(jnp.int32).max


class CraftaxEnv(SuiteEnv):
    suite_name = "craftax"
    costly_reset = True  # a world generated per reset: what counts only first episodes shares one per step

    def reset_env(self, key, params):
        obs, suite_state = self.suite_env.reset_env(key, params.suite)
        return obs, start(suite_state)

    def step_env(self, key, state, action, params):
        limited = params.suite.replace(max_timesteps=params.max_steps_in_episode)
        obs, suite_state, reward, done, info = self.suite_env.step_env(key, state.inner, action, limited)
        terminated = jnp.asarray(self.suite_env.is_terminal(suite_state, params.suite.replace(max_timesteps=NO_LIMIT)))
        truncated = jnp.asarray(done) & ~terminated
        state = state.replace(inner=suite_state, time=state.time + 1, truncated=truncated)
        return obs, state, jnp.asarray(reward, jnp.float32), terminated, {}

    def observation_space(self, params):
        shape = jax.eval_shape(self.reset_env, jax.random.key(0), params)[0].shape
        return spaces.Box(0.0, 1.0, shape, jnp.float32)

    def action_space(self, params):
        return spaces.Discrete(int(self.suite_env.action_space(params.suite).n))


IDS = ("Craftax-Classic-Symbolic-v1", "Craftax-Classic-Pixels-v1", "Craftax-Symbolic-v1", "Craftax-Pixels-v1")


def make(name: str):
    from craftax.craftax_env import make_craftax_env_from_name

    if name not in IDS:
        raise ValueError(f"craftax:{name} is not a Craftax environment; accepted: "
                         f"{', '.join('craftax:' + n for n in IDS)}")
    suite_env = make_craftax_env_from_name(name, auto_reset=False)
    suite_params = suite_env.default_params
    params = TimeLimitParams(max_steps_in_episode=int(suite_params.max_timesteps), suite=suite_params)
    env = CraftaxEnv(name, suite_env, params)
    return env, env.default_params
