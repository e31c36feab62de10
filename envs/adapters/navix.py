"""NAVIX's grid worlds (`navix:ID`, e.g. `navix:Navix-Empty-5x5-v0`).

NAVIX marks each step's `step_type`: 0 transition, 1 truncation (its `max_steps`), 2
termination. Its own `step` resets on the step after an end, spending that step's action; the
adapter calls the transition alone (`Environment._step`, NAVIX's step without that reset) and
auto-resets on the ending step itself, as gymnax does.

NAVIX's time limit (`max_steps`) is a static field of its environment, so the adapter counts it
itself, by NAVIX's rule (an episode reaching `max_steps` steps without terminating is truncated),
from `env_params.max_steps_in_episode`: a parameter a sweep can vary, and the horizon that
evaluation and REINFORCE read. `make(name, max_steps=100)` sets its default (`navix.make`'s).
Observations are NAVIX's (a uint8 grid for the default observation function).
"""

import jax.numpy as jnp

from envs.adapters.base import SuiteEnv, TimeLimitParams, counted_step, start
from envs.gymnax_api import spaces

NO_LIMIT = 2**31 - 1  # NAVIX's own limit, lifted: the adapter counts the steps


class NavixEnv(SuiteEnv):
    suite_name = "navix"
    step_env_draws = False  # NAVIX's transitions draw nothing

    def reset_env(self, key, params):
        timestep = self.suite_env.reset(key)
        return timestep.observation, start(timestep)

    def step_env(self, key, state, action, params):
        del key
        timestep = self.suite_env._step(state.inner, action)
        terminated = timestep.step_type == 2
        state = counted_step(state, timestep, terminated, params)
        return timestep.observation, state, jnp.asarray(timestep.reward, jnp.float32), terminated, {}

    def observation_space(self, params):
        space = self.suite_env.observation_space
        return spaces.Box(space.minimum, space.maximum, tuple(space.shape), space.dtype)

    def action_space(self, params):
        return spaces.Discrete(len(self.suite_env.action_set))


def make(name: str, max_steps: int = 100, **options):
    import navix
    from navix.environments.registry import registry

    if name not in registry():
        raise ValueError(f"navix:{name} is not a NAVIX environment; accepted: "
                         f"{', '.join('navix:' + n for n in sorted(registry()))}")
    if options.get("penality_coeff", 0.0):
        raise ValueError("navix: penality_coeff scales a reward by t / max_steps, which the adapter lifts "
                         "to count the time limit itself; accepted: penality_coeff=0")
    env = NavixEnv(name, navix.make(name, max_steps=NO_LIMIT, **options),
                   TimeLimitParams(max_steps_in_episode=max_steps))
    return env, env.default_params
