"""Environment wrappers with gymnax's API (and gymnax's `GymnaxWrapper` attribute passthrough).

`LearnedReward` replaces an environment's reward with a learned one, for RLHF: any trainer
optimises the learned reward while the true reward stays in `info["true_reward"]`, so what the
policy really earns can still be reported.
"""

from collections.abc import Callable
from typing import Any

import jax
from flax import struct
from gymnax.wrappers.purerl import GymnaxWrapper


@struct.dataclass
class LearnedRewardState:
    """The wrapped environment's state and the observation it shows (the reward model's input:
    gymnax's `step` is not given the observation, and not every `get_obs` is deterministic)."""

    env_state: Any
    obs: jax.Array


class LearnedReward(GymnaxWrapper):
    """`reward = reward_fn(obs, action)` instead of the environment's reward.

    Args:
      env: a gymnax environment (its `step` returns obs, state, reward, terminated, truncated,
        info).
      reward_fn: `(obs, action) -> scalar` for one environment, `obs` being the observation the
        action was chosen on; e.g. `jaxpg.rlhf.reward_function(model, params)`. Its parameters
        may be traced (one reward model per vmapped seed).

    `env_params` are the wrapped environment's, unchanged. `info` gains `true_reward`, the
    reward the wrapped environment paid.
    """

    def __init__(self, env, reward_fn: Callable[[jax.Array, jax.Array], jax.Array]):
        super().__init__(env)
        self.reward_fn = reward_fn

    def reset(self, key, params=None):
        obs, env_state = self._env.reset(key, params)
        return obs, LearnedRewardState(env_state, obs)

    def step(self, key, state: LearnedRewardState, action, params=None):
        obs, env_state, true_reward, terminated, truncated, info = self._env.step(
            key, state.env_state, action, params
        )
        reward = self.reward_fn(state.obs, action).astype(true_reward.dtype)
        info = {**info, "true_reward": true_reward}
        return obs, LearnedRewardState(env_state, obs), reward, terminated, truncated, info

    def get_obs(self, state: LearnedRewardState, *args, **kwargs):
        return state.obs
