"""The algorithms' loss pieces, as pure functions of arrays and hyperparameters.

PPO, REINFORCE and GRPO compose their losses from these; none of them holds state or reads a
trainer. Shapes: `(T, B)` arrays are steps by episodes (or tokens by completions), `mask` marks
the active steps with 1.0, and a `(B,)` advantage is broadcast over its episode's steps.
"""

import jax.numpy as jnp

LOSS_TYPES = ("grpo", "bnpo", "dr_grpo", "dapo")


def masked_mean(x, mask):
    """Mean of `x` over the entries where `mask` is 1 (0 if there are none)."""
    return jnp.sum(x * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def standardize(x, eps=1e-8):
    """`(x - mean) / (std + eps)` over all entries (PPO's per-minibatch advantages)."""
    return (x - x.mean()) / (x.std() + eps)


def masked_standardize(x, mask, eps=1e-8):
    """`standardize` over the active entries only."""
    mean = masked_mean(x, mask)
    std = jnp.sqrt(masked_mean((x - mean) ** 2, mask))
    return (x - mean) / (std + eps)


def first_episode_mask(dones):
    """1.0 on each column's steps up to and including its first episode end: `(T, B)`."""
    return (jnp.cumsum(dones, axis=0) - dones == 0).astype(jnp.float32)


def sequence_log_ratio(log_ratio, mask):
    """GSPO's sequence-level log-ratio: each column's mean active log-ratio, at every step.

    Args:
      log_ratio: `(T, B)` per-step log pi_new - log pi_old.
      mask: `(T, B)`.

    Returns:
      `(T, B)`: log of the geometric-mean ratio of the column, broadcast over its steps.
    """
    lengths = jnp.maximum(mask.sum(axis=0), 1.0)
    return jnp.broadcast_to((mask * log_ratio).sum(axis=0) / lengths, log_ratio.shape)


def completed_mask(mask, terminated):
    """`mask` with the columns whose first episode did not terminate set to 0: `(T, B)`.

    TRL's `mask_truncated_completions`: a completion cut by the length limit (no EOS) or by
    the rollout's horizon is left out of the loss, so it is not penalised for being unfinished
    (DAPO, Yu et al. 2025, "overlong filtering"). Its reward still counts in its group's
    advantages.

    Args:
      mask: `(T, B)` first-episode mask (`first_episode_mask`).
      terminated: `(T, B)` termination flags.
    """
    ended = jnp.sum(mask * terminated, axis=0) > 0
    return mask * ended.astype(mask.dtype)


def clipped_surrogate(log_ratio, advantages, clip_low, clip_high, delta=None):
    """PPO's clipped objective (to maximise), symmetric or not, and where each clip binds.

    objective = min(r A, clip(r, 1 - clip_low, 1 + clip_high) A), r = exp(log_ratio). With
    `clip_low == clip_high` this is PPO's; `clip_high > clip_low` is DAPO's clip-higher.
    `delta` is two-sided clipping (TRL's `delta`, from the INTELLECT-2 report, Prime Intellect
    2025): the unclipped term uses min(r, delta), so for A < 0, where PPO's min leaves the
    ratio unbounded above, the objective is at least delta * A. With delta > 1 + clip_high
    nothing changes for A > 0; None (or inf) is off.

    Args:
      log_ratio: log pi_new - log pi_old, any shape.
      advantages: broadcastable to `log_ratio`.
      clip_low, clip_high: scalars.
      delta: None or a scalar (may be traced) upper bound on the unclipped ratio.

    Returns:
      `(objective, clipped_low, clipped_high)`: the objective and boolean indicators of the
      entries where the lower (r < 1 - clip_low, A < 0) or the upper (r > 1 + clip_high, A > 0)
      clip takes the gradient away.
    """
    ratio = jnp.exp(log_ratio)
    clipped_ratio = jnp.clip(ratio, 1.0 - clip_low, 1.0 + clip_high)
    unclipped = ratio if delta is None else jnp.minimum(ratio, delta)
    objective = jnp.minimum(unclipped * advantages, clipped_ratio * advantages)
    clipped_low = (ratio < 1.0 - clip_low) & (advantages < 0)
    clipped_high = (ratio > 1.0 + clip_high) & (advantages > 0)
    return objective, clipped_low, clipped_high


def clip_fraction(log_ratio, clip_eps):
    """Fraction of entries whose ratio left [1 - clip_eps, 1 + clip_eps] (PPO's diagnostic)."""
    return jnp.mean(jnp.abs(jnp.exp(log_ratio) - 1.0) > clip_eps)


def value_loss(value, targets, old_value=None, clip_eps=None):
    """0.5 * mean squared error of `value` to `targets`, optionally clipped as PPO does.

    With `old_value` and `clip_eps`, the error is the larger of the plain one and that of
    `old_value + clip(value - old_value, -clip_eps, clip_eps)`, so one update cannot move V far
    from the values the rollout saw.
    """
    error = (value - targets) ** 2
    if old_value is not None:
        clipped = old_value + jnp.clip(value - old_value, -clip_eps, clip_eps)
        error = jnp.maximum(error, (clipped - targets) ** 2)
    return 0.5 * error.mean()


def score_function_loss(log_prob, weights, mask):
    """REINFORCE's surrogate: -sum over steps of mask * log pi * weight, averaged over episodes.

    Its gradient is the score-function estimate 1/B sum_episodes sum_t grad log pi(a_t|s_t) w_t.

    Args:
      log_prob, weights, mask: `(T, B)`; `weights` (returns minus baseline) carry no gradient.
    """
    return -jnp.sum(mask * log_prob * weights) / mask.shape[1]


def k1_kl(log_prob, ref_log_prob):
    """k1 estimate of KL(pi || pi_ref) from samples of pi: log pi - log pi_ref (can be < 0)."""
    return log_prob - ref_log_prob


def k3_kl(log_prob, ref_log_prob):
    """Schulman's k3 estimate of KL(pi || pi_ref) from samples of pi: r - 1 - log r with
    r = pi_ref / pi; unbiased and never negative."""
    log_ratio = ref_log_prob - log_prob
    return jnp.expm1(log_ratio) - log_ratio


def aggregate(per_step, mask, loss_type: str, normalizer=None):
    """Reduces a `(T, B)` per-step loss over the active steps, as TRL's `loss_type` names it.

    - `grpo` (Shao et al. 2024): mean over each completion's active steps, then over completions;
      short completions weigh more per token (the length bias Dr. GRPO removes).
    - `bnpo`: sum over all active steps / their number in this (mini)batch.
    - `dr_grpo` (Liu et al. 2025, "Dr. GRPO"): sum / (B * T), a constant normaliser.
    - `dapo` (Yu et al. 2025; TRL's default): sum / `normalizer`, the active steps of the whole
      batch that this minibatch belongs to, per minibatch; without `normalizer` it is `bnpo`.
    """
    if loss_type == "grpo":
        per_member = (mask * per_step).sum(axis=0) / jnp.maximum(mask.sum(axis=0), 1.0)
        return per_member.mean()
    if loss_type == "bnpo" or (loss_type == "dapo" and normalizer is None):
        return (mask * per_step).sum() / jnp.maximum(mask.sum(), 1.0)
    if loss_type == "dapo":
        return (mask * per_step).sum() / jnp.maximum(normalizer, 1.0)
    if loss_type == "dr_grpo":
        return (mask * per_step).sum() / mask.size
    raise ValueError(f"loss_type={loss_type!r} is unknown; accepted: {', '.join(LOSS_TYPES)}")
