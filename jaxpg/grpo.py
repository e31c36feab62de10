"""GRPO (Shao et al. 2024): group-relative policy optimisation without a critic.

Each iteration resets `num_groups` environments and clones each state `group_size` (G) times.
Every member rolls out from its group's identical state to the end of its first episode (steps
after it are masked). A member's advantage is its return minus its group's mean return, divided
by a scale; every step of the member carries it. With `common_random_numbers`, the members of a
group share the environment's random stream, so the group differs only by the policy's samples.

The loss is PPO's clipped surrogate per step, with an asymmetric clip range
[1 - clip_eps, 1 + clip_eps_high] (DAPO), an optional k3 estimate of KL(pi || pi_ref) to a frozen
reference policy weighted by `beta`, and an entropy bonus.
"""

import jax
import jax.numpy as jnp

from jaxpg.advantages import returns_to_go
from jaxpg.config import check_choice, check_positive_int
from jaxpg.trainer import COMMON_STATIC, Trainer

SCALE_REWARDS = ("group", "batch", "none")
LOSS_TYPES = ("grpo", "bnpo", "dr_grpo")
IMPORTANCE_SAMPLING_LEVELS = ("token", "sequence")
ADVANTAGE_EPS = 1e-4


def group_advantages(returns, group_size: int, scale_rewards: str = "group"):
    """Group-relative advantages.

    Args:
      returns: `(B,)` member returns, B = num_groups * group_size, members of a group adjacent.
      group_size: G.
      scale_rewards: `group` (divide by the group's std), `batch` (by the whole batch's std) or
        `none`.

    Returns:
      `(advantages (B,), group_std (num_groups,))`. A group whose members all got the same
      return has advantage 0 (no NaN).
    """
    grouped = returns.reshape(-1, group_size)
    centred = grouped - grouped.mean(axis=1, keepdims=True)
    group_std = grouped.std(axis=1)
    if scale_rewards == "group":
        scale = group_std[:, None]
    elif scale_rewards == "batch":
        scale = returns.std()
    else:
        scale = 1.0
    return (centred / (scale + ADVANTAGE_EPS)).reshape(-1), group_std


def k3_kl(log_prob, ref_log_prob):
    """Schulman's k3 estimator of KL(pi || pi_ref) from samples of pi: never negative."""
    log_ratio = ref_log_prob - log_prob
    return jnp.expm1(log_ratio) - log_ratio


def clipped_surrogate(log_ratio, advantages, mask, clip_eps, clip_eps_high, level: str):
    """Per-step clipped objective (to maximise) and the low/high clip indicators.

    Args:
      log_ratio: `(T, B)` log pi_new - log pi_old per step.
      advantages: `(B,)` one per member.
      mask: `(T, B)` active steps.
      level: `token` uses each step's ratio; `sequence` uses the member's geometric-mean ratio
        exp(mean over its active steps of log_ratio) at every step (GSPO).
    """
    if level == "sequence":
        lengths = jnp.maximum(mask.sum(axis=0), 1.0)
        log_ratio = jnp.broadcast_to((mask * log_ratio).sum(axis=0) / lengths, log_ratio.shape)
    ratio = jnp.exp(log_ratio)
    clipped_ratio = jnp.clip(ratio, 1.0 - clip_eps, 1.0 + clip_eps_high)
    objective = jnp.minimum(ratio * advantages, clipped_ratio * advantages)
    low = (ratio < 1.0 - clip_eps) & (advantages < 0)
    high = (ratio > 1.0 + clip_eps_high) & (advantages > 0)
    return objective, low, high


def aggregate(per_step, mask, loss_type: str):
    """Reduces a `(T, B)` per-step loss over active steps.

    `grpo`: mean over each member's active steps, then over members. `bnpo`: sum over all
    active steps / their number. `dr_grpo`: sum / (B * T), a constant normaliser.
    """
    if loss_type == "grpo":
        per_member = (mask * per_step).sum(axis=0) / jnp.maximum(mask.sum(axis=0), 1.0)
        return per_member.mean()
    if loss_type == "bnpo":
        return (mask * per_step).sum() / jnp.maximum(mask.sum(), 1.0)
    return (mask * per_step).sum() / mask.size


class GRPO(Trainer):
    """GRPO on any gymnax environment; names follow TRL's `GRPOConfig` where it has the option.

    Settings (static):
      `num_groups` (8): groups per iteration, each from one fresh reset.
      `group_size` (4): G members per group (TRL: `num_generations`); must be >= 2. With 8
        groups of 4, a CartPole iteration is 32 episodes, like REINFORCE's batch, and the
        defaults solve CartPole (return 500) within the default budget.
      `max_steps` (None): rollout horizon; None takes the env's `max_steps_in_episode`.
      `total_timesteps` (1.6M): budget, `num_groups * group_size * max_steps` per iteration
        (100 iterations on CartPole).
      `num_iterations` (1): updates on each batch (TRL: `num_iterations`, "mu" in the paper).
      `num_minibatches` (1): minibatches per update, split over members.
      `scale_rewards` ("group"): TRL's `scale_rewards`; `group`, `batch` or `none`.
      `loss_type` ("grpo"): TRL's `loss_type`; `grpo`, `bnpo` or `dr_grpo`.
      `importance_sampling_level` ("token"): TRL's option; `token` or `sequence`.
      `common_random_numbers` (True): members of a group share the env's random stream.
      `policy_params` (None): initial policy parameters (e.g. an SFT policy); by default the
        reference policy is the initial policy, whichever it is.

    Hyperparameters (traced): `lr` 1e-3 (Adam; what the CartPole default needs), `gamma` 1.0 (a member's return is its undiscounted
    sum, as for LLM rewards), `clip_eps` 0.2 (TRL `epsilon`), `clip_eps_high` = `clip_eps`
    unless given (TRL `epsilon_high`; DAPO uses 0.28), `beta` 0.0 (TRL's default: KL is left
    out unless asked for), `ent_coef` 0.0, `max_grad_norm` 1.0 (TRL's default).
    """

    algo = "grpo"
    KEEPS_REFERENCE = True
    STATIC_DEFAULTS = {
        **COMMON_STATIC,
        "num_envs": None,
        "num_steps": None,
        "num_groups": 8,
        "group_size": 4,
        "max_steps": None,
        "total_timesteps": 1_600_000,
        "num_iterations": 1,
        "num_minibatches": 1,
        "scale_rewards": "group",
        "loss_type": "grpo",
        "importance_sampling_level": "token",
        "common_random_numbers": True,
    }
    HPARAM_DEFAULTS = {
        "lr": 1e-3, "gamma": 1.0, "clip_eps": 0.2, "clip_eps_high": None, "beta": 0.0,
        "ent_coef": 0.0, "max_grad_norm": 1.0,
    }

    def __init__(self, env, env_params, policy_params=None, **config):
        group_size = config.get("group_size", self.STATIC_DEFAULTS["group_size"])
        if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 2:
            raise ValueError(f"group_size={group_size!r} must be an integer >= 2 (a group needs members to compare)")
        num_groups = check_positive_int("num_groups", config.get("num_groups", self.STATIC_DEFAULTS["num_groups"]))
        max_steps = config.get("max_steps")
        if max_steps is None:
            max_steps = getattr(env_params, "max_steps_in_episode", None)
            if max_steps is None:
                raise ValueError("grpo: max_steps=None takes the env's max_steps_in_episode, which these "
                                 "env_params lack; pass max_steps (a positive integer)")
        max_steps = check_positive_int("max_steps", int(max_steps))
        for name in ("num_envs", "num_steps"):
            if config.get(name) is not None:
                raise ValueError(f"grpo: {name} is derived (num_groups * group_size, max_steps); set those instead")
        if config.get("clip_eps_high") is None:
            config = {**config, "clip_eps_high": config.get("clip_eps", self.HPARAM_DEFAULTS["clip_eps"])}
        config = {**config, "num_envs": num_groups * group_size, "num_steps": max_steps, "max_steps": max_steps}
        super().__init__(env, env_params, policy_params=policy_params, **config)

    def _check_static(self, static):
        check_choice("scale_rewards", static["scale_rewards"], SCALE_REWARDS)
        check_choice("loss_type", static["loss_type"], LOSS_TYPES)
        check_choice("importance_sampling_level", static["importance_sampling_level"], IMPORTANCE_SAMPLING_LEVELS)
        check_positive_int("num_iterations", static["num_iterations"])
        check_positive_int("num_minibatches", static["num_minibatches"])
        if (static["num_groups"] * static["group_size"]) % static["num_minibatches"]:
            raise ValueError(
                f"num_minibatches={static['num_minibatches']} must divide num_groups * group_size = "
                f"{static['num_groups'] * static['group_size']}"
            )

    def loss(self, params, obs_stats, batch, advantages, mask, reference, hparams):
        """GRPO loss on `(T, B)` arrays; returns `(loss, aux metrics)`."""
        outputs, log_std = self.policy_outputs(params, obs_stats, batch.obs)
        log_prob = self.head.log_prob(outputs, log_std, batch.action)
        entropy = self.head.entropy(outputs, log_std)
        objective, low, high = clipped_surrogate(
            log_prob - batch.log_prob, advantages, mask, hparams["clip_eps"], hparams["clip_eps_high"],
            self.config["importance_sampling_level"],
        )
        ref_outputs, ref_log_std = self.policy_outputs({"policy": reference}, obs_stats, batch.obs)
        ref_log_prob = jax.lax.stop_gradient(self.head.log_prob(ref_outputs, ref_log_std, batch.action))
        kl = k3_kl(log_prob, ref_log_prob)
        per_step = -objective + hparams["beta"] * kl - hparams["ent_coef"] * entropy
        loss = aggregate(per_step, mask, self.config["loss_type"])
        active = jnp.maximum(mask.sum(), 1.0)
        return loss, {
            "policy_loss": aggregate(-objective, mask, self.config["loss_type"]),
            "kl_to_reference": (mask * kl).sum() / active,
            "entropy": (mask * entropy).sum() / active,
            "clip_fraction_low": (mask * low).sum() / active,
            "clip_fraction_high": (mask * high).sum() / active,
        }

    def _iteration(self, state):
        hparams, config = state.hparams, self.config
        group_size, num_members = config["group_size"], config["num_envs"]
        key, reset_key, rollout_key, shuffle_key = jax.random.split(state.key, 4)
        obs, env_state = self.reset_envs(reset_key, config["num_groups"])
        # Every member of a group starts from the identical (cloned) state.
        obs, env_state = jax.tree.map(lambda x: jnp.repeat(x, group_size, axis=0), (obs, env_state))
        _, batch = self.collect(
            state.params, state.obs_stats, env_state, obs, rollout_key, config["num_steps"],
            group_size=group_size if config["common_random_numbers"] else 1,
        )
        dones = (batch.terminated | batch.truncated).astype(jnp.float32)
        mask = (jnp.cumsum(dones, axis=0) - dones == 0).astype(jnp.float32)
        member_returns = returns_to_go(batch.reward * mask, dones, hparams["gamma"])[0]
        advantages, group_std = group_advantages(member_returns, group_size, config["scale_rewards"])
        reference = state.extra["reference"]

        def update(carry, member_indices):
            params, opt_state = carry
            take = lambda x: x[:, member_indices]
            minibatch = jax.tree.map(take, batch)
            (loss, aux), grads = jax.value_and_grad(self.loss, has_aux=True)(
                params, state.obs_stats, minibatch, advantages[member_indices], take(mask), reference, hparams
            )
            params, opt_state, finite, grad_norm = self.apply_gradients(params, opt_state, grads, loss, hparams)
            return (params, opt_state), {**aux, "loss": loss, "grad_norm": grad_norm, "finite": finite}

        def epoch(carry, epoch_key):
            order = jax.random.permutation(epoch_key, num_members)
            return jax.lax.scan(update, carry, order.reshape(config["num_minibatches"], -1))

        (params, opt_state), update_metrics = jax.lax.scan(
            epoch, (state.params, state.opt_state), jax.random.split(shuffle_key, config["num_iterations"])
        )
        finite = update_metrics.pop("finite")
        new_outputs, new_log_std = self.policy_outputs(params, state.obs_stats, batch.obs)
        log_ratio = self.head.log_prob(new_outputs, new_log_std, batch.action) - batch.log_prob
        active = jnp.maximum(mask.sum(), 1.0)
        metrics = {
            **jax.tree.map(jnp.mean, update_metrics),
            "episode_return": (batch.reward * mask).sum(axis=0).mean(),
            "episode_length": mask.sum(axis=0).mean(),
            "group_return_std": group_std.mean(),
            "zero_spread_fraction": (group_std < 1e-6).mean(),
            "approx_kl": (mask * (jnp.expm1(log_ratio) - log_ratio)).sum() / active,
            "nonfinite": ~jnp.all(finite),
        }
        obs_stats = state.obs_stats
        if config["normalize_observations"]:
            obs_stats = obs_stats.update(batch.obs)
        return state.replace(params=params, opt_state=opt_state, obs_stats=obs_stats, key=key), metrics
