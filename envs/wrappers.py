"""Environment wrappers with gymnax's API (and gymnax's `GymnaxWrapper` attribute passthrough).

`LearnedReward` replaces an environment's reward with a learned one, for RLHF: any trainer
optimises the learned reward while the true reward stays in `info["true_reward"]`, so what the
policy really earns can still be reported. `TimeLimit` cuts episodes after a number of steps (a
truncation, as the environment's own limit is). `RandomizedParams` draws fresh environment
parameters at every reset (domain randomisation within a run). `MaskObservation` hides part of
the observation (a partially observed version of any environment).
"""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from envs.gymnax_api import GymnaxWrapper, spaces


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


def _select(condition, on_true, on_false):
    return jax.tree.map(lambda a, b: jnp.where(condition, a, b), on_true, on_false)


@struct.dataclass
class TimeLimitState:
    """The wrapped environment's state and the steps its current episode has taken (`()` int32)."""

    env_state: Any
    steps: jax.Array


class TimeLimit(GymnaxWrapper):
    """Truncates every episode after `max_steps` steps, and auto-resets, as gymnax's `step` does.

    Args:
      env: a gymnax environment (its `step` returns obs, state, reward, terminated, truncated,
        info, and auto-resets when either flag is set).
      max_steps: steps per episode, at least 1. Episodes the environment ends sooner (either
        flag) end as it says; the count restarts there.

    The step that reaches `max_steps` returns `truncated=True` (terminated is the environment's,
    unchanged), the next episode's first observation, and `info["final_observation"]`, the
    observation it reached: what a trainer bootstraps from. `info["truncated"]`, where the
    environment gives one, matches the returned flag. `env_params` are the wrapped
    environment's, unchanged.
    """

    def __init__(self, env, max_steps: int):
        if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
            raise ValueError(f"TimeLimit: max_steps={max_steps!r} must be a positive integer")
        super().__init__(env)
        self.max_steps = max_steps

    def reset(self, key, params=None):
        obs, env_state = self._env.reset(key, params)
        return obs, TimeLimitState(env_state, jnp.zeros((), jnp.int32))

    def step(self, key, state: TimeLimitState, action, params=None):
        step_key, reset_key = jax.random.split(key)
        obs, env_state, reward, terminated, truncated, info = self._env.step(
            step_key, state.env_state, action, params
        )
        steps = state.steps + 1
        at_limit = steps >= self.max_steps
        # The environment has already reset after an episode it ended itself.
        cut = at_limit & ~(terminated | truncated)
        obs_reset, state_reset = self._env.reset(reset_key, params)
        obs = _select(cut, obs_reset, obs)
        env_state = _select(cut, state_reset, env_state)
        truncated = truncated | at_limit
        if "truncated" in info:
            info = {**info, "truncated": truncated}
        steps = jnp.where(terminated | truncated, 0, steps)
        return obs, TimeLimitState(env_state, steps), reward, terminated, truncated, info


@struct.dataclass
class RandomizedParamsState:
    """The wrapped environment's state and the parameters its current episode runs on."""

    env_state: Any
    params: Any


class RandomizedParams(GymnaxWrapper):
    """Every episode on freshly drawn environment parameters (as brax's `randomization_fn`, but
    redrawn at every reset within a run rather than once per environment).

    Args:
      env: a gymnax environment (its `step` returns obs, state, reward, terminated, truncated,
        info).
      sampler: `(key, params) -> params` for one environment: draws an episode's parameters
        from the nominal ones, e.g. `lambda key, p: p.replace(length=p.length *
        jax.random.uniform(key, (), minval=0.5, maxval=2.0))`. It must return the same pytree
        structure, shapes and dtypes whatever the key.

    `reset(key, params)` draws from `params` (the nominal parameters; those are what a trainer
    passes and a vmapped sweep may batch); the drawn ones live in the state, and `step` runs on
    them, whatever `params` it is given. When an episode ends (either flag) the next one starts
    from a reset on newly drawn parameters. `get_params(state)` returns the current episode's.
    """

    def __init__(self, env, sampler: Callable[[jax.Array, Any], Any]):
        super().__init__(env)
        self.sampler = sampler

    def reset(self, key, params=None):
        params = self._env.default_params if params is None else params
        params_key, reset_key = jax.random.split(key)
        # Array leaves throughout, so the state's pytree types do not depend on which branch of
        # a later auto-reset produced them.
        drawn = jax.tree.map(jnp.asarray, self.sampler(params_key, params))
        obs, env_state = self._env.reset(reset_key, drawn)
        return obs, RandomizedParamsState(env_state, drawn)

    def step(self, key, state: RandomizedParamsState, action, params=None):
        step_key, reset_key = jax.random.split(key)
        obs, env_state, reward, terminated, truncated, info = self._env.step(
            step_key, state.env_state, action, state.params
        )
        # The wrapped step has auto-reset on the old parameters; that reset is replaced.
        obs_reset, state_reset = self.reset(reset_key, params)
        done = terminated | truncated
        obs = _select(done, obs_reset, obs)
        state = _select(done, state_reset, RandomizedParamsState(env_state, state.params))
        return obs, state, reward, terminated, truncated, info

    def get_params(self, state: RandomizedParamsState):
        return state.params


class MaskObservation(GymnaxWrapper):
    """Keeps only the entries `keep` of a 1-D observation: the rest become hidden state.

    `MaskObservation(CartPole, keep=(0, 2))` is POPGym's stateless CartPole: the cart's position
    and the pole's angle are seen, their velocities must be remembered (inferred from
    successive observations). `info["final_observation"]` is masked the same way, and the
    observation space keeps the kept entries' bounds.

    Args:
      env: a gymnax environment with 1-D array observations.
      keep: the indices kept, in the order given; each in [0, observation size), none twice.
    """

    def __init__(self, env, keep):
        super().__init__(env)
        size = int(env.observation_space(env.default_params).shape[0])
        keep = tuple(int(i) for i in keep)
        if not keep or len(set(keep)) != len(keep) or not all(0 <= i < size for i in keep):
            raise ValueError(
                f"MaskObservation: keep={keep!r}; accepted: distinct indices in [0, {size}), at least one"
            )
        self.keep = keep

    def _mask(self, obs):
        return obs[..., jnp.asarray(self.keep)]

    def reset(self, key, params=None):
        obs, state = self._env.reset(key, params)
        return self._mask(obs), state

    def step(self, key, state, action, params=None):
        obs, state, reward, terminated, truncated, info = self._env.step(key, state, action, params)
        if "final_observation" in info:
            info = {**info, "final_observation": self._mask(info["final_observation"])}
        return self._mask(obs), state, reward, terminated, truncated, info

    def observation_space(self, params=None):
        space = self._env.observation_space(params)
        low, high = (jnp.broadcast_to(jnp.asarray(b), space.shape) for b in (space.low, space.high))
        return spaces.Box(self._mask(low), self._mask(high), (len(self.keep),), space.dtype)
