"""Jumanji's environments (`jumanji:ID`, e.g. `jumanji:Snake-v1`, `jumanji:Game2048-v1`).

Jumanji returns dm_env-style `TimeStep`s and reports an episode cut by its time limit as it
reports a death: `step_type` LAST with discount 0 (Snake at its `time_limit`). The adapter calls
an end truncated when the state's `step_count` has reached the environment's `time_limit` and
terminated otherwise, so an episode that ends by itself on its last allowed step counts as
truncated. The time limit is the environment's (`time_limit=` to `make` where the environment
takes one); `env_params.max_steps_in_episode` is that limit (1000 where there is none), the
horizon evaluation runs to, not enforced by the adapter. Observations are Jumanji's own, its
NamedTuples as dicts of their fields with their dtypes (Snake: `grid`, `step_count`,
`action_mask`), so a categorical policy reads the `action_mask` and never picks an illegal action
(`jaxpg.core.observations`).
"""

import jax
import jax.numpy as jnp

from envs.adapters.base import SuiteEnv, SuiteParams, start
from envs.gymnax_api import spaces

LAST = 2  # dm_env's StepType.LAST


def as_dict(observation):
    """A Jumanji observation NamedTuple as a dict of its fields (any other pytree unchanged)."""
    return dict(observation._asdict()) if hasattr(observation, "_asdict") else observation


class JumanjiEnv(SuiteEnv):
    suite_name = "jumanji"
    step_env_draws = False  # Jumanji keeps its own key in its state

    @property
    def time_limit(self):
        return getattr(self.suite_env, "time_limit", None)

    def reset_env(self, key, params):
        suite_state, timestep = self.suite_env.reset(key)
        return as_dict(timestep.observation), start(suite_state)

    def step_env(self, key, state, action, params):
        del key
        suite_state, timestep = self.suite_env.step(state.inner, action)
        ended = timestep.step_type == LAST
        if self.time_limit is None:
            truncated = jnp.zeros((), bool)
        else:
            truncated = ended & (suite_state.step_count >= self.time_limit)
        terminated = ended & ~truncated
        state = state.replace(inner=suite_state, time=state.time + 1, truncated=truncated)
        return (as_dict(timestep.observation), state, jnp.asarray(timestep.reward, jnp.float32),
                terminated, {})

    def observation_space(self, params):
        obs = jax.eval_shape(self.reset_env, jax.random.key(0), params)[0]
        box = lambda leaf: spaces.Box(-jnp.inf, jnp.inf, leaf.shape, leaf.dtype)
        if isinstance(obs, dict):
            return spaces.Dict({name: box(leaf) for name, leaf in obs.items()})
        return box(obs)

    def action_space(self, params):
        spec = self.suite_env.action_spec
        if not hasattr(spec, "num_values") or jnp.ndim(spec.num_values) != 0:
            raise ValueError(f"jumanji:{self.suite_id} has actions {spec}; accepted: one discrete action")
        return spaces.Discrete(int(spec.num_values))


def make(name: str, **options):
    import jumanji

    if name not in jumanji.registered_environments():
        raise ValueError(f"jumanji:{name} is not a Jumanji environment; accepted: "
                         f"{', '.join('jumanji:' + n for n in jumanji.registered_environments())}")
    suite_env = jumanji.make(name, **options)
    # max_steps_in_episode is not enforced here (Jumanji ends its episodes itself); it is the horizon
    # evaluation and references run to (`jaxpg.evaluate`), so it is the time limit where there is one.
    # gymnax's EnvParams default of 1 would end every evaluation after one step.
    limit = getattr(suite_env, "time_limit", None)
    env = JumanjiEnv(name, suite_env, SuiteParams(max_steps_in_episode=int(limit) if limit is not None else 1000))
    return env, env.default_params
