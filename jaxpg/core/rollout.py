"""Collecting experience: `num_envs` vmapped environments stepped in a `lax.scan`."""

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxpg.core.recurrent import reset_carry


class Transition(NamedTuple):
    """One step of every environment; under `rollout` each leaf gains leading axes `(T, N)`.

    `action` is the *raw* action of the `ActionHead` (see `jaxpg.distributions`), the value
    `log_prob` scores. `final_obs` is the observation the step reached before any auto-reset:
    the state to bootstrap from when the step was truncated.
    """

    obs: jax.Array
    action: jax.Array
    reward: jax.Array
    terminated: jax.Array
    truncated: jax.Array
    log_prob: jax.Array
    final_obs: jax.Array


# policy(obs (N, ...), key) -> (raw_action, env_action, log_prob (N,)); a recurrent one is called
# policy(obs, key, carry) -> (raw_action, env_action, log_prob, carry).
Policy = Callable[..., tuple]


def rollout(env, env_params, policy: Policy, env_state, obs, key, num_steps: int, group_size: int = 1,
            carry=None, initial_carry=None, resets_per_step: int | None = None):
    """Steps `N` environments `num_steps` times from the given states.

    Args:
      env, env_params: a gymnax environment; `env_params` is shared (not batched).
      policy: see `Policy`.
      env_state, obs: batched states and observations, leading axis N. They may be fresh
        resets, the states a previous rollout ended in, or cloned states (GRPO groups).
      key: PRNG key for the policy and the environments.
      num_steps: T, static.
      group_size: G. Consecutive blocks of G environments share their environment keys (common
        random numbers): members of a block that take the same actions from the same state see
        the same outcomes. 1 gives every environment its own stream.
      carry, initial_carry: a recurrent policy's carry at `obs` and the carry an episode starts
        from (both batched over N); None for a feed-forward policy. After every step that ends
        an episode, that environment's carry is reset to `initial_carry`
        (`jaxpg.core.recurrent.reset_carry`).
      resets_per_step: None steps each environment with `env.step` (vmapped), which computes a
        reset in every environment at every step; K draws only K fresh episodes per step for the
        whole batch, through the environment's `step_batch` (`envs.autoreset.AutoResetEnv`).

    Returns:
      `((env_state, obs), transitions)`: the states to continue from, and a `Transition`
      with leaves `(T, N, ...)`; `((env_state, obs, carry), transitions)` with a carry.
    """
    num_envs = jax.tree.leaves(obs)[0].shape[0]
    if resets_per_step is None:
        vmapped_step = jax.vmap(env.step, in_axes=(0, 0, 0, None))
    else:
        vmapped_step = functools.partial(env.step_batch, num_resets=resets_per_step)
    # Every key of the rollout is split here, in two batched calls, rather than inside the
    # loop: on a CPU each threefry call in the step is a small loop of its own, and with few
    # environments those calls cost more than the networks.
    policy_key, env_key = jax.random.split(key)
    policy_keys = jax.random.split(policy_key, num_steps)
    env_keys = jax.random.split(env_key, (num_steps, num_envs // group_size))
    if group_size > 1:
        env_keys = jnp.repeat(env_keys, group_size, axis=1)

    def one_step(state, step_keys):
        env_state, obs = state[:2]
        policy_key, env_keys_t = step_keys
        if carry is None:
            raw_action, env_action, log_prob = policy(obs, policy_key)
        else:
            raw_action, env_action, log_prob, policy_carry = policy(obs, policy_key, state[2])
        next_obs, env_state, reward, terminated, truncated, info = vmapped_step(
            env_keys_t, env_state, env_action, env_params
        )
        transition = Transition(
            obs, raw_action, reward, terminated, truncated, log_prob, info["final_observation"]
        )
        if carry is None:
            return (env_state, next_obs), transition
        return (env_state, next_obs, reset_carry(policy_carry, terminated | truncated, initial_carry)), transition

    start = (env_state, obs) if carry is None else (env_state, obs, carry)
    return jax.lax.scan(one_step, start, (policy_keys, env_keys))
