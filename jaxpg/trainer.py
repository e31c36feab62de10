"""What every algorithm shares: the train state, networks, optimiser, guarded update and loop.

An algorithm subclasses `Trainer`, lists its settings (`STATIC_DEFAULTS`, structural and
hashable) and its numeric hyperparameters (`HPARAM_DEFAULTS`, traced leaves that `vmap` can
sweep), and writes `_iteration(state) -> (state, metrics)`: one rollout and one update.
"""

import math
import warnings
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct
from jax.flatten_util import ravel_pytree

from jaxpg import config as cfg
from jaxpg.distributions import DISTRIBUTIONS, make_action_head
from jaxpg.networks import ACTIVATIONS, POLICIES, PolicyNetwork, ValueNetwork
from jaxpg.normalize import RunningStats
from jaxpg.progress import make_reporter
from jaxpg.rollout import rollout


@struct.dataclass
class TrainState:
    """Everything a training run carries from one iteration to the next.

    Attributes:
      params: `{"policy": ..., "value": ...}` network parameters.
      opt_state: optax state for `params`.
      obs_stats: running observation statistics (used when `normalize_observations`).
      env_state, obs: the environments' states and observations, batched over `num_envs`;
        algorithms that reset every iteration keep the last ones here.
      key: the run's PRNG key.
      hparams: the numeric hyperparameters this run uses (dict of float32 scalars).
      iteration: number of completed iterations.
      extra: algorithm-specific arrays (episode accumulators, reward statistics, ...).
    """

    params: Any
    opt_state: Any
    obs_stats: RunningStats
    env_state: Any
    obs: Any
    key: jax.Array
    hparams: dict
    iteration: jax.Array
    extra: dict


COMMON_STATIC = {
    "num_envs": 16,
    "num_steps": 128,
    "total_timesteps": 500_000,
    "hidden_sizes": (64, 64),
    "activation": "tanh",
    "policy": "mlp",
    "distribution": None,
    "init_std": 1.0,
    "normalize_observations": False,
    "progress": True,
}


def tree_where(condition, on_true, on_false):
    return jax.tree.map(lambda a, b: jnp.where(condition, a, b), on_true, on_false)


def masked_mean(x, mask):
    return jnp.sum(x * mask) / jnp.maximum(jnp.sum(mask), 1.0)


class Trainer:
    """Base class; use `jaxpg.make_trainer(algo, env, env_params, **config)`."""

    algo = "base"
    STATIC_DEFAULTS: dict = {}
    HPARAM_DEFAULTS: dict = {}
    # Algorithms with a KL term keep the initial policy, frozen, as `extra["reference"]`.
    KEEPS_REFERENCE = False

    def __init__(self, env, env_params, policy_params=None, **config):
        """`policy_params` (optional): initial policy parameters, e.g. an SFT policy from
        `jaxpg.rlhf.behaviour_cloning`; for algorithms with a KL term they are also the frozen
        reference. They must fit this trainer's policy network."""
        static, hparams = cfg.split_config(self.algo, config, self.STATIC_DEFAULTS, self.HPARAM_DEFAULTS)
        for name, value in hparams.items():
            cfg.check_hparam(name, value)
        for name in ("num_envs", "num_steps", "total_timesteps"):
            cfg.check_positive_int(name, static[name])
        static["hidden_sizes"] = cfg.check_hidden_sizes(static["hidden_sizes"])
        cfg.check_choice("activation", static["activation"], ACTIVATIONS)
        cfg.check_choice("policy", static["policy"], POLICIES)
        if static["distribution"] is not None:
            cfg.check_choice("distribution", static["distribution"], DISTRIBUTIONS)
        self.env, self.env_params = env, env_params
        self.head = make_action_head(env.action_space(env_params), static["distribution"], static["init_std"])
        if static["policy"] == "linear" and self.head.kind == "categorical":
            raise ValueError(
                "policy='linear' is the linear-Gaussian policy and needs continuous actions; "
                "accepted for Discrete actions: policy='mlp'"
            )
        self._check_static(static)
        self.config = static
        self.hparams = {k: jnp.asarray(v, jnp.float32) for k, v in hparams.items()}
        obs_shape = jax.eval_shape(env.reset, jax.random.key(0), env_params)[0].shape
        self.obs_shape = tuple(obs_shape)
        self.policy_net = PolicyNetwork(
            num_outputs=self.head.num_outputs,
            hidden_sizes=static["hidden_sizes"],
            activation=static["activation"],
            policy=static["policy"],
            learns_log_std=self.head.learns_log_std,
            init_log_std=math.log(static["init_std"]),
            obs_ndim=len(obs_shape),
        )
        self.value_net = ValueNetwork(static["hidden_sizes"], static["activation"], len(obs_shape))
        if policy_params is not None:
            expected = jax.eval_shape(self.policy_net.init, jax.random.key(0), jnp.zeros(self.obs_shape))
            shapes = lambda tree: jax.tree.map(lambda x: tuple(x.shape), tree)
            if jax.tree.structure(policy_params) != jax.tree.structure(expected) or shapes(policy_params) != shapes(expected):
                raise ValueError(
                    f"policy_params do not fit this trainer's policy network; accepted: parameters "
                    f"shaped {shapes(expected)}"
                )
        self._initial_policy_params = policy_params
        self._reporter = make_reporter(self.num_iterations, self.steps_per_iteration, self.algo)
        self._init_jit = jax.jit(self._init)
        self._step_jit = jax.jit(self._step)
        self._train_jit = jax.jit(self._train)

    def _check_static(self, static: dict) -> None:
        """Algorithm-specific checks of static settings; raise `ValueError` naming the field."""

    @property
    def steps_per_iteration(self) -> int:
        return self.config["num_envs"] * self.config["num_steps"]

    @property
    def num_iterations(self) -> int:
        return max(1, self.config["total_timesteps"] // self.steps_per_iteration)

    def optimizer(self, hparams) -> optax.GradientTransformation:
        """Global-norm clipping then Adam; built from (possibly traced) `hparams` each update.

        The optimiser state's structure does not depend on the values, so the same state
        serves any learning rate, and a vmapped sweep gives each run its own.
        """
        return optax.chain(
            optax.clip_by_global_norm(hparams["max_grad_norm"]),
            optax.adam(self.learning_rate(hparams), eps=1e-5),
        )

    def learning_rate(self, hparams):
        """A float or an optax schedule of the update count."""
        return hparams["lr"]

    def resolve_hparams(self, hparams=None) -> dict:
        """Merges user hyperparameters over the defaults, checking names and concrete values."""
        if hparams is None:
            return dict(self.hparams)
        cfg.check_hparams_keys(self.algo, hparams, self.hparams)
        for name, value in hparams.items():
            cfg.check_hparam(name, value)
        return {**self.hparams, **{k: jnp.asarray(v, jnp.float32) for k, v in hparams.items()}}

    def policy_outputs(self, params, obs_stats, obs):
        if self.config["normalize_observations"]:
            obs = obs_stats.normalize(obs)
        return self.policy_net.apply(params["policy"], obs)

    def value(self, params, obs_stats, obs):
        if self.config["normalize_observations"]:
            obs = obs_stats.normalize(obs)
        return self.value_net.apply(params["value"], obs)

    def rollout_policy(self, params, obs_stats):
        """The `jaxpg.rollout.Policy` that samples from the current parameters."""

        def policy(obs, key):
            outputs, log_std = self.policy_outputs(params, obs_stats, obs)
            raw, log_prob = self.head.sample(outputs, log_std, key)
            return raw, self.head.to_env(raw), log_prob

        return policy

    def collect(self, params, obs_stats, env_state, obs, key, num_steps, group_size=1):
        """`jaxpg.rollout` of the current policy: `((env_state, obs), Transition (T, N, ...))`."""
        return rollout(
            self.env, self.env_params, self.rollout_policy(params, obs_stats), env_state, obs,
            key, num_steps, group_size,
        )

    def reset_envs(self, key, num_envs):
        keys = jax.random.split(key, num_envs)
        return jax.vmap(self.env.reset, in_axes=(0, None))(keys, self.env_params)

    def _init_extra(self, key, params, hparams) -> dict:
        return {}

    def _init(self, key, hparams):
        key, policy_key, value_key, env_key, extra_key = jax.random.split(key, 5)
        obs, env_state = self.reset_envs(env_key, self.config["num_envs"])
        params = {
            "policy": self.policy_net.init(policy_key, obs),
            "value": self.value_net.init(value_key, obs),
        }
        if self._initial_policy_params is not None:
            params = {**params, "policy": self._initial_policy_params}
        extra = self._init_extra(extra_key, params, hparams)
        if self.KEEPS_REFERENCE:
            extra = {**extra, "reference": params["policy"]}
        return TrainState(
            params=params,
            opt_state=self.init_opt_state(params, hparams),
            obs_stats=RunningStats.create(self.obs_shape),
            env_state=env_state,
            obs=obs,
            key=key,
            hparams=hparams,
            iteration=jnp.zeros((), jnp.int32),
            extra=extra,
        )

    def init(self, key, hparams=None) -> TrainState:
        """A fresh `TrainState` for PRNG key `key` and (merged) hyperparameters."""
        return self._init_jit(key, self.resolve_hparams(hparams))

    def init_opt_state(self, params, hparams):
        """The optimiser state for `params`; it lives on their flattened vector."""
        return self.optimizer(hparams).init(ravel_pytree(params)[0])

    def apply_gradients(self, state_params, opt_state, grads, loss, hparams):
        """One optimiser step that refuses to make anything non-finite.

        If the loss or a gradient is NaN or infinite, the parameters and
        optimiser state are kept as they were and `finite` is False, so nothing learned so far
        is lost and the metrics say at which update it happened.

        Clipping, Adam and that guard run on the parameters flattened into one vector: for the
        small networks of RL, one kernel per parameter leaf (times Adam's moments, times the
        guard's selects) costs more on a CPU than the arithmetic itself.

        Returns:
          `(params, opt_state, finite, grad_norm)`.
        """
        flat_params, unravel = ravel_pytree(state_params)
        flat_grads, _ = ravel_pytree(grads)
        updates, new_opt_state = self.optimizer(hparams).update(flat_grads, opt_state, flat_params)
        # The global norm is finite iff every gradient is; checking it and the loss costs one
        # scalar test instead of a reduction over every parameter (the norm is shared with
        # the clipping transform after common-subexpression elimination).
        grad_norm = optax.tree.norm(flat_grads)
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
        params = unravel(jnp.where(finite, flat_params + updates, flat_params))
        opt_state = tree_where(finite, new_opt_state, opt_state)
        return params, opt_state, finite, grad_norm

    def _iteration(self, state: TrainState):
        raise NotImplementedError

    def _step(self, state):
        state, metrics = self._iteration(state)
        metrics["env_steps"] = (state.iteration + 1) * self.steps_per_iteration
        return state.replace(iteration=state.iteration + 1), metrics

    def step(self, state: TrainState):
        """One iteration (rollout and update). Pure and jitted: `(state, metrics)`."""
        return self._step_jit(state)

    def _train(self, key, hparams):
        state = self._init(key, hparams)

        def body(state, iteration):
            state, metrics = self._step(state)
            if self.config["progress"]:
                ack = self._reporter(iteration, metrics["episode_return"])
                state = state.replace(iteration=state.iteration + ack)
            return state, metrics

        return jax.lax.scan(body, state, jnp.arange(self.num_iterations))

    def train(self, key, hparams=None):
        """The whole run as one compiled `lax.scan` over `num_iterations` iterations.

        Args:
          key: PRNG key; `jax.vmap(trainer.train)(keys)` trains one run per key.
          hparams: optional dict overriding some of `trainer.hparams`; its leaves may be
            batched under `jax.vmap` to sweep them.

        Returns:
          `(state, metrics)`: the final `TrainState` and a dict of arrays with a leading
          iteration axis.
        """
        state, metrics = self._train_jit(key, self.resolve_hparams(hparams))
        if not isinstance(metrics["nonfinite"], jax.core.Tracer):
            warn_nonfinite(metrics["nonfinite"])
        return state, metrics

    def act(self, state: TrainState, obs, key=None, deterministic: bool = False):
        """Env actions for `obs` (one observation or a batch) under `state`'s policy."""
        outputs, log_std = self.policy_outputs(state.params, state.obs_stats, obs)
        if deterministic:
            raw = self.head.mode(outputs, log_std)
        else:
            if key is None:
                raise ValueError("act: a PRNG key is needed unless deterministic=True")
            raw, _ = self.head.sample(outputs, log_std, key)
        return self.head.to_env(raw)


def warn_nonfinite(nonfinite) -> None:
    """Warns, naming the updates, when any update was skipped for a NaN or infinity."""
    flags = np.asarray(nonfinite)
    if flags.any():
        where = np.argwhere(flags)
        first = where[0].tolist()
        warnings.warn(
            f"non-finite loss, gradient or parameter at {len(where)} update(s); the first at "
            f"index {first} of the metrics (run axes first, then the iteration). Those updates "
            "were skipped: parameters and "
            "metrics from every finite update are kept.",
            RuntimeWarning,
            stacklevel=3,
        )


def episode_statistics(rewards, dones, running_return, running_length):
    """Returns and lengths of the episodes that finish inside a rollout.

    Computed with prefix sums and a running maximum over time rather than a sequential scan:
    an episode ending at step t earned cumsum(r)[t] minus the cumsum at the previous episode
    end (or plus the partial return carried in from the last rollout). Non-finite rewards are
    counted as 0 here, so one bad reward cannot poison every later statistic (the update that
    sees it is still flagged `nonfinite`).

    Args:
      rewards, dones: `(T, N)`.
      running_return, running_length: `(N,)` partial episode sums carried from the previous
        rollout.

    Returns:
      `(running_return, running_length, finished_return_sum, finished_length_sum,
      num_finished)`.
    """
    steps = jnp.arange(rewards.shape[0])[:, None]
    ended = dones > 0
    last_end = jax.lax.cummax(jnp.where(ended, steps, -1), axis=0)
    previous_end = jnp.concatenate([jnp.full_like(last_end[:1], -1), last_end[:-1]])

    def since_previous_end(increments, carried):
        total = jnp.cumsum(increments, axis=0)
        at = lambda index: jnp.take_along_axis(total, jnp.maximum(index, 0), axis=0)
        base = jnp.where(previous_end >= 0, at(previous_end), -carried)
        final_base = jnp.where(last_end[-1] >= 0, at(last_end[-1:])[0], -carried)
        return total - base, total[-1] - final_base

    clean = jnp.where(jnp.isfinite(rewards), rewards, 0.0)
    returns, running_return = since_previous_end(clean, running_return)
    lengths, running_length = since_previous_end(jnp.ones_like(clean), running_length)
    return (
        running_return, running_length,
        jnp.sum(jnp.where(ended, returns, 0.0)), jnp.sum(jnp.where(ended, lengths, 0.0)),
        jnp.sum(ended.astype(jnp.float32)),
    )
