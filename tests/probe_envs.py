"""Probe environments (as bsuite and rejax use them): tasks so small that the right value and the
right policy are known exactly, so an algorithm that gets them wrong has a bug, not bad luck.

One environment class holds every probe; which one is a traced field of `EnvParams`, so a batch of
probes is one `env_params` with a leading axis and `jax.vmap` trains them all in one program.

| kind | observation | reward | episode | V* | optimal action |
|---|---|---|---|---|---|
| CONSTANT | 0 | 1 | 1 step | 1 | any |
| OBSERVATION | -1 or +1 at random | the observation | 1 step | the observation | any |
| DELAYED | 0, then 1 | 0, then 1 | 2 steps | gamma at obs 0, 1 at obs 1 | any |
| ACTION | 0 | +1 for action 1, -1 for action 0 | 1 step | 1 (under the optimal policy) | 1 |
| OBSERVATION_ACTION | -1 or +1 at random | +1 if the action matches the sign, else -1 | 1 step | 1 | 1 at +1, 0 at -1 |
"""

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import environment, spaces

CONSTANT, OBSERVATION, DELAYED, ACTION, OBSERVATION_ACTION = range(5)
KINDS = (CONSTANT, OBSERVATION, DELAYED, ACTION, OBSERVATION_ACTION)


@struct.dataclass
class EnvState(environment.EnvState):
    obs: jax.Array
    time: int


@struct.dataclass
class EnvParams(environment.EnvParams):
    kind: jax.Array = CONSTANT
    max_steps_in_episode: int = 2


class Probe(environment.Environment):
    """Discrete(2) actions, a `(1,)` float observation; see the module table."""

    @property
    def default_params(self) -> EnvParams:
        return EnvParams()

    def _first_obs(self, key, params):
        sign = jnp.where(jax.random.bernoulli(key), 1.0, -1.0)
        random_sign = (params.kind == OBSERVATION) | (params.kind == OBSERVATION_ACTION)
        return jnp.where(random_sign, sign, 0.0).reshape(1)

    def reset_env(self, key, params):
        obs = self._first_obs(key, params)
        return obs, EnvState(obs=obs, time=jnp.zeros((), jnp.int32))

    def step_env(self, key, state, action, params):
        obs, kind = state.obs[0], params.kind
        signed_action = jnp.where(action == 1, 1.0, -1.0)
        reward = jnp.select(
            [kind == CONSTANT, kind == OBSERVATION, kind == DELAYED, kind == ACTION],
            [1.0, obs, jnp.where(state.time == 1, 1.0, 0.0), signed_action],
            jnp.where(signed_action == obs, 1.0, -1.0),
        )
        time = state.time + 1
        terminated = jnp.where(kind == DELAYED, time >= 2, True)
        next_obs = jnp.where(kind == DELAYED, 1.0, obs).reshape(1)
        return next_obs, EnvState(obs=next_obs, time=time), reward.astype(jnp.float32), terminated, {}

    def get_obs(self, state, params=None, key=None):
        return state.obs

    def action_space(self, params=None):
        return spaces.Discrete(2)

    def observation_space(self, params=None):
        return spaces.Box(-1.0, 1.0, (1,), jnp.float32)


def all_probes() -> EnvParams:
    """Every probe's parameters stacked on a leading axis of `len(KINDS)`."""
    return EnvParams(kind=jnp.asarray(KINDS, jnp.int32), max_steps_in_episode=jnp.full(len(KINDS), 2, jnp.int32))
