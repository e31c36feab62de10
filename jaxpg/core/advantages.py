"""Returns-to-go and generalised advantage estimation, as reverse scans over time.

Arrays are time-major, `(T, ...)`. An episode boundary at step t is `terminated[t] or
truncated[t]`: nothing flows backwards across it. Termination means the next state's value is 0;
truncation means the episode was cut, so GAE bootstraps from the value of the observation that
the truncated step reached (`next_values`), which gymnax returns in `info["final_observation"]`.
"""

import jax
import jax.numpy as jnp


def returns_to_go(rewards, dones, gamma):
    """Monte Carlo discounted returns G_t = r_t + gamma (1 - done_t) G_{t+1}.

    Args:
      rewards: `(T, ...)` float rewards.
      dones: `(T, ...)` episode ends (terminated or truncated) after step t.
      gamma: scalar discount.

    Returns:
      `(T, ...)` returns-to-go; the return after the last step is taken as 0.
    """

    def backward(future, step):
        reward, done = step
        ret = reward + gamma * (1.0 - done) * future
        return ret, ret

    _, returns = jax.lax.scan(
        backward, jnp.zeros_like(rewards[0]), (rewards, dones.astype(rewards.dtype)), reverse=True
    )
    return returns


def gae(rewards, values, next_values, terminated, truncated, gamma, gae_lambda):
    """Generalised advantage estimation (Schulman et al. 2016).

    Args:
      rewards, values: `(T, ...)`: r_t and V(s_t) as seen during the rollout.
      next_values: `(T, ...)` V(s_{t+1}) of the state step t reached, before any auto-reset
        (the value of `info["final_observation"]`).
      terminated, truncated: `(T, ...)` episode-end flags of step t.
      gamma, gae_lambda: scalars.

    Returns:
      `(advantages, value_targets)`, each `(T, ...)`; targets are advantages + values.
    """
    not_terminated = 1.0 - terminated.astype(rewards.dtype)
    not_done = not_terminated * (1.0 - truncated.astype(rewards.dtype))
    deltas = rewards + gamma * not_terminated * next_values - values

    def backward(future_advantage, step):
        delta, continues = step
        advantage = delta + gamma * gae_lambda * continues * future_advantage
        return advantage, advantage

    _, advantages = jax.lax.scan(
        backward, jnp.zeros_like(rewards[0]), (deltas, not_done), reverse=True
    )
    return advantages, advantages + values


ADVANTAGE_EPS = 1e-4


ADVANTAGES = ("group", "rloo")


def unbiased_std(x, axis=None):
    """The standard deviation with Bessel's correction (ddof=1), as torch's `std` and so TRL
    compute it; a single sample gives 0 rather than NaN."""
    count = x.size if axis is None else x.shape[axis]
    centred = x - x.mean(axis=axis, keepdims=True)
    return jnp.sqrt(jnp.sum(centred**2, axis=axis) / max(count - 1, 1))


def _scale(returns, grouped, scale_rewards: str):
    if scale_rewards == "group":
        return unbiased_std(grouped, axis=1)[:, None]
    if scale_rewards == "batch":
        return unbiased_std(returns)
    return 1.0


def group_advantages(returns, group_size: int, scale_rewards: str = "group"):
    """GRPO's group-relative advantages (Shao et al. 2024): return minus the group's mean.

    Args:
      returns: `(B,)` member returns, B = num_groups * group_size, members of a group adjacent.
      group_size: G.
      scale_rewards: `group` (divide by the group's std), `batch` (by the whole batch's std) or
        `none`. Both stds are unbiased (ddof=1), as TRL's (torch's default `std`).

    Returns:
      `(advantages (B,), group_std (num_groups,))`, `group_std` unbiased too. A group whose
      members all got the same return has advantage 0 (no NaN).
    """
    grouped = returns.reshape(-1, group_size)
    centred = grouped - grouped.mean(axis=1, keepdims=True)
    scale = _scale(returns, grouped, scale_rewards)
    return (centred / (scale + ADVANTAGE_EPS)).reshape(-1), unbiased_std(grouped, axis=1)


def leave_one_out_advantages(returns, group_size: int, scale_rewards: str = "none"):
    """RLOO's advantages (Ahmadian et al. 2024, "Back to Basics"; TRL's `RLOOTrainer`): each
    member's return minus the mean return of the other G - 1 members of its group.

    That baseline does not depend on the member's own sample, so the estimate is unbiased; it
    equals G / (G - 1) times the group-mean-centred return. `scale_rewards` divides as in
    `group_advantages` (TRL's RLOO default is `none`; `group`/`batch` are its
    `normalize_advantages`-style scalings).

    Args:
      returns: `(B,)` member returns, B = num_groups * group_size, members of a group adjacent.
      group_size: G >= 2.
      scale_rewards: `group`, `batch` or `none` (unbiased stds, ddof=1, as in `group_advantages`).

    Returns:
      `(advantages (B,), group_std (num_groups,))`; a group without spread gets 0.
    """
    grouped = returns.reshape(-1, group_size)
    others_mean = (grouped.sum(axis=1, keepdims=True) - grouped) / (group_size - 1)
    scale = _scale(returns, grouped, scale_rewards)
    return ((grouped - others_mean) / (scale + ADVANTAGE_EPS)).reshape(-1), unbiased_std(grouped, axis=1)
