"""Scoring a policy on fresh episodes of any gymnax environment."""

import functools

import jax
import jax.numpy as jnp

from envs.autoreset import declared


def episode_returns(env, env_params, policy, key, num_episodes: int, max_steps: int | None = None, carry=None):
    """Undiscounted returns of `num_episodes` fresh episodes under `policy` (first episodes only).

    The environment's randomness comes from `key` alone and is drawn in the same order whatever
    the policy does, so policies scored with the same key meet the same initial states and
    environment noise (common random numbers): their differences are paired. Under `jit`, pass
    `key` as a traced argument: a constant key lets XLA constant-fold large environment
    parameters (such as a SearchRanking catalog) at compile time.

    Args:
      env, env_params: any gymnax environment.
      policy: `policy(obs (E, ...), key) -> env actions (E, ...)`; with a `carry`,
        `policy(obs, key, carry) -> (env actions, carry)` (a policy with memory).
      key: PRNG key.
      num_episodes: E, run in parallel.
      max_steps: steps to run at most; defaults to `env_params.max_steps_in_episode`. Episodes
        still running at the end are counted with the reward they collected. The loop stops
        once every episode has ended (a step after that adds nothing), so an evaluation whose
        episodes end early does not run to the limit (Craftax's is 10,000 steps).
      carry: the policy's carry at the first observations (batched over E), or None. Only each
        environment's first episode counts, so it is never reset.

    Returns:
      `(num_episodes,)` episode returns.
    """
    if max_steps is None:
        max_steps = int(getattr(env_params, "max_steps_in_episode", 1000))
    reset_key, rollout_key = jax.random.split(key)
    obs, env_state = jax.vmap(env.reset, in_axes=(0, None))(
        jax.random.split(reset_key, num_episodes), env_params
    )
    # Only first episodes count, so what a reset brings never counts: an environment whose reset
    # is costly (`AutoResetEnv.costly_reset`: Craftax builds a world) draws one fresh episode per
    # step for all instead of one per environment.
    if declared(env, "costly_reset", False):
        step = functools.partial(env.step_batch, num_resets=1)
    else:
        step = jax.vmap(env.step, in_axes=(0, 0, 0, None))

    def one_step(state, step_key):
        env_state, obs, total, running, policy_carry = state
        act_key, env_key = jax.random.split(step_key)
        if carry is None:
            action = policy(obs, act_key)
        else:
            action, policy_carry = policy(obs, act_key, policy_carry)
        obs, env_state, reward, terminated, truncated, _ = step(
            jax.random.split(env_key, num_episodes), env_state, action, env_params
        )
        total = total + running * reward
        running = running * (1.0 - (terminated | truncated))
        return (env_state, obs, total, running, policy_carry), None

    # The same keys, step for step, as a scan over `max_steps` would draw, so stopping early
    # changes no return.
    step_keys = jax.random.split(rollout_key, max_steps)

    def running_any(loop):
        t, state = loop
        return (t < max_steps) & (state[3] > 0).any()

    def next_step(loop):
        t, state = loop
        return t + 1, one_step(state, step_keys[t])[0]

    ones = jnp.ones((num_episodes,))
    start = (env_state, obs, 0.0 * ones, ones, () if carry is None else carry)
    _, (_, _, total, _, _) = jax.lax.while_loop(running_any, next_step, (jnp.zeros((), jnp.int32), start))
    return total
