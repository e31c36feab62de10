"""REINFORCE (Williams 1992): Monte Carlo policy gradient over complete episodes.

Each iteration resets all `num_envs` environments, rolls them for `num_steps` steps (by default
the training episode limit: the env's `max_steps_in_episode`, or `max_episode_steps` where
shorter) and keeps only each environment's first episode: steps after its first termination or
truncation are masked out. The gradient estimate is

    g = 1/N sum_episodes sum_t grad log pi(a_t | s_t) (G_t - b(s_t)),

with G_t the discounted return-to-go and b a baseline: `none` (0), `mean` (the batch mean of
G over active steps), `moving_average` (a scalar: an exponential moving average, decay
`baseline_decay`, of earlier iterations' mean G; the "vanilla REINFORCE" of the textbook's Lab
8.1b) or `value` (a learned V(s), regressed on G and detached in the policy loss). With
`normalize_returns` the weights are re-centred on their batch mean, which makes every scalar
baseline equivalent; compare baselines with `normalize_returns=False`.

KL penalty (for RLHF fine-tuning, as the textbook and Ziegler et al. 2019 do it): with weight
`beta` > 0, every step's reward becomes r_t - beta * log(pi(a_t|s_t) / pi_ref(a_t|s_t)), pi_ref
a frozen reference policy (the initial policy: random, or the `policy_params` given, e.g. an SFT
policy). With `normalize_observations` the reference keeps the observation statistics it started
with: pi_ref stays the same function of the raw observation while the running statistics move.
This k1 penalty in the reward is the one whose score-function gradient is unbiased for the
gradient of KL(pi || pi_ref); the k3 estimator, as GRPO adds it to the loss, is not (its
expected gradient is that of KL(pi_ref || pi)). The reported `kl_to_reference` is the k3
estimate of KL(pi || pi_ref) on the rollout: same expectation as k1, never negative.
"""

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from jaxpg.algos.config import Config, hparam, redeclare, setting
from jaxpg.algos.trainer import Trainer, episode_limit
from jaxpg.core import losses
from jaxpg.core.advantages import returns_to_go

BASELINES = ("none", "mean", "value", "moving_average")


@dataclasses.dataclass(frozen=True)
class ReinforceConfig(Config):
    """REINFORCE's options."""

    algo = "reinforce"

    num_envs: int = redeclare(Config, "num_envs", 16, "episodes per iteration")
    num_steps: int | None = setting(
        None, "steps rolled per episode; None takes the episode limit, the env's max_steps_in_episode or "
        "max_episode_steps where shorter", optional=True
    )
    total_timesteps: int = redeclare(
        Config, "total_timesteps", 1_000_000,
        "env steps of the whole run, masked steps included (num_envs * num_steps per iteration)",
    )
    baseline: str = setting(
        "value", "b(s): none, mean (batch mean), value (learned V), moving_average", "choice", choices=BASELINES
    )
    normalize_returns: bool = setting(True, "standardise G - b over the batch", "bool")
    record_grad_variance: bool = setting(False, "log the per-episode gradient variance (costs a vmapped grad)", "bool")
    gamma: float = hparam(0.99, "discount of the returns-to-go", high=1.0, high_inclusive=True)
    ent_coef: float = hparam(0.0, "weight of the entropy bonus", low_inclusive=True)
    vf_coef: float = hparam(0.5, "weight of the value regression (baseline=value)", low_inclusive=True)
    beta: float = hparam(
        0.0, "weight of the k1 KL penalty to the reference policy in the reward; 0 is plain REINFORCE",
        low_inclusive=True,
    )
    baseline_decay: float = hparam(
        0.9, "decay of the moving_average baseline (averages about 1 / (1 - decay) iterations)",
        low_inclusive=True, high=1.0,
    )

    def validate(self) -> None:
        super().validate()
        # Standardising G - b over the batch subtracts the batch mean, and with it any scalar b:
        # such a baseline would train exactly as baseline="none".
        if self.normalize_returns and self.baseline in ("mean", "moving_average"):
            raise ValueError(
                f"baseline={self.baseline!r} changes nothing with normalize_returns=True (standardising over the "
                "batch removes any scalar baseline); accepted: normalize_returns=False, or baseline 'none' or 'value'"
            )


@struct.dataclass
class ReinforceExtra:
    """REINFORCE's own state.

    Attributes:
      baseline_total, baseline_weight: running sums of the `moving_average` baseline.
      reference: the frozen reference policy's parameters (the initial policy) for `beta`.
      reference_obs_stats: the observation statistics the reference is evaluated with: the
        initial ones, never updated.
    """

    baseline_total: jax.Array
    baseline_weight: jax.Array
    reference: Any
    reference_obs_stats: Any  # RunningStats (one per leaf of a pytree observation)


class Reinforce(Trainer):
    """REINFORCE with returns-to-go, a baseline, an entropy bonus and an optional KL penalty.

    `policy_params` (constructor argument, default None): initial policy parameters (e.g. an
    SFT policy from `jaxpg.rlhf.behaviour_cloning`); they are also the frozen reference of the
    KL penalty. None starts from a fresh initialisation, which is then the reference.
    """

    first_episodes_only = True

    algo = "reinforce"
    Config = ReinforceConfig
    inherited_extra = ("baseline_total", "baseline_weight", "reference", "reference_obs_stats")

    def resolve_config(self, config, env_params):
        if config.num_steps is not None:
            return config
        return config.replace(
            num_steps=episode_limit(self.algo, "num_steps", env_params, config.max_episode_steps)
        )

    def _init_extra(self, key, params, hparams):
        return ReinforceExtra(
            jnp.float32(0.0), jnp.float32(0.0), params["policy"], self.initial_obs_stats()
        )

    def _moving_average(self, extra, returns, mask, hparams):
        """The `moving_average` baseline b for this batch, and `extra` updated with this batch.

        b is the exponential moving average (decay `baseline_decay`) of earlier iterations' mean
        return-to-go over active steps, bias-corrected as Adam's moments are, so that the first
        iterations are not pulled toward 0; b = 0 before any batch. Only earlier batches enter
        b, so it does not depend on this batch's actions and the gradient stays unbiased.

        Returns:
          `(b scalar, extra)`.
        """
        total, weight = extra.baseline_total, extra.baseline_weight
        baseline = jnp.where(weight > 0.0, total / jnp.maximum(weight, 1e-30), 0.0)
        decay = hparams["baseline_decay"]
        extra = extra.replace(
            baseline_total=decay * total + (1.0 - decay) * losses.masked_mean(returns, mask),
            baseline_weight=decay * weight + (1.0 - decay),
        )
        return baseline, extra

    def _reference_log_prob(self, extra, batch):
        """log pi_ref(a_t | s_t) of the rollout's actions under the frozen reference, with its own
        frozen observation statistics: `(T, N)`."""
        outputs, log_std = self.rollout_outputs({"policy": extra.reference}, extra.reference_obs_stats, batch)
        return jax.lax.stop_gradient(self.head.log_prob(outputs, log_std, batch.action))

    def _penalised_rewards(self, batch, ref_log_prob, hparams):
        """r_t - beta * log(pi / pi_ref) at the sampled actions (the k1 penalty): `(T, N)`."""
        return batch.reward - hparams["beta"] * losses.k1_kl(batch.log_prob, ref_log_prob)

    def _policy_loss_terms(self, params, obs_stats, batch, hparams):
        """Per-step log-probs, entropies and values under `params` on a `(T, N)` batch."""
        outputs, log_std, value = self.rollout_outputs_and_values(params, obs_stats, batch)
        log_prob = self.head.log_prob(outputs, log_std, batch.action)
        entropy = self.head.entropy(outputs, log_std)
        return log_prob, entropy, value

    def _weights(self, returns, value, mask, hparams):
        """The policy-gradient weights G_t - b_t, optionally standardised; no gradient."""
        baseline = self.config.baseline
        if baseline == "value":
            weights = returns - value
        elif baseline == "mean":
            weights = returns - losses.masked_mean(returns, mask)
        else:  # `none`, and `moving_average`, whose b `_iteration` subtracts from the returns
            weights = returns
        if self.config.normalize_returns:
            weights = losses.masked_standardize(weights, mask)
        return jax.lax.stop_gradient(weights)

    def loss(self, params, obs_stats, batch, returns, mask, hparams):
        """REINFORCE loss on `(T, N)` arrays; returns `(loss, aux metrics)`.

        The policy term is summed over an episode's steps and averaged over episodes, so its
        gradient is the textbook estimator above; the value regression and the entropy are
        averaged over active steps.
        """
        num_episodes = mask.shape[1]
        log_prob, entropy, value = self._policy_loss_terms(params, obs_stats, batch, hparams)
        weights = self._weights(returns, value, mask, hparams)
        policy_loss = losses.score_function_loss(log_prob, weights, mask)
        mean_entropy = losses.masked_mean(entropy, mask)
        value_loss = losses.masked_mean((value - returns) ** 2, mask) if self.config.baseline == "value" else 0.0
        # The entropy bonus is summed over each episode's steps like the policy term.
        loss = policy_loss - hparams["ent_coef"] * jnp.sum(mask * entropy) / num_episodes
        loss = loss + hparams["vf_coef"] * value_loss
        return loss, {"policy_loss": policy_loss, "value_loss": value_loss, "entropy": mean_entropy}

    def _iteration(self, state, env_params):
        hparams, config = state.hparams, self.config
        key, reset_key, rollout_key = jax.random.split(state.key, 3)
        obs, env_state = self.reset_envs(reset_key, config.num_envs, env_params)
        # Every episode starts from a reset, and a recurrent policy's carry from its initial one.
        (env_state, obs, _), batch = self.collect(state, env_params, env_state, obs, rollout_key, config.num_steps)
        dones = (batch.terminated | batch.truncated).astype(jnp.float32)
        mask = losses.first_episode_mask(dones)
        ref_log_prob = self._reference_log_prob(state.extra, batch)
        rewards = self._penalised_rewards(batch, ref_log_prob, hparams)
        returns = returns_to_go(rewards, dones, hparams["gamma"])
        extra = state.extra
        if config.baseline == "moving_average":
            baseline, extra = self._moving_average(extra, returns, mask, hparams)
            returns = returns - baseline

        (loss, aux), grads = jax.value_and_grad(self.loss, has_aux=True)(
            state.params, state.obs_stats, batch, returns, mask, hparams
        )
        params, opt_state, finite, grad_norm = self.apply_gradients(
            state.params, state.opt_state, grads, loss, hparams
        )
        new_log_prob, _, _ = self._policy_loss_terms(params, state.obs_stats, batch, hparams)
        metrics = {
            **aux,
            "loss": loss,
            "episode_return": jnp.mean(jnp.sum(mask * batch.reward, axis=0)),
            "episode_length": jnp.mean(jnp.sum(mask, axis=0)),
            "grad_norm": grad_norm,
            "approx_kl": losses.masked_mean(losses.k3_kl(batch.log_prob, new_log_prob), mask),
            "kl_to_reference": losses.masked_mean(losses.k3_kl(batch.log_prob, ref_log_prob), mask),
            "nonfinite": ~finite,
        }
        if config.record_grad_variance:
            metrics["grad_variance"] = self._grad_variance(state, batch, returns, mask)
        obs_stats = state.obs_stats
        if config.normalize_observations:
            obs_stats = self.update_obs_stats(obs_stats, batch.obs)
        state = state.replace(
            params=params, opt_state=opt_state, obs_stats=obs_stats, env_state=env_state,
            obs=obs, key=key, extra=extra,
        )
        return state, metrics

    def _grad_variance(self, state, batch, returns, mask):
        """Total variance of the per-episode policy-gradient estimate (trace of its covariance).

        Each episode gives an estimate g_i = sum_t grad log pi(a_t|s_t) w_t of the policy
        gradient; `g = mean_i g_i` is what the update uses. This returns
        sum_params Var_i(g_i), so baselines can be compared by the variance they leave
        (the variance of `g` itself is this divided by `num_envs`).
        """
        hparams = state.hparams
        _, _, value = self._policy_loss_terms(state.params, state.obs_stats, batch, hparams)
        weights = self._weights(returns, value, mask, hparams)

        def episode_objective(policy_params, episode):
            ep_batch, ep_weights, ep_mask = episode
            params = {**state.params, "policy": policy_params}
            log_prob, _, _ = self._policy_loss_terms(params, state.obs_stats, ep_batch, hparams)
            return jnp.sum(ep_mask * log_prob * ep_weights)

        per_episode = jax.vmap(jax.grad(episode_objective), in_axes=(None, 0))(
            state.params["policy"],
            jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), (batch, weights, mask)),
        )
        return sum(jnp.sum(jnp.var(g, axis=0)) for g in jax.tree.leaves(per_episode))
