"""PPO (Schulman et al. 2017) with GAE, clipped surrogate and value losses.

One iteration: roll `num_envs` environments for `num_steps` steps from where the last rollout
stopped, compute GAE (bootstrapping from V(final observation) on truncation, from 0 on
termination), then `update_epochs` passes over the batch, each in `num_minibatches` minibatches
drawn from a fresh permutation.
"""

import jax
import jax.numpy as jnp
import optax

from jaxpg.advantages import gae
from jaxpg.config import check_positive_int
from jaxpg.normalize import RunningStats
from jaxpg.trainer import COMMON_STATIC, Trainer, episode_statistics


class PPO(Trainer):
    """Proximal policy optimisation. Names follow PureJaxRL so its configs carry over.

    Settings (static), defaults are PureJaxRL's CartPole ones: `num_envs` 4, `num_steps` 128,
    `total_timesteps` 500,000, `update_epochs` 4, `num_minibatches` 4, `anneal_lr` True (linear
    to 0 over all updates, an optax schedule), `clip_value_loss` True, `normalize_advantages`
    True (per minibatch), `normalize_observations` False, `normalize_rewards` False (divide
    rewards by the running std of the discounted return, as SB3's VecNormalize), `hidden_sizes`
    (64, 64), `activation` tanh, `distribution`, `policy`, `init_std`.

    Hyperparameters (traced): `lr` 2.5e-4, `gamma` 0.99, `gae_lambda` 0.95, `clip_eps` 0.2,
    `ent_coef` 0.01, `vf_coef` 0.5, `max_grad_norm` 0.5.
    """

    algo = "ppo"
    STATIC_DEFAULTS = {
        **COMMON_STATIC,
        "num_envs": 4,
        "num_steps": 128,
        "total_timesteps": 500_000,
        "update_epochs": 4,
        "num_minibatches": 4,
        "anneal_lr": True,
        "clip_value_loss": True,
        "normalize_advantages": True,
        "normalize_rewards": False,
    }
    HPARAM_DEFAULTS = {
        "lr": 2.5e-4, "gamma": 0.99, "gae_lambda": 0.95, "clip_eps": 0.2,
        "ent_coef": 0.01, "vf_coef": 0.5, "max_grad_norm": 0.5,
    }

    def _check_static(self, static):
        check_positive_int("update_epochs", static["update_epochs"])
        check_positive_int("num_minibatches", static["num_minibatches"])
        batch = static["num_envs"] * static["num_steps"]
        if batch % static["num_minibatches"]:
            raise ValueError(
                f"num_minibatches={static['num_minibatches']} must divide the batch "
                f"num_envs * num_steps = {batch}"
            )

    @property
    def num_updates(self) -> int:
        return self.num_iterations * self.config["update_epochs"] * self.config["num_minibatches"]

    def learning_rate(self, hparams):
        if self.config["anneal_lr"]:
            return optax.linear_schedule(hparams["lr"], 0.0, self.num_updates)
        return hparams["lr"]

    def _init_extra(self, key, params, hparams):
        zeros = jnp.zeros((self.config["num_envs"],))
        return {
            "running_return": zeros, "running_length": zeros,
            # NaN until the first episode finishes: no return has been observed yet.
            "last_return": jnp.full((), jnp.nan), "last_length": jnp.full((), jnp.nan),
            "discounted_return": zeros, "return_stats": RunningStats.create(),
        }

    def loss(self, params, obs_stats, minibatch, hparams):
        """Clipped-surrogate PPO loss on a flat minibatch; returns `(loss, aux metrics)`."""
        batch, old_value, advantages, targets = minibatch
        outputs, log_std = self.policy_outputs(params, obs_stats, batch.obs)
        log_prob = self.head.log_prob(outputs, log_std, batch.action)
        entropy = self.head.entropy(outputs, log_std).mean()
        value = self.value(params, obs_stats, batch.obs)
        clip_eps = hparams["clip_eps"]

        log_ratio = log_prob - batch.log_prob
        ratio = jnp.exp(log_ratio)
        if self.config["normalize_advantages"]:
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        surrogate = jnp.minimum(ratio * advantages, jnp.clip(ratio, 1 - clip_eps, 1 + clip_eps) * advantages)
        policy_loss = -surrogate.mean()

        value_error = (value - targets) ** 2
        if self.config["clip_value_loss"]:
            clipped = old_value + jnp.clip(value - old_value, -clip_eps, clip_eps)
            value_error = jnp.maximum(value_error, (clipped - targets) ** 2)
        value_loss = 0.5 * value_error.mean()

        loss = policy_loss + hparams["vf_coef"] * value_loss - hparams["ent_coef"] * entropy
        return loss, {
            "policy_loss": policy_loss,
            "value_loss": value_loss,
            "entropy": entropy,
            "approx_kl": jnp.mean(jnp.expm1(log_ratio) - log_ratio),
            "clip_fraction": jnp.mean(jnp.abs(ratio - 1.0) > clip_eps),
        }

    def _scale_rewards(self, rewards, dones, extra, gamma):
        """SB3-style reward scaling by the running std of each env's discounted return."""
        if not self.config["normalize_rewards"]:
            return rewards, extra

        def forward(discounted, step):
            reward, done = step
            discounted = discounted * gamma + reward
            return discounted * (1.0 - done), discounted

        carried, discounted = jax.lax.scan(forward, extra["discounted_return"], (rewards, dones))
        stats = extra["return_stats"].update(discounted)
        scaled = rewards / jnp.sqrt(stats.var + 1e-8)
        return scaled, {**extra, "discounted_return": carried, "return_stats": stats}

    def _iteration(self, state):
        hparams, config, extra = state.hparams, self.config, state.extra
        key, rollout_key, permutation_key = jax.random.split(state.key, 3)
        (env_state, obs), batch = self.collect(
            state.params, state.obs_stats, state.env_state, state.obs, rollout_key, config["num_steps"]
        )
        dones = (batch.terminated | batch.truncated).astype(jnp.float32)
        running_return, running_length, ret_sum, len_sum, finished = episode_statistics(
            batch.reward, dones, extra["running_return"], extra["running_length"]
        )
        rewards, extra = self._scale_rewards(batch.reward, dones, extra, hparams["gamma"])
        # The critic is not needed to act, so V(s_t) and V(final observation) are computed
        # here, for the whole rollout in one batched call, rather than step by step.
        values, next_values = self.value(
            state.params, state.obs_stats, jnp.stack([batch.obs, batch.final_obs])
        )
        advantages, targets = gae(
            rewards, values, next_values, batch.terminated, batch.truncated,
            hparams["gamma"], hparams["gae_lambda"],
        )

        batch_size = self.steps_per_iteration
        flat = jax.tree.map(
            lambda x: x.reshape((batch_size,) + x.shape[2:]), (batch, values, advantages, targets)
        )

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
            minibatches = jax.tree.map(
                lambda x: x[permutation].reshape((config["num_minibatches"], -1) + x.shape[1:]), flat
            )
            return jax.lax.scan(minibatch_update, carry, minibatches)

        # A fresh permutation per epoch, all drawn in one batched call (one threefry loop).
        permutations = jax.vmap(jax.random.permutation, in_axes=(0, None))(
            jax.random.split(permutation_key, config["update_epochs"]), batch_size
        )
        (params, opt_state), update_metrics = jax.lax.scan(
            epoch, (state.params, state.opt_state), permutations
        )

        finite = update_metrics.pop("finite")
        schedule = self.learning_rate(hparams)
        count = state.iteration * config["update_epochs"] * config["num_minibatches"]
        lr = schedule(count) if callable(schedule) else schedule
        residual_var = jnp.var(targets - values)
        last_return = jnp.where(finished > 0, ret_sum / jnp.maximum(finished, 1), extra["last_return"])
        last_length = jnp.where(finished > 0, len_sum / jnp.maximum(finished, 1), extra["last_length"])
        metrics = {
            **jax.tree.map(jnp.mean, update_metrics),
            "episode_return": last_return,
            "episode_length": last_length,
            "episodes_finished": finished,
            "explained_variance": 1.0 - residual_var / (jnp.var(targets) + 1e-8),
            "learning_rate": jnp.asarray(lr, jnp.float32),
            "nonfinite": ~jnp.all(finite),
        }
        obs_stats = state.obs_stats
        if config["normalize_observations"]:
            obs_stats = obs_stats.update(batch.obs)
        extra = {
            **extra, "running_return": running_return, "running_length": running_length,
            "last_return": last_return, "last_length": last_length,
        }
        state = state.replace(
            params=params, opt_state=opt_state, obs_stats=obs_stats, env_state=env_state,
            obs=obs, key=key, extra=extra,
        )
        return state, metrics
