"""Evaluating a policy on fresh episodes."""

from functools import partial

import jax

# Scoring a policy on fresh episodes is the environment side's job; jaxpg re-exports it
# (`jaxpg.episode_returns`) and runs its evaluation on it.
from envs.episodes import episode_returns

# Evaluation episodes per run when nobody says otherwise: `evaluate`, `jaxpg train` and `jaxpg sweep`
# share it, so a sweep's row and the same setting trained alone report the same protocol.
DEFAULT_EPISODES = 100


@partial(jax.jit, static_argnames=("trainer", "num_episodes", "deterministic", "max_steps"))
def _evaluate(trainer, state, key, env_params, num_episodes, deterministic, max_steps):
    if not trainer.recurrent:
        policy = lambda obs, key: trainer.act(state, obs, key, deterministic=deterministic)
        return episode_returns(trainer.env, env_params, policy, key, num_episodes, max_steps)
    policy = lambda obs, key, carry: trainer.act(state, obs, key, deterministic=deterministic, carry=carry)
    carry = trainer.initial_carry(num_episodes)["policy"]
    return episode_returns(trainer.env, env_params, policy, key, num_episodes, max_steps, carry)


def evaluate(trainer, state, key, num_episodes: int = DEFAULT_EPISODES, deterministic: bool = True, max_steps=None,
             env_params=None):
    """Undiscounted returns of `num_episodes` fresh episodes under `state`'s policy.

    Args:
      trainer: the trainer that produced `state`.
      state: a `TrainState` (not batched: `jax.vmap` this function to evaluate many seeds).
      key: PRNG key.
      num_episodes: episodes, run in parallel.
      deterministic: act with the distribution's mode (argmax or mean) rather than sampling.
      max_steps: steps to run; defaults to the environment's `max_steps_in_episode`. Episodes
        still running at the end are counted with the reward they collected.
      env_params: defaults to the trainer's; passed into the program, not closed over.

    Returns:
      `(num_episodes,)` episode returns.
    """
    if max_steps is None:
        max_steps = int(getattr(trainer.env_params, "max_steps_in_episode", 1000))
    env_params = trainer.env_params if env_params is None else env_params
    return _evaluate(trainer, state, key, env_params, num_episodes, deterministic, max_steps)
