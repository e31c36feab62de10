"""What an RLHF policy earns: true reward, learned reward, and KL to a reference policy."""

import jax
import jax.numpy as jnp

from jaxpg.algos.trainer import TrainState


def policy_rewards(trainer, policy, key, num_episodes: int = 1024, reference_params=None,
                   deterministic: bool = False, max_steps: int | None = None, env_params=None,
                   obs_stats=None) -> dict:
    """Runs `num_episodes` fresh episodes of a policy on `trainer.env` and reports per episode.

    The policy sees observations as the trainer's own policy does (`trainer.policy_outputs`):
    with `normalize_observations`, standardised by the run's statistics. The reference is
    evaluated with the initial statistics, as the KL penalty of REINFORCE and GRPO does.

    Args:
      trainer: a jaxpg trainer; its environment may be `envs.wrappers.LearnedReward` (then the
        learned reward is the env's reward and the true one is `info["true_reward"]`) or a
        plain environment (both are its reward).
      policy: a `TrainState` (its policy parameters and observation statistics), or parameters
        of `trainer.policy_net` (e.g. an SFT policy) evaluated with `obs_stats`.
      key: PRNG key; the same key gives every policy the same users and session draws, so two
        policies are compared on common random numbers.
      num_episodes: static.
      reference_params: policy parameters to measure the KL to (e.g. the SFT policy); None
        gives zeros.
      deterministic: act with the mean rather than sampling.
      max_steps: static horizon; defaults to the env's `max_steps_in_episode`. Only each
        environment's first episode counts.
      env_params: defaults to `trainer.env_params`. Passing them as an argument of the jitted
        caller keeps a large catalog out of the program's constants, which XLA would otherwise
        spend seconds constant-folding.
      obs_stats: the `RunningStats` that bare policy parameters are evaluated with; needed when
        the trainer normalises observations (`state.obs_stats` of the run they come from;
        `trainer.initial_obs_stats()` for a policy before any update, such as an SFT
        one). Not given with a `TrainState`, which carries its own.

    Returns:
      dict of `(num_episodes,)` arrays: `true_reward` and `learned_reward` (undiscounted
      episode sums) and `kl` (the exact KL(pi || pi_ref) of the action distributions, averaged
      over the episode's states).
    """
    if isinstance(policy, TrainState):
        if obs_stats is not None:
            raise ValueError("policy_rewards: a TrainState carries its obs_stats; pass one or the other")
        policy_params, obs_stats = policy.params["policy"], policy.obs_stats
    else:
        policy_params = policy
        if obs_stats is None and trainer.config.normalize_observations:
            raise ValueError(
                "policy_rewards: this trainer normalises observations, so bare policy parameters need "
                "the statistics they are used with: pass the TrainState, or obs_stats (state.obs_stats; "
                "trainer.initial_obs_stats() for a policy before any update, e.g. SFT)"
            )
    reference_stats = trainer.initial_obs_stats()
    env, head = trainer.env, trainer.head
    env_params = trainer.env_params if env_params is None else env_params
    if max_steps is None:
        max_steps = int(getattr(trainer.env_params, "max_steps_in_episode", 1000))
    reset_key, rollout_key = jax.random.split(key)
    obs, env_state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(reset_key, num_episodes), env_params)
    step = jax.vmap(env.step, in_axes=(0, 0, 0, None))

    def one_step(carry, step_key):
        env_state, obs, running = carry
        act_key, env_key = jax.random.split(step_key)
        outputs, log_std = trainer.policy_outputs({"policy": policy_params}, obs_stats, obs)
        if deterministic:
            raw = head.mode(outputs, log_std)
        else:
            raw, _ = head.sample(outputs, log_std, act_key)
        if reference_params is None:
            kl = jnp.zeros(num_episodes)
        else:
            ref_outputs, ref_log_std = trainer.policy_outputs({"policy": reference_params}, reference_stats, obs)
            kl = head.distribution(outputs, log_std).kl_divergence(head.distribution(ref_outputs, ref_log_std))
        obs, env_state, reward, terminated, truncated, info = step(
            jax.random.split(env_key, num_episodes), env_state, head.to_env(raw), env_params
        )
        true_reward = info.get("true_reward", reward)
        out = {"learned_reward": running * reward, "true_reward": running * true_reward,
               "kl": running * kl, "steps": running}
        return (env_state, obs, running * (1.0 - (terminated | truncated))), out

    _, per_step = jax.lax.scan(
        one_step, (env_state, obs, jnp.ones(num_episodes)), jax.random.split(rollout_key, max_steps)
    )
    totals = jax.tree.map(lambda x: x.sum(axis=0), per_step)
    steps = jnp.maximum(totals.pop("steps"), 1.0)
    return {**totals, "kl": totals["kl"] / steps}
