"""What every suite adapter shares: its state and the split of an episode's end.

`SuiteState.inner` is the suite's own state (or time step); `truncated` is the adapter's verdict
on the transition that made it, which `AutoResetEnv.step` reads through `is_truncated`. An
episode that ends by the time limit and by itself on the same step is terminated, never both.
"""

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from envs.autoreset import AutoResetEnv
from envs.gymnax_api import environment


@struct.dataclass
class SuiteState(environment.EnvState):
    inner: Any
    truncated: jax.Array


@struct.dataclass
class SuiteParams(environment.EnvParams):
    """A suite environment's parameters: none beyond the suite's own (`suite`, where it has any)."""

    suite: Any = None


@struct.dataclass
class TimeLimitParams(environment.EnvParams):
    """For suites whose time limit the adapter enforces or passes to the suite at every step."""

    max_steps_in_episode: int = 1000
    suite: Any = None


class SuiteEnv(AutoResetEnv[SuiteState, Any]):
    truncated_excludes_terminated = True
    suite_name = "suite"

    def __init__(self, name: str, suite_env, params):
        """`name`: the suite's id; `suite_env`: the suite's own environment; `params`: the
        adapter's default `env_params`."""
        super().__init__()
        self.suite_id = name
        self.suite_env = suite_env
        self._default_params = params

    @property
    def name(self) -> str:
        return f"{self.suite_name}:{self.suite_id}"

    @property
    def default_params(self):
        return self._default_params

    def is_truncated(self, state: SuiteState, params) -> jax.Array:
        return state.truncated


def start(inner) -> SuiteState:
    """The state of a fresh episode."""
    return SuiteState(time=jnp.zeros((), jnp.int32), inner=inner, truncated=jnp.asarray(False))


def counted_step(state: SuiteState, inner, terminated, params) -> SuiteState:
    """The state after one step of a suite whose time limit the adapter counts itself: truncated
    when the count reaches `params.max_steps_in_episode` and the suite did not end the episode."""
    time = state.time + 1
    truncated = (time >= params.max_steps_in_episode) & ~terminated
    return state.replace(inner=inner, time=time, truncated=truncated)

