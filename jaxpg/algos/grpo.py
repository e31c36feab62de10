"""GRPO (Shao et al. 2024): group-relative policy optimisation without a critic.

Each iteration resets `num_groups` environments and clones each state `group_size` (G) times.
Every member rolls out from its group's identical state to the end of its first episode (steps
after it are masked). A member's advantage is its return minus its group's mean return, divided
by a scale; every step of the member carries it. With `common_random_numbers`, the members of a
group share the environment's random stream, so the group differs only by the policy's samples.

The loss is PPO's clipped surrogate per step, with an asymmetric clip range
[1 - clip_eps, 1 + clip_eps_high] (DAPO), an optional k3 estimate of KL(pi || pi_ref) to a frozen
reference policy weighted by `beta`, and an entropy bonus. With `normalize_observations` the
reference keeps the observation statistics it started with, so pi_ref stays the same function of
the raw observation while the running statistics move.
"""

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from jaxpg.algos.config import Config, hparam, redeclare, setting
from jaxpg.algos.trainer import Trainer, episode_limit
from jaxpg.core import losses
from jaxpg.core.advantages import ADVANTAGES, group_advantages, leave_one_out_advantages, returns_to_go

SCALE_REWARDS = ("group", "batch", "none")
IMPORTANCE_SAMPLING_LEVELS = ("token", "sequence")



def upper_clip(hparams):
    """`clip_eps_high`, or `clip_eps` where it is NaN (the option left at None)."""
    return jnp.where(jnp.isnan(hparams["clip_eps_high"]), hparams["clip_eps"], hparams["clip_eps_high"])

@dataclasses.dataclass(frozen=True)
class GRPOConfig(Config):
    """GRPO's options; names follow TRL's `GRPOConfig` where TRL has the option."""

    algo = "grpo"

    num_groups: int = setting(8, "groups per iteration, each from one fresh reset")
    group_size: int = setting(4, "members per group (TRL: num_generations)", minimum=2)
    max_steps: int | None = setting(
        None, "rollout horizon; None takes the episode limit, the env's max_steps_in_episode or "
        "max_episode_steps where shorter", optional=True
    )
    num_envs: int | None = setting(None, "derived: num_groups * group_size (set those instead)", optional=True)
    num_steps: int | None = setting(None, "derived: max_steps (set that instead)", optional=True)
    total_timesteps: int = redeclare(
        Config, "total_timesteps", 1_600_000,
        "env steps of the whole run, num_groups * group_size * max_steps per iteration",
    )
    num_iterations: int = setting(1, "updates on each batch (TRL: num_iterations, the paper's mu)")
    num_minibatches: int = setting(1, "minibatches per update, split over members")
    scale_rewards: str = setting(
        "group", "TRL's scale_rewards: divide advantages by the group's std, the batch's, or not", "choice",
        choices=SCALE_REWARDS,
    )
    loss_type: str = setting(
        "grpo", "TRL's loss_type: how per-step losses are averaged (jaxpg.core.losses.aggregate)", "choice",
        choices=losses.LOSS_TYPES,
    )
    advantage: str = setting(
        "group", "group: return minus the group's mean (GRPO); rloo: minus the mean of the other members "
        "(RLOO, Ahmadian et al. 2024; pair with scale_rewards='none')", "choice", choices=ADVANTAGES,
    )
    mask_truncated_completions: bool = setting(
        False, "TRL's option: members whose episode did not terminate (truncated) are left out of the loss",
        "bool",
    )
    importance_sampling_level: str = setting(
        "token", "TRL's option: per-token ratios, or the sequence's geometric mean (GSPO)", "choice",
        choices=IMPORTANCE_SAMPLING_LEVELS,
    )
    common_random_numbers: bool = setting(True, "members of a group share the env's random stream", "bool")
    gamma: float = hparam(
        1.0, "discount of a member's return (1: the undiscounted sum, as for LLM rewards)", high=1.0,
        high_inclusive=True,
    )
    clip_eps: float = hparam(0.2, "lower clip range of the ratio (TRL: epsilon)", high=1.0)
    clip_eps_high: float | None = hparam(
        None, "upper clip range (TRL: epsilon_high; DAPO 0.28); None takes clip_eps", optional=True
    )
    delta: float | None = hparam(
        None, "TRL's delta, two-sided clipping (INTELLECT-2): the ratio is capped at delta where A < 0; "
        "None (stored as inf) is off", low=1.0, high=math.inf, high_inclusive=True, optional=True,
    )
    beta: float = hparam(
        0.0, "weight of the k3 KL to the reference policy in the loss (TRL's default 0)", low_inclusive=True
    )
    ent_coef: float = hparam(0.0, "weight of the entropy bonus", low_inclusive=True)

    def __post_init__(self):
        # clip_eps_high=None stays None here and is NaN among the hyperparameters, resolved to
        # clip_eps when the loss is traced: a swept or traced clip_eps then moves both bounds.
        if self.delta is None:
            object.__setattr__(self, "delta", math.inf)
        super().__post_init__()

    def validate(self):
        super().validate()
        members = self.num_groups * self.group_size
        for name, derived in (("num_envs", members), ("num_steps", self.max_steps)):
            given = getattr(self, name)
            if given is not None and given != derived:
                raise ValueError(f"grpo: {name} is derived (num_groups * group_size, max_steps); set those instead")
        object.__setattr__(self, "num_envs", members)
        object.__setattr__(self, "num_steps", self.max_steps)
        if members % self.num_minibatches:
            raise ValueError(
                f"num_minibatches={self.num_minibatches} must divide num_groups * group_size = {members}"
            )

    @property
    def updates_per_iteration(self) -> int:
        return self.num_iterations * self.num_minibatches


@struct.dataclass
class GRPOExtra:
    """GRPO's own state: `reference`, the frozen reference policy's parameters, and
    `reference_obs_stats`, the observation statistics it is evaluated with (the initial ones,
    never updated)."""

    reference: Any
    reference_obs_stats: Any  # RunningStats (one per leaf of a pytree observation)


class GRPO(Trainer):
    """GRPO on any gymnax environment; names follow TRL's `GRPOConfig` where it has the option.

    With 8 groups of 4, a CartPole iteration is 32 episodes, and the defaults solve CartPole
    (return 500) within the default budget. `policy_params` (constructor argument): initial
    policy parameters (e.g. an SFT policy); the reference is the initial policy, whichever it is.
    """

    first_episodes_only = True

    algo = "grpo"
    Config = GRPOConfig
    inherited_extra = ("reference", "reference_obs_stats")

    def resolve_config(self, config, env_params):
        if config.max_steps is not None:
            return config
        limit = episode_limit(self.algo, "max_steps", env_params, config.max_episode_steps)
        return config.replace(max_steps=limit, num_steps=None)

    def _init_extra(self, key, params, hparams):
        return GRPOExtra(reference=params["policy"], reference_obs_stats=self.initial_obs_stats())

    def loss(self, params, obs_stats, batch, advantages, mask, extra, hparams, normalizer=None):
        """GRPO loss on `(T, B)` arrays; returns `(loss, aux metrics)`.

        `extra` is the `GRPOExtra` holding the frozen reference policy and its statistics.

        `normalizer` is `loss_type="dapo"`'s denominator: the whole batch's active steps per
        minibatch."""
        outputs, log_std = self.rollout_outputs(params, obs_stats, batch)
        log_prob = self.head.log_prob(outputs, log_std, batch.action)
        entropy = self.head.entropy(outputs, log_std)
        log_ratio = log_prob - batch.log_prob
        if self.config.importance_sampling_level == "sequence":
            log_ratio = losses.sequence_log_ratio(log_ratio, mask)
        objective, low, high = losses.clipped_surrogate(
            log_ratio, advantages, hparams["clip_eps"], upper_clip(hparams), hparams["delta"]
        )
        ref_outputs, ref_log_std = self.rollout_outputs({"policy": extra.reference}, extra.reference_obs_stats, batch)
        ref_log_prob = jax.lax.stop_gradient(self.head.log_prob(ref_outputs, ref_log_std, batch.action))
        kl = losses.k3_kl(log_prob, ref_log_prob)
        per_step = -objective + hparams["beta"] * kl - hparams["ent_coef"] * entropy
        aggregate = lambda x: losses.aggregate(x, mask, self.config.loss_type, normalizer)
        return aggregate(per_step), {
            "policy_loss": aggregate(-objective),
            "kl_to_reference": losses.masked_mean(kl, mask),
            "entropy": losses.masked_mean(entropy, mask),
            "clip_fraction_low": losses.masked_mean(low, mask),
            "clip_fraction_high": losses.masked_mean(high, mask),
        }

    def _iteration(self, state, env_params):
        hparams, config = state.hparams, self.config
        group_size, num_members = config.group_size, config.num_envs
        key, reset_key, rollout_key, shuffle_key = jax.random.split(state.key, 4)
        obs, env_state = self.reset_envs(reset_key, config.num_groups, env_params)
        # Every member of a group starts from the identical (cloned) state, and a recurrent
        # policy's members from the same, initial, carry.
        obs, env_state = jax.tree.map(lambda x: jnp.repeat(x, group_size, axis=0), (obs, env_state))
        _, batch = self.collect(
            state, env_params, env_state, obs, rollout_key, config.num_steps,
            group_size=group_size if config.common_random_numbers else 1,
        )
        dones = (batch.terminated | batch.truncated).astype(jnp.float32)
        mask = losses.first_episode_mask(dones)
        member_returns = returns_to_go(batch.reward * mask, dones, hparams["gamma"])[0]
        advantage_fn = leave_one_out_advantages if config.advantage == "rloo" else group_advantages
        advantages, group_std = advantage_fn(member_returns, group_size, config.scale_rewards)
        loss_mask = mask
        if config.mask_truncated_completions:
            loss_mask = losses.completed_mask(mask, batch.terminated.astype(jnp.float32))
        normalizer = loss_mask.sum() / config.num_minibatches

        def update(carry, member_indices):
            params, opt_state = carry
            take = lambda x: x[:, member_indices]
            minibatch = jax.tree.map(take, batch)
            (loss, aux), grads = jax.value_and_grad(self.loss, has_aux=True)(
                params, state.obs_stats, minibatch, advantages[member_indices], take(loss_mask), state.extra, hparams,
                normalizer,
            )
            params, opt_state, finite, grad_norm = self.apply_gradients(params, opt_state, grads, loss, hparams)
            return (params, opt_state), {**aux, "loss": loss, "grad_norm": grad_norm, "finite": finite}

        def epoch(carry, epoch_key):
            order = jax.random.permutation(epoch_key, num_members)
            return jax.lax.scan(update, carry, order.reshape(config.num_minibatches, -1))

        (params, opt_state), update_metrics = jax.lax.scan(
            epoch, (state.params, state.opt_state), jax.random.split(shuffle_key, config.num_iterations)
        )
        finite = update_metrics.pop("finite")
        new_outputs, new_log_std = self.rollout_outputs(params, state.obs_stats, batch)
        new_log_prob = self.head.log_prob(new_outputs, new_log_std, batch.action)
        metrics = {
            **jax.tree.map(jnp.mean, update_metrics),
            "episode_return": (batch.reward * mask).sum(axis=0).mean(),
            "episode_length": mask.sum(axis=0).mean(),
            "group_return_std": group_std.mean(),
            "zero_spread_fraction": (group_std < 1e-6).mean(),
            "truncated_fraction": 1.0 - (mask * batch.terminated).sum(axis=0).mean(),
            "approx_kl": losses.masked_mean(losses.k3_kl(batch.log_prob, new_log_prob), mask),
            "nonfinite": ~jnp.all(finite),
        }
        obs_stats = state.obs_stats
        if config.normalize_observations:
            obs_stats = self.update_obs_stats(obs_stats, batch.obs)
        return state.replace(params=params, opt_state=opt_state, obs_stats=obs_stats, key=key), metrics
