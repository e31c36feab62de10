"""Data for RLHF: expert demonstrations and preference pairs labelled by the true reward.

Both collectors use only the gymnax `Environment` API (`reset`, `step`, `action_space`), so any
environment with continuous actions works; the expert and the action sampler are plain
functions of observations. Everything is pure and jittable, and a `key` argument makes it
vmappable over seeds.
"""

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxpg.core.rollout import rollout

# expert(obs (N, obs_dim)) -> (N, action_dim) env actions
Expert = Callable[[jax.Array], jax.Array]
# sampler(key, obs (N, obs_dim)) -> (N, action_dim) env actions
ActionSampler = Callable[[jax.Array, jax.Array], jax.Array]


class Demonstrations(NamedTuple):
    """Expert (observation, action) pairs: `obs (M, obs_dim)`, `action (M, action_dim)`."""

    obs: jax.Array
    action: jax.Array


class Preferences(NamedTuple):
    """Pairs of actions taken in the same state, and which one the rater preferred.

    Attributes:
      obs: `(M, obs_dim)` the state's observation.
      action_a, action_b: `(M, action_dim)` the two env actions compared.
      reward_a, reward_b: `(M,)` the true rewards the rater saw (means over `rater_samples`).
      label: `(M,)` probability that `a` is preferred: 1, 0 or 0.5 (a tie) for a noise-free
        rater, a Bernoulli draw of the logistic rater otherwise.
    """

    obs: jax.Array
    action_a: jax.Array
    action_b: jax.Array
    reward_a: jax.Array
    reward_b: jax.Array
    label: jax.Array


def _action_bounds(env, env_params):
    space = env.action_space(env_params)
    return jnp.asarray(space.low, jnp.float32), jnp.asarray(space.high, jnp.float32)


def collect_demonstrations(key, env, env_params, expert: Expert, num_envs: int, num_steps: int = 1,
                           noise_std=0.0) -> Demonstrations:
    """Rolls the expert in `num_envs` environments for `num_steps` steps and keeps what it did.

    Args:
      key: PRNG key.
      env, env_params: a gymnax environment with a `Box` action space.
      expert: see `Expert`.
      num_envs, num_steps: static; the dataset has `num_envs * num_steps` pairs (episodes
        auto-reset, so every step is a state the expert visits).
      noise_std: std of Gaussian noise added to the expert's actions before clipping to the
        action bounds (may be traced). Real demonstrations are noisy, and a noiseless one
        would let behaviour cloning shrink the policy's std to its floor, leaving RL
        fine-tuning nothing to explore with.

    Returns:
      `Demonstrations` with `M = num_envs * num_steps` rows; `action` is the (clipped) action
      the environment received.
    """
    low, high = _action_bounds(env, env_params)
    reset_key, rollout_key = jax.random.split(key)
    obs, env_state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(reset_key, num_envs), env_params)

    def policy(obs, key):
        action = expert(obs)
        action = jnp.clip(action + noise_std * jax.random.normal(key, action.shape), low, high)
        return action, action, jnp.zeros(action.shape[:1])

    _, batch = rollout(env, env_params, policy, env_state, obs, rollout_key, num_steps)
    flat = lambda x: x.reshape((-1,) + x.shape[2:])
    return Demonstrations(flat(batch.obs), flat(batch.action))


def rater_labels(key, reward_a, reward_b, temperature=0.0):
    """Preference labels from true rewards: P(a preferred over b).

    `temperature == 0`: the noise-free rater, 1 if `reward_a > reward_b`, 0 if smaller, 0.5 on
    a tie. `temperature > 0`: a logistic (Bradley-Terry) rater that prefers `a` with
    probability sigmoid((reward_a - reward_b) / temperature), so close calls are often labelled
    the wrong way round; the label is one draw of it. `temperature` may be traced.
    """
    hard = jnp.where(reward_a > reward_b, 1.0, jnp.where(reward_a < reward_b, 0.0, 0.5))
    prob = jax.nn.sigmoid((reward_a - reward_b) / jnp.maximum(temperature, 1e-12))
    noisy = jax.random.bernoulli(key, prob).astype(jnp.float32)
    return jnp.where(temperature > 0, noisy, hard)


def collect_preferences(key, env, env_params, sampler: ActionSampler, num_pairs: int,
                        rater_samples: int = 1, temperature=0.0) -> Preferences:
    """Pairs of actions in freshly reset states, labelled by the environment's true reward.

    Both actions of a pair are stepped from the same state with the same environment key
    (common random numbers), so where the two rankings agree the user behaves the same and the
    label reflects the actions' difference rather than the session noise. The true reward of an
    action is the immediate reward of one step, averaged over `rater_samples` independent steps
    from the same state (static; more samples give the rater a less noisy view).

    Args:
      key: PRNG key.
      env, env_params: a gymnax environment with a `Box` action space.
      sampler: see `ActionSampler`; called twice with independent keys.
      num_pairs: static.
      rater_samples: static, >= 1.
      temperature: the rater's temperature (see `rater_labels`); may be traced.

    Returns:
      `Preferences` with `num_pairs` rows.
    """
    reset_key, a_key, b_key, step_key, label_key = jax.random.split(key, 5)
    obs, env_state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(reset_key, num_pairs), env_params)
    action_a, action_b = sampler(a_key, obs), sampler(b_key, obs)
    step = jax.vmap(env.step, in_axes=(0, 0, 0, None))

    def mean_reward(action):
        def one(sample_key):
            keys = jax.random.split(sample_key, num_pairs)
            return step(keys, env_state, action, env_params)[2]

        return jax.vmap(one)(jax.random.split(step_key, rater_samples)).mean(axis=0)

    reward_a, reward_b = mean_reward(action_a), mean_reward(action_b)
    label = rater_labels(label_key, reward_a, reward_b, temperature)
    return Preferences(obs, action_a, action_b, reward_a, reward_b, label)
