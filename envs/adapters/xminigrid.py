"""XLand-MiniGrid's grid worlds (`xminigrid:ID`, e.g. `xminigrid:MiniGrid-Empty-6x6`, and the
XLand rule sets such as `xminigrid:XLand-MiniGrid-R1-9x9`).

XLand-MiniGrid ends an episode with `step_type` LAST both at a goal and at its time limit, and
tells them apart by `discount`: 0 at a goal, 1 at the limit. The limit is XLand-MiniGrid's
`params.max_steps`, passed to its step from `env_params.max_steps_in_episode` (default: the
suite's own for that id), so a sweep can vary it. XLand-MiniGrid's `step` never resets; the
adapter's auto-reset does. Observations are the suite's uint8 grid view.
"""

import jax.numpy as jnp

from envs.adapters.base import SuiteEnv, TimeLimitParams, start
from envs.gymnax_api import spaces

LAST = 2  # xminigrid.types.StepType.LAST


class XMiniGridEnv(SuiteEnv):
    suite_name = "xminigrid"
    step_env_draws = False  # the suite's step draws nothing

    def _suite_params(self, params):
        return params.suite.replace(max_steps=params.max_steps_in_episode)

    def reset_env(self, key, params):
        timestep = self.suite_env.reset(self._suite_params(params), key)
        return timestep.observation, start(timestep)

    def step_env(self, key, state, action, params):
        del key
        timestep = self.suite_env.step(self._suite_params(params), state.inner, action)
        last = timestep.step_type == LAST
        terminated = last & (timestep.discount == 0)
        truncated = last & ~terminated
        state = state.replace(inner=timestep, time=state.time + 1, truncated=truncated)
        return timestep.observation, state, jnp.asarray(timestep.reward, jnp.float32), terminated, {}

    def observation_space(self, params):
        shape = tuple(self.suite_env.observation_shape(params.suite))
        return spaces.Box(0, 255, shape, jnp.uint8)

    def action_space(self, params):
        return spaces.Discrete(int(self.suite_env.num_actions(params.suite)))


def make(name: str, **options):
    import xminigrid

    if name not in xminigrid.registered_environments():
        raise ValueError(f"xminigrid:{name} is not an XLand-MiniGrid environment; accepted: "
                         f"{', '.join('xminigrid:' + n for n in xminigrid.registered_environments())}")
    suite_env, suite_params = xminigrid.make(name, **options)
    params = TimeLimitParams(max_steps_in_episode=int(suite_params.max_steps), suite=suite_params)
    env = XMiniGridEnv(name, suite_env, params)
    return env, env.default_params
