"""PPO (Schulman et al. 2017) with GAE, clipped surrogate and value losses.

One iteration: roll `num_envs` environments for `num_steps` steps from where the last rollout
stopped, compute GAE (bootstrapping from V(final observation) on truncation, from 0 on
termination), then `update_epochs` passes over the batch, each in `num_minibatches` minibatches
drawn from a fresh permutation: of single steps, or, with a recurrent network, of whole
environments' sequences, re-read from the carries stored at the rollout's start.
"""

import dataclasses

import jax
import jax.numpy as jnp
from flax import struct

from jaxpg.algos.config import Config, hparam, redeclare, setting
from jaxpg.algos.trainer import Trainer, episode_statistics
from jaxpg.core import losses
from jaxpg.core.advantages import gae
from jaxpg.core.normalize import RunningStats
from jaxpg.core.recurrent import CELLS


@dataclasses.dataclass(frozen=True)
class PPOConfig(Config):
    """PPO's options. Names and defaults follow PureJaxRL's CartPole config."""

    algo = "ppo"

    num_envs: int = redeclare(Config, "num_envs", 4)
    update_epochs: int = setting(4, "passes over each rollout's batch")
    num_minibatches: int = setting(4, "minibatches per epoch; must divide num_envs * num_steps")
    clip_value_loss: bool = setting(True, "clip V's change per update to clip_eps, as PPO2 does", "bool")
    normalize_advantages: bool = setting(True, "standardise advantages per minibatch", "bool")
    shared_core: bool = setting(
        False, "policy='gru' or 'lstm': the value head reads the policy's torso and cell (one actor-critic "
        "with one carry, as PureJaxRL's ActorCriticRNN) instead of a recurrent value network of its own",
        "bool",
    )
    normalize_rewards: bool = setting(
        False, "divide rewards by the running std of the discounted return (SB3's VecNormalize)", "bool"
    )
    resets_per_step: int | None = setting(
        None, "fresh episodes drawn per step for the whole batch (None: every environment computes its own "
        "reset at every step, as vmapped gymnax environments do); K: the ends of a step take the resets of its "
        "first K ends, later ends copies of them (envs.autoreset.AutoResetEnv.step_batch). For environments "
        "whose reset is costly, such as Craftax's world generation", optional=True,
    )
    lr_schedule: str = redeclare(Config, "lr_schedule", "linear")
    lr: float = redeclare(Config, "lr", 2.5e-4)
    max_grad_norm: float = redeclare(Config, "max_grad_norm", 0.5)
    gamma: float = hparam(0.99, "discount", high=1.0, high_inclusive=True)
    gae_lambda: float = hparam(0.95, "GAE's lambda", low_inclusive=True, high=1.0, high_inclusive=True)
    clip_eps: float = hparam(0.2, "clip range of the probability ratio (and of V, with clip_value_loss)", high=1.0)
    ent_coef: float = hparam(0.01, "weight of the entropy bonus", low_inclusive=True)
    vf_coef: float = hparam(0.5, "weight of the value loss", low_inclusive=True)

    def validate(self):
        super().validate()
        if self.shared_core and self.policy not in CELLS:
            raise ValueError(
                f"shared_core=True shares a recurrent policy's torso and cell with the value head, and "
                f"policy={self.policy!r} has none; accepted: policy='gru' or 'lstm' with it"
            )
        if self.steps_per_iteration % self.num_minibatches:
            raise ValueError(
                f"num_minibatches={self.num_minibatches} must divide the batch "
                f"num_envs * num_steps = {self.steps_per_iteration}"
            )

    @property
    def updates_per_iteration(self) -> int:
        return self.update_epochs * self.num_minibatches


@struct.dataclass
class PPOExtra:
    """PPO's own state: episode accumulators and the reward-scaling statistics.

    Attributes:
      running_return, running_length: `(num_envs,)` sums of each env's unfinished episode.
      last_return, last_length: mean of the episodes that finished in the latest rollout that
        had any; NaN until the first one finishes.
      discounted_return: `(num_envs,)` running discounted return, for `normalize_rewards`.
      return_stats: running statistics of `discounted_return`.
    """

    running_return: jax.Array
    running_length: jax.Array
    last_return: jax.Array
    last_length: jax.Array
    discounted_return: jax.Array
    return_stats: RunningStats


class PPO(Trainer):
    """Proximal policy optimisation (Schulman et al. 2017) with GAE and clipped surrogate and
    value losses. Names follow PureJaxRL's, except its `anneal_lr=True/False`, which is
    `lr_schedule="linear"/"constant"` here."""

    algo = "ppo"
    Config = PPOConfig
    inherited_extra = ("return_stats",)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.sequential and self.config.num_envs % self.config.num_minibatches:
            raise ValueError(
                f"num_minibatches={self.config.num_minibatches} must divide num_envs={self.config.num_envs} "
                "with a recurrent network, whose minibatches are whole environments' sequences"
            )

    def _init_extra(self, key, params, hparams):
        zeros = jnp.zeros((self.config.num_envs,))
        return PPOExtra(
            running_return=zeros, running_length=zeros,
            # NaN until the first episode finishes: no return has been observed yet.
            last_return=jnp.full((), jnp.nan), last_length=jnp.full((), jnp.nan),
            discounted_return=zeros, return_stats=RunningStats.create(),
        )

    def loss(self, params, obs_stats, minibatch, hparams):
        """Clipped-surrogate PPO loss on a minibatch; returns `(loss, aux metrics)`.

        `minibatch` is `(batch, old_value, advantages, targets)` of flat steps, or, for recurrent
        networks, `(batch, old_value, advantages, targets, carry)` of whole `(T, B)` sequences and
        the carries they started from, which the networks re-read them from.
        """
        batch, old_value, advantages, targets = minibatch[:4]
        if len(minibatch) == 4:
            outputs, log_std = self.policy_outputs(params, obs_stats, batch.obs)
            value = self.value(params, obs_stats, batch.obs)
        else:
            outputs, log_std, value = self.rollout_outputs_and_values(params, obs_stats, batch, minibatch[4])
        log_prob = self.head.log_prob(outputs, log_std, batch.action)
        entropy = self.head.entropy(outputs, log_std).mean()
        clip_eps = hparams["clip_eps"]

        log_ratio = log_prob - batch.log_prob
        if self.config.normalize_advantages:
            advantages = losses.standardize(advantages)
        surrogate, _, _ = losses.clipped_surrogate(log_ratio, advantages, clip_eps, clip_eps)
        policy_loss = -surrogate.mean()
        if self.config.clip_value_loss:
            value_loss = losses.value_loss(value, targets, old_value, clip_eps)
        else:
            value_loss = losses.value_loss(value, targets)

        loss = policy_loss + hparams["vf_coef"] * value_loss - hparams["ent_coef"] * entropy
        return loss, {
            "policy_loss": policy_loss,
            "value_loss": value_loss,
            "entropy": entropy,
            "approx_kl": jnp.mean(losses.k3_kl(batch.log_prob, log_prob)),
            "clip_fraction": losses.clip_fraction(log_ratio, clip_eps),
        }

    def _scale_rewards(self, rewards, dones, extra, gamma):
        """SB3-style reward scaling by the running std of each env's discounted return."""
        if not self.config.normalize_rewards:
            return rewards, extra

        def forward(discounted, step):
            reward, done = step
            discounted = discounted * gamma + reward
            return discounted * (1.0 - done), discounted

        carried, discounted = jax.lax.scan(forward, extra.discounted_return, (rewards, dones))
        stats = extra.return_stats.update(discounted)
        scaled = rewards / jnp.sqrt(stats.var + 1e-8)
        return scaled, extra.replace(discounted_return=carried, return_stats=stats)

    def _iteration(self, state, env_params):
        hparams, config, extra = state.hparams, self.config, state.extra
        key, rollout_key, permutation_key = jax.random.split(state.key, 3)
        (env_state, obs, policy_carry), batch = self.collect(
            state, env_params, state.env_state, state.obs, rollout_key, config.num_steps, carry=state.carry["policy"]
        )
        dones = (batch.terminated | batch.truncated).astype(jnp.float32)
        running_return, running_length, ret_sum, len_sum, finished = episode_statistics(
            batch.reward, dones, extra.running_return, extra.running_length
        )
        rewards, extra = self._scale_rewards(batch.reward, dones, extra, hparams["gamma"])
        # The critic is not needed to act, so V(s_t) and V(final observation) are computed
        # here, for the whole rollout in one batched call (one scan for a recurrent critic),
        # rather than step by step.
        values, next_values, value_carry = self.rollout_values(
            state.params, state.obs_stats, batch, self.value_carry(state.carry), bootstrap=True
        )
        advantages, targets = gae(
            rewards, values, next_values, batch.terminated, batch.truncated,
            hparams["gamma"], hparams["gae_lambda"],
        )

        if self.sequential:
            # Recurrent networks re-read whole sequences from the carries they started from, so
            # minibatches split over environments, never over time.
            rows, per_step = config.num_envs, (batch, values, advantages, targets)

            def split(permutation):
                sequences = jax.tree.map(
                    lambda x: jnp.swapaxes(x[:, permutation].reshape((x.shape[0], config.num_minibatches, -1)
                                                                     + x.shape[2:]), 0, 1), per_step)
                carries = jax.tree.map(
                    lambda x: x[permutation].reshape((config.num_minibatches, -1) + x.shape[1:]), state.carry)
                return sequences + (carries,)
        else:
            rows = self.steps_per_iteration
            flat = jax.tree.map(lambda x: x.reshape((rows,) + x.shape[2:]), (batch, values, advantages, targets))

            def split(permutation):
                return jax.tree.map(lambda x: x[permutation].reshape((config.num_minibatches, -1) + x.shape[1:]), flat)

        def minibatch_update(carry, minibatch):
            params, opt_state = carry
            (loss, aux), grads = jax.value_and_grad(self.loss, has_aux=True)(
                params, state.obs_stats, minibatch, hparams
            )
            params, opt_state, finite, grad_norm = self.apply_gradients(
                params, opt_state, grads, loss, hparams
            )
            return (params, opt_state), {**aux, "loss": loss, "grad_norm": grad_norm, "finite": finite}

        def epoch(carry, permutation):
            return jax.lax.scan(minibatch_update, carry, split(permutation))

        # A fresh permutation per epoch, all drawn in one batched call (one threefry loop).
        permutations = jax.vmap(jax.random.permutation, in_axes=(0, None))(
            jax.random.split(permutation_key, config.update_epochs), rows
        )
        (params, opt_state), update_metrics = jax.lax.scan(
            epoch, (state.params, state.opt_state), permutations
        )

        finite = update_metrics.pop("finite")
        residual_var = jnp.var(targets - values)
        last_return = jnp.where(finished > 0, ret_sum / jnp.maximum(finished, 1), extra.last_return)
        last_length = jnp.where(finished > 0, len_sum / jnp.maximum(finished, 1), extra.last_length)
        metrics = {
            **jax.tree.map(jnp.mean, update_metrics),
            "episode_return": last_return,
            "episode_length": last_length,
            "episodes_finished": finished,
            "explained_variance": 1.0 - residual_var / (jnp.var(targets) + 1e-8),
            "nonfinite": ~jnp.all(finite),
        }
        obs_stats = state.obs_stats
        if config.normalize_observations:
            obs_stats = self.update_obs_stats(obs_stats, batch.obs)
        extra = extra.replace(
            running_return=running_return, running_length=running_length,
            last_return=last_return, last_length=last_length,
        )
        state = state.replace(
            params=params, opt_state=opt_state, obs_stats=obs_stats, env_state=env_state,
            obs=obs, key=key, extra=extra, carry={"policy": policy_carry, "value": value_carry},
        )
        return state, metrics
