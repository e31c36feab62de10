"""NAVIX's grid worlds (`navix:ID`, e.g. `navix:Navix-Empty-5x5-v0`).

NAVIX marks each step's `step_type`: 0 transition, 1 truncation (its `max_steps`), 2
termination. Its own `step` resets on the step after an end, spending that step's action; the
adapter calls the transition alone (`Environment._step`, NAVIX's step without that reset) and
auto-resets on the ending step itself, as gymnax does. The time limit is NAVIX's `max_steps`, a
static field of its environment: pass `max_steps=` to `make` (`navix.make`'s default, 100).
Observations are NAVIX's (a uint8 grid for the default observation function).
"""

import jax.numpy as jnp
from gymnax.environments import spaces

from envs.adapters.base import SuiteEnv, SuiteParams, start


class NavixEnv(SuiteEnv):
    suite_name = "navix"
    step_env_draws = False  # NAVIX's transitions draw nothing

    def __init__(self, name: str, suite_env):
        super().__init__(name, SuiteParams())
        self.suite_env = suite_env

    def reset_env(self, key, params):
        timestep = self.suite_env.reset(key)
        return timestep.observation, start(timestep)

    def step_env(self, key, state, action, params):
        del key
        timestep = self.suite_env._step(state.inner, action)
        terminated = timestep.step_type == 2
        truncated = timestep.step_type == 1
        state = state.replace(inner=timestep, time=state.time + 1, truncated=truncated)
        return timestep.observation, state, jnp.asarray(timestep.reward, jnp.float32), terminated, {}

    def observation_space(self, params):
        space = self.suite_env.observation_space
        return spaces.Box(space.minimum, space.maximum, tuple(space.shape), space.dtype)

    def action_space(self, params):
        return spaces.Discrete(len(self.suite_env.action_set))


def make(name: str, **options):
    import navix
    from navix.environments.registry import registry

    if name not in registry():
        raise ValueError(f"navix:{name} is not a NAVIX environment; accepted: "
                         f"{', '.join('navix:' + n for n in sorted(registry()))}")
    env = NavixEnv(name, navix.make(name, **options))
    return env, env.default_params
