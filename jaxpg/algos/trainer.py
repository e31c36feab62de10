"""What every algorithm shares: the train state, networks, optimiser, guarded update and loop.

An algorithm subclasses `Trainer`, declares its options in a `jaxpg.config.Config` subclass
(structural settings static, numeric hyperparameters traced leaves that `vmap` can sweep), and
writes `_iteration(state, env_params) -> (state, metrics)`: one rollout and one update.
"""

import functools
import math
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from envs.autoreset import declared
from envs.wrappers import TimeLimit
from jaxpg.algos.config import Config
from jaxpg.core import compile_options, observations, threefry_cpu
from jaxpg.core.distributions import make_action_head
from jaxpg.core.networks import PolicyNetwork, ValueNetwork, image_leaves
from jaxpg.core.normalize import normalize_observation, observation_stats, update_observation_stats
from jaxpg.core.recurrent import CELLS, Readout, RecurrentNetwork, is_recurrent, joint_parts, parts, read_sequence
from jaxpg.core.rollout import rollout
from jaxpg.core.transformer import from_env


@struct.dataclass
class TrainState:
    """Everything a training run carries from one iteration to the next.

    Attributes:
      params: `{"policy": ..., "value": ...}` network parameters.
      opt_state: optax state for `params` (on their flattened vector).
      obs_stats: running observation statistics (used when `normalize_observations`): a
        `RunningStats`, or one per leaf of a pytree observation.
      env_state, obs: the environments' states and observations, batched over `num_envs`;
        algorithms that reset every iteration keep the last ones here.
      key: the run's PRNG key.
      hparams: the numeric hyperparameters this run uses (dict of float32 scalars).
      iteration: number of completed iterations.
      extra: the algorithm's own state, a `flax.struct` dataclass per algorithm
        (`PPOExtra`, `ReinforceExtra`, `GRPOExtra`).
      carry: `{"policy": ..., "value": ...}`, each recurrent network's hidden state for the
        environments' current observations (batched over `num_envs`; reset to the initial carry
        at every episode boundary); `()` for a feed-forward network, and for the value network
        of PPO's `shared_core`, which reads the policy's.
    """

    params: Any
    opt_state: Any
    obs_stats: Any
    env_state: Any
    obs: Any
    key: jax.Array
    hparams: dict
    iteration: jax.Array
    extra: Any
    carry: Any


@struct.dataclass
class NoExtra:
    """The `extra` of an algorithm that carries nothing of its own."""


def tree_where(condition, on_true, on_false):
    return jax.tree.map(lambda a, b: jnp.where(condition, a, b), on_true, on_false)


def make_schedule(name: str, start, end, num_updates: int):
    """The learning rate as a function of the update count (or a constant), from optax.

    `start` and `end` may be traced (sweeps vmap them). Exponential decay is the linear schedule
    in log space: optax's `exponential_decay` branches in Python on its rate, which a traced
    value cannot do.
    """
    if name == "constant":
        return start
    if name == "linear":
        return optax.linear_schedule(start, end, num_updates)
    if name == "cosine":
        return optax.cosine_decay_schedule(start, num_updates, alpha=end / start)
    log_rate = optax.linear_schedule(jnp.log(start), jnp.log(end), num_updates)
    return lambda count: jnp.exp(log_rate(count))


class Trainer:
    """Base class; use `jaxpg.make_trainer(algo, env, env_params, **options)`.

    An algorithm subclasses it with its `Config` (every option declared once) and writes
    `_iteration(state, env_params) -> (state, metrics)`: one rollout and one update.
    """

    # REINFORCE and GRPO mask every step after an environment's first episode ends.
    first_episodes_only: bool = False

    algo = "base"
    Config = Config
    # The fields of `TrainState.extra` that belong with the learned state (statistics the
    # parameters were trained against, a reference policy), as opposed to the environments'
    # episode counters: `jaxpg.pbt` copies them with the parameters when a member exploits another.
    inherited_extra: tuple = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        # The options are documented from their declaration, never by hand.
        cls.__doc__ = (cls.__doc__ or "") + "\n" + cls.Config.docstring()

    def __init__(self, env, env_params, policy_params=None, policy_network=None, value_network=None,
                 **options):
        """Builds the trainer; `options` are the algorithm's `Config` fields.

        Args:
          env, env_params: a gymnax environment and its parameters.
          policy_params: optional initial policy parameters, e.g. an SFT policy from
            `jaxpg.algos.sft.fit_demonstrations` or `jaxpg.rlhf.behaviour_cloning`; for algorithms with
            a KL term they are also the frozen reference. They must fit the policy network.
          policy_network: optional flax module replacing the one `policy` picks. Called as
            `module.apply(params, obs) -> (outputs, log_std)` with `obs` of shape
            `(..., *obs_shape)` (any leading batch axes, the env's dtype; a pytree observation
            comes as that pytree, each leaf with the same leading axes) and
            `outputs (..., num_outputs)`: logits for a categorical head (num_outputs = the
            number of actions), means for a Gaussian one; `log_std` a zero `()` scalar unless the
            head learns it (`distribution="gaussian"`: a `(num_outputs,)` parameter). It is
            initialised as `module.init(key, obs)` on a `(num_envs, *obs_shape)` batch. An
            observation's `action_mask` leaf masks its logits after it (`jaxpg.core.observations`).
          value_network: optional flax module replacing the value network, called as
            `module.apply(params, obs (..., *obs_shape)) -> values (...)`.

        Either network may be recurrent (`jaxpg.core.recurrent`): a module with
        `initial_carry(batch_shape) -> carry` (called unbound) and
        `module.apply(params, carry, obs) -> (carry, outputs)` for one step, `outputs` what the
        feed-forward network would return; it is initialised as `module.init(key, carry, obs)`.
        The trainer keeps its carry in `TrainState.carry` and resets it at episode boundaries.
        """
        config = self.resolve_config(self.Config.from_options(options), env_params)
        self.env, self.env_params = env, env_params
        # Training rollouts see the cut; `env` itself (evaluation, references) does not. None
        # leaves the environment unwrapped, so runs without the option are unchanged bit for bit.
        self.train_env = env if config.max_episode_steps is None else TimeLimit(env, config.max_episode_steps)
        self.resets_per_step = getattr(config, "resets_per_step", None)
        self._check_resets_per_step(config)
        # An algorithm that keeps only each environment's first episode never uses what a reset
        # brings: for an environment whose reset is costly (Craftax builds a world) one per step
        # serves the batch, as in evaluation (`envs.episodes`).
        if self.first_episodes_only and declared(self.train_env, "costly_reset", False):
            self.resets_per_step = 1
        self.head = make_action_head(env.action_space(env_params), config.distribution, config.init_std)
        if config.policy == "linear" and self.head.kind == "categorical":
            raise ValueError(
                "policy='linear' is the linear-Gaussian policy and needs continuous actions; "
                "accepted for Discrete actions: policy='mlp'"
            )
        self.config = config
        self.hparams = {k: jnp.asarray(v, jnp.float32) for k, v in config.hparam_values().items()}
        obs_spec = jax.eval_shape(env.reset, jax.random.key(0), env_params)[0]
        # One observation's pytree of shapes and dtypes; `obs_shape` is its shape where it is one
        # array (None for a pytree observation).
        self.obs_spec = obs_spec
        self.obs_shape = tuple(obs_spec.shape) if isinstance(obs_spec, jax.ShapeDtypeStruct) else None
        self._check_action_mask(obs_spec)
        self.policy_net, self.value_net = self._default_networks(config, env, env_params, obs_spec)
        if policy_network is not None:
            self.policy_net = policy_network
        # PPO's `shared_core`: the value head reads the policy's torso and cell, and keeps no carry
        # of its own (the policy's is the value's).
        self.shared_core = bool(getattr(config, "shared_core", False))
        if self.shared_core and (policy_network is not None or value_network is not None):
            raise ValueError("shared_core=True shares the built-in recurrent policy's cell; accepted with it: "
                             "policy_network=None and value_network=None")
        if value_network is not None:
            self.value_net = value_network
        if policy_network is not None or value_network is not None:
            self._check_networks(obs_spec, policy_network is not None, value_network is not None)
        if policy_params is not None:
            init = lambda key, obs: self._init_network(self.policy_net, key, obs)
            expected = jax.eval_shape(init, jax.random.key(0), obs_spec)
            shapes = lambda tree: jax.tree.map(lambda x: tuple(x.shape), tree)
            same_tree = jax.tree.structure(policy_params) == jax.tree.structure(expected)
            if not same_tree or shapes(policy_params) != shapes(expected):
                raise ValueError(
                    f"policy_params do not fit this trainer's policy network; accepted: parameters "
                    f"shaped {shapes(expected)}"
                )
        self._initial_policy_params = policy_params
        # A recurrent policy is what makes a trainer recurrent: `act` then takes and returns the
        # carry, and PPO's minibatches split over environments rather than steps.
        self.recurrent = is_recurrent(self.policy_net)
        # Either network recurrent: updates re-read whole sequences (`rollout_outputs`,
        # `rollout_values`) from the carries stored at the rollout's start.
        self.sequential = self.recurrent or is_recurrent(self.value_net)
        threefry_cpu.install()  # every random call site one kernel on a CPU, not a loop (compile time)
        self._init_jit = jax.jit(self._init)
        # Called on its own, initialisation compiles for compile speed (`compile_options`);
        # inside a user's traced program it is part of that program and compiles with it.
        self._init_alone = jax.jit(self._init, compiler_options=compile_options.run_once())
        self._step_jit = jax.jit(self._step)
        self._iterate_jit = jax.jit(self._iterate, static_argnums=2)
        self._train_jit = jax.jit(self._train)

    def _check_resets_per_step(self, config):
        """PPO's `resets_per_step` needs the batch step of `envs.autoreset.AutoResetEnv`."""
        resets = self.resets_per_step
        if resets is None:
            return
        if resets > config.num_envs:
            raise ValueError(f"resets_per_step={resets} must be at most num_envs={config.num_envs}; accepted: "
                             f"1 to {config.num_envs}, or None")
        if not callable(declared(self.train_env, "step_batch")):
            made_by = ("the trainer's TimeLimit (max_episode_steps) has none" if config.max_episode_steps is not None
                       else f"{type(self.env).__name__} has none")
            raise ValueError(
                f"resets_per_step={resets} needs an environment with envs.autoreset.AutoResetEnv's step_batch "
                f"(envs' own and every SUITE:ID adapter), and {made_by}; accepted here: resets_per_step=None"
            )

    def _check_action_mask(self, obs_spec):
        """An `action_mask` leaf must be a categorical head's: one entry per action."""
        mask = observations.action_mask(obs_spec)
        if mask is None:
            return
        if self.head.kind != "categorical" or tuple(mask.shape) != (self.head.action_dim,):
            raise ValueError(
                f"the observation's {observations.MASK_FIELD} has shape {tuple(mask.shape)}; accepted: one entry "
                f"per action of a Discrete action space ({self.head.action_dim},), this environment's being "
                f"{self.head.kind} with {self.head.action_dim} dimension(s)"
            )

    def _default_networks(self, config, env, env_params, obs_spec):
        """`(policy_net, value_net)` that `config.policy` names."""
        if config.policy == "transformer":
            tokens = (self.obs_shape is not None and len(self.obs_shape) == 1
                      and jnp.issubdtype(obs_spec.dtype, jnp.integer))
            if self.head.kind != "categorical" or not tokens:
                raise ValueError(
                    "policy='transformer' reads a token buffer (1-D integer observations, as "
                    "envs.tokens gives) and writes Discrete actions; accepted for this environment: "
                    "policy='mlp'"
                )
            if config.normalize_observations:
                raise ValueError(
                    "policy='transformer' reads token ids, which normalize_observations would "
                    "rescale; accepted: normalize_observations=False"
                )
            return from_env(
                env, env_params, embed_dim=config.transformer_dim, num_layers=config.transformer_layers,
                num_heads=config.transformer_heads,
            )
        obs_ndims = observations.feature_ndims(obs_spec)
        conv = {}
        if config.policy == "cnn":
            if not image_leaves(obs_ndims):
                shapes = [tuple(leaf.shape) for leaf in jax.tree.leaves(obs_spec)]
                raise ValueError(
                    f"policy='cnn' convolves image-like observation leaves (height, width, channels); this "
                    f"environment's observation has leaves shaped {shapes}; accepted for it: policy='mlp'"
                )
            conv = {"conv_channels": config.cnn_channels, "conv_kernel": config.cnn_kernel,
                    "conv_stride": config.cnn_stride}
        if config.policy in CELLS:
            recurrent = {"cell": config.policy, "hidden_size": config.rnn_hidden_size,
                         "torso_sizes": config.hidden_sizes, "head_sizes": config.rnn_head_sizes,
                         "activation": config.activation, "obs_ndims": obs_ndims}
            policy_net = RecurrentNetwork(
                self.head.num_outputs, learns_log_std=self.head.learns_log_std,
                init_log_std=math.log(config.init_std), **recurrent,
            )
            if getattr(config, "shared_core", False):
                # Only the value's readout is its own: it reads the policy's cell (`_parts`).
                return policy_net, Readout(None, config.rnn_head_sizes, config.activation)
            return policy_net, RecurrentNetwork(**recurrent)
        policy_net = PolicyNetwork(
            num_outputs=self.head.num_outputs,
            hidden_sizes=config.hidden_sizes,
            activation=config.activation,
            policy=config.policy,
            learns_log_std=self.head.learns_log_std,
            init_log_std=math.log(config.init_std),
            obs_ndims=obs_ndims,
            **conv,
        )
        value_net = ValueNetwork(config.hidden_sizes, config.activation, obs_ndims, **conv)
        return policy_net, value_net

    def _check_networks(self, obs_spec, check_policy: bool, check_value: bool):
        """Raises `ValueError` when a user's network does not answer with the documented shapes
        (traced with `jax.eval_shape`, so nothing runs)."""
        obs = jax.tree.map(lambda leaf: jax.ShapeDtypeStruct((2,) + tuple(leaf.shape), leaf.dtype), obs_spec)
        key = jax.random.key(0)
        shapes = lambda tree: jax.tree.map(lambda x: tuple(x.shape), tree)
        if check_policy:
            params = jax.eval_shape(lambda k, o: self._init_network(self.policy_net, k, o), key, obs)
            out = jax.eval_shape(lambda p, o: self._first_step(self.policy_net, p, o), params, obs)
            want = (2, self.head.num_outputs)
            log_std_ok = (
                isinstance(out, tuple) and len(out) == 2
                and tuple(out[1].shape) in ((), (self.head.num_outputs,))
            )
            if not log_std_ok or tuple(out[0].shape) != want:
                raise ValueError(
                    f"policy_network answers a batch of 2 observations with shapes {shapes(out)}; "
                    f"accepted: (outputs {want}, log_std () or ({self.head.num_outputs},))"
                )
        if check_value:
            params = jax.eval_shape(lambda k, o: self._init_network(self.value_net, k, o), key, obs)
            out = jax.eval_shape(lambda p, o: self._first_step(self.value_net, p, o), params, obs)
            if not hasattr(out, "shape") or tuple(out.shape) != (2,):
                raise ValueError(
                    f"value_network answers a batch of 2 observations with shapes {shapes(out)}; accepted: (2,)"
                )

    def resolve_config(self, config: Config, env_params) -> Config:
        """Fills the options that default to something of the environment's (episode limits)."""
        return config

    @property
    def steps_per_iteration(self) -> int:
        return self.config.steps_per_iteration

    @property
    def total_iterations(self) -> int:
        """Iterations of the whole run: `total_timesteps // steps_per_iteration`, at least 1."""
        return self.config.total_iterations

    @property
    def total_updates(self) -> int:
        """Optimiser steps of the whole run: what the learning-rate schedule spans."""
        return self.total_iterations * self.config.updates_per_iteration

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
        """`lr_schedule` from `lr` to `lr_end` over `total_updates`: a float or an optax schedule."""
        return make_schedule(self.config.lr_schedule, hparams["lr"], hparams["lr_end"], self.total_updates)

    def resolve_hparams(self, hparams=None) -> dict:
        """Merges user hyperparameters over the defaults, checking names and concrete values."""
        if hparams is None:
            return dict(self.hparams)
        self.config.check_hparams(hparams)
        return {**self.hparams, **{k: jnp.asarray(v, jnp.float32) for k, v in hparams.items()}}

    def initial_obs_stats(self):
        """Observation statistics before any update: those a fresh `TrainState` starts with."""
        return observation_stats(self.obs_spec)

    def update_obs_stats(self, obs_stats, batch_obs):
        """`obs_stats` merged with a batch of observations (any leading axes)."""
        return update_observation_stats(obs_stats, batch_obs)

    def _batch_shape(self, obs) -> tuple:
        """The leading (batch) axes of `obs`, a pytree of observations like `obs_spec`'s."""
        leaf, spec = jax.tree.leaves(obs)[0], jax.tree.leaves(self.obs_spec)[0]
        return tuple(leaf.shape[: leaf.ndim - len(spec.shape)])

    def _carry_of(self, network, obs):
        """A recurrent network's initial carry for a batch of observations; `()` for a feed-forward one."""
        return network.initial_carry(self._batch_shape(obs)) if is_recurrent(network) else ()

    def _init_network(self, network, key, obs):
        if network is self.value_net and self.shared_core:  # the readout reads the cell's output
            return network.init(key, jnp.zeros(self._batch_shape(obs) + (self.config.rnn_hidden_size,)))
        if is_recurrent(network):
            return network.init(key, self._carry_of(network, obs), obs)
        return network.init(key, obs)

    @staticmethod
    def _apply_network(network, params, obs, carry):
        """One step of either kind of network: `(carry, outputs)`; a feed-forward one passes
        `carry` through."""
        if is_recurrent(network):
            return network.apply(params, carry, obs)
        return carry, network.apply(params, obs)

    def _first_step(self, network, params, obs):
        """A network's outputs on `obs` read as an episode's first step."""
        return self._apply_network(network, params, obs, self._carry_of(network, obs))[1]

    def initial_carry(self, batch_shape) -> dict:
        """`{"policy": ..., "value": ...}`: the carries episodes start from, for observations with
        leading axes `batch_shape` (an int is one axis); `()` for a feed-forward network."""
        shape = (batch_shape,) if isinstance(batch_shape, int) else tuple(batch_shape)
        carry_of = lambda net: net.initial_carry(shape) if is_recurrent(net) else ()
        return {"policy": carry_of(self.policy_net), "value": carry_of(self.value_net)}

    def policy_step(self, params, obs_stats, carry, obs):
        """One step of the policy network: `(carry, (outputs, log_std))` (the carry passes through
        a feed-forward network). A categorical head's logits are masked by the observation's
        `action_mask`, where it has one, so every sample, log-prob, entropy and KL term sees only
        the legal actions."""
        carry, (outputs, log_std) = self._apply_network(self.policy_net, params["policy"],
                                                        self._features(obs_stats, obs), carry)
        return carry, (self._masked(outputs, obs), log_std)

    def _features(self, obs_stats, obs):
        """What the networks read: `obs`, normalised when `normalize_observations` is set."""
        return normalize_observation(obs_stats, obs) if self.config.normalize_observations else obs

    def _masked(self, outputs, obs):
        """A categorical head's logits with `obs`'s illegal actions masked (`policy_step`)."""
        mask = observations.action_mask(obs)
        if mask is not None and self.head.kind == "categorical":
            return observations.mask_logits(outputs, mask)
        return outputs

    def policy_outputs(self, params, obs_stats, obs):
        """`(outputs, log_std)` of the policy network on `obs` (any leading axes), masked as
        `policy_step` says; a recurrent policy reads `obs` as the first step of an episode."""
        return self.policy_step(params, obs_stats, self._carry_of(self.policy_net, obs), obs)[1]

    def value_step(self, params, obs_stats, carry, obs):
        """One step of the value network: `(carry, values)` (with `shared_core`, `carry` is the
        policy's)."""
        if self.shared_core:
            embed, recur, readout = self._parts("value", params)
            carry, h = recur(carry, embed(self._features(obs_stats, obs)))
            return carry, readout(h)
        return self._apply_network(self.value_net, params["value"], self._features(obs_stats, obs), carry)

    def _parts(self, name: str, params):
        """`jaxpg.core.recurrent.parts` of the `"policy"` or the `"value"` network. `shared_core`'s
        value network is the policy's torso and cell with the value's readout."""
        if name == "policy" or not self.shared_core:
            return parts(self.policy_net if name == "policy" else self.value_net, params[name])
        embed, recur, _ = parts(self.policy_net, params["policy"])
        return embed, recur, functools.partial(self.value_net.apply, params["value"])

    def value_carry(self, carry: dict):
        """The value network's carry in a `TrainState.carry`: the policy's with `shared_core`."""
        return carry["policy"] if self.shared_core else carry["value"]

    def value(self, params, obs_stats, obs):
        """V(obs) (any leading axes); a recurrent value network reads `obs` as an episode's first step."""
        return self.value_step(params, obs_stats, self._carry_of(self._carrier("value"), obs), obs)[1]

    def _carrier(self, name: str):
        """The network whose carry the `"policy"` or `"value"` network reads: the policy's for
        `shared_core`'s value."""
        return self.policy_net if name == "policy" or self.shared_core else self.value_net

    def _read_rollout(self, params, obs_stats, batch, carries: dict, keep_read=False):
        """Re-reads a rollout `batch` with the recurrent networks named in `carries` (`"policy"`,
        `"value"` or both, each with its carry at `batch.obs[0]`, None for the initial one), all in
        one scan under the reset rule: `(carry, outputs, read)`, dicts by name, as
        `jaxpg.core.recurrent.read_sequence` returns them."""
        dones = batch.terminated | batch.truncated
        initial = {name: self._carrier(name).initial_carry(dones.shape[1:]) for name in carries}
        carry = {name: initial[name] if c is None else c for name, c in carries.items()}
        features = self._features(obs_stats, batch.obs)
        if self.shared_core and set(carries) == {"policy", "value"}:
            # One cell read for both: the policy's, with both readouts on its outputs.
            embed, recur, policy_readout = self._parts("policy", params)
            value_readout = self._parts("value", params)[2]
            reader = (embed, recur, lambda h: (policy_readout(h), value_readout(h)))
            carry, (policy, value), read = read_sequence(reader, carry["policy"], features, dones, initial["policy"],
                                                         keep_read)
            return {"policy": carry}, {"policy": policy, "value": value}, {"policy": read}
        reader = joint_parts({name: self._parts(name, params) for name in carries})
        return read_sequence(reader, carry, {name: features for name in carries}, dones, initial, keep_read)

    def rollout_outputs(self, params, obs_stats, batch, carry=None):
        """`(outputs, log_std)` at every step of a rollout `batch` (a `Transition` (T, N, ...)).

        A recurrent policy re-reads each environment's sequence from `carry` (its carry at
        `batch.obs[0]`; None: the initial one) under the same reset rule as the rollout, so it sees
        the hidden states the rollout saw (under the parameters given).
        """
        if not is_recurrent(self.policy_net):
            return self.policy_outputs(params, obs_stats, batch.obs)
        _, outputs, _ = self._read_rollout(params, obs_stats, batch, {"policy": carry})
        outputs, log_std = outputs["policy"]
        return self._masked(outputs, batch.obs), log_std

    def rollout_values(self, params, obs_stats, batch, carry=None, bootstrap=False):
        """V at every step of a rollout `batch`, `(T, N)`, a recurrent value network re-reading
        each sequence from `carry` (None: the initial one) as `rollout_outputs` does.

        With `bootstrap`, returns `(values, next_values, carry)`: `next_values[t]` is V of
        `batch.final_obs[t]` read by the hidden state that read `batch.obs[t]` (the value to
        bootstrap a truncation from), and `carry` the value carry after the last step (reset
        where it ended an episode).
        """
        if not is_recurrent(self.value_net) and not self.shared_core:
            if not bootstrap:
                return self.value(params, obs_stats, batch.obs)
            values, next_values = self.value(params, obs_stats, observations.stack(batch.obs, batch.final_obs))
            return values, next_values, carry
        carry, values, read = self._read_rollout(params, obs_stats, batch, {"value": carry}, keep_read=bootstrap)
        if not bootstrap:
            return values["value"]
        # Every step's final observation read by that carry: one batched step over (T, N) rather
        # than a second cell call inside the sequential scan.
        next_values = self.value_step(params, obs_stats, read["value"], batch.final_obs)[1]
        # With `shared_core` the carry handed on is the policy's, which the rollout returns.
        return values["value"], next_values, () if self.shared_core else carry["value"]

    def rollout_outputs_and_values(self, params, obs_stats, batch, carry=None):
        """`(outputs, log_std, values)`: `rollout_outputs` and `rollout_values` of one batch, with
        recurrent networks re-read in a single pass over time (one scan, not one per network).

        `carry` is `{"policy": ..., "value": ...}` at `batch.obs[0]` (None: the initial ones).
        """
        if not self.sequential:
            return (*self.policy_outputs(params, obs_stats, batch.obs), self.value(params, obs_stats, batch.obs))
        # With `shared_core` both are read from the policy's carry (`_read_rollout`).
        recurrent = {name: None if carry is None else carry[name] for name in ("policy", "value")
                     if is_recurrent(self._carrier(name))}
        _, read, _ = self._read_rollout(params, obs_stats, batch, recurrent)
        if "policy" in read:
            outputs, log_std = read["policy"]
            outputs = self._masked(outputs, batch.obs)
        else:
            outputs, log_std = self.policy_outputs(params, obs_stats, batch.obs)
        values = read["value"] if "value" in read else self.value(params, obs_stats, batch.obs)
        return outputs, log_std, values

    def rollout_policy(self, params, obs_stats):
        """The `jaxpg.rollout.Policy` that samples from the current parameters (taking and
        returning the policy carry when the policy is recurrent)."""

        def policy(obs, key, carry=()):
            carry, (outputs, log_std) = self.policy_step(params, obs_stats, carry, obs)
            raw, log_prob = self.head.sample(outputs, log_std, key)
            return (raw, self.head.to_env(raw), log_prob) + ((carry,) if self.recurrent else ())

        return policy

    def collect(self, state: TrainState, env_params, env_state, obs, key, num_steps, group_size=1, carry=None):
        """`jaxpg.rollout` of `state`'s policy: `((env_state, obs, carry), Transition (T, N, ...))`.

        `carry` is the policy's carry at `obs` (None: the initial one, a fresh episode's); the
        returned one is the carry at the returned `obs`. A feed-forward policy returns `()`.
        """
        policy = self.rollout_policy(state.params, state.obs_stats)
        if not self.recurrent:
            (env_state, obs), batch = rollout(self.train_env, env_params, policy, env_state, obs, key, num_steps,
                                              group_size, resets_per_step=self.resets_per_step)
            return (env_state, obs, ()), batch
        initial = self._carry_of(self.policy_net, obs)
        return rollout(self.train_env, env_params, policy, env_state, obs, key, num_steps, group_size,
                       carry=initial if carry is None else carry, initial_carry=initial,
                       resets_per_step=self.resets_per_step)

    def reset_envs(self, key, num_envs, env_params=None):
        """`num_envs` fresh resets: `(obs, env_state)` batched on a leading axis."""
        keys = jax.random.split(key, num_envs)
        return jax.vmap(self.train_env.reset, in_axes=(0, None))(keys, self._env_params(env_params))

    def _init_extra(self, key, params, hparams):
        return NoExtra()

    def _init(self, key, hparams, env_params):
        key, policy_key, value_key, env_key, extra_key = jax.random.split(key, 5)
        obs, env_state = self.reset_envs(env_key, self.config.num_envs, env_params)
        params = {
            "policy": self._init_network(self.policy_net, policy_key, obs),
            "value": self._init_network(self.value_net, value_key, obs),
        }
        if self._initial_policy_params is not None:
            params = {**params, "policy": self._initial_policy_params}
        return TrainState(
            params=params,
            opt_state=self.init_opt_state(params, hparams),
            obs_stats=self.initial_obs_stats(),
            env_state=env_state,
            obs=obs,
            key=key,
            hparams=hparams,
            iteration=jnp.zeros((), jnp.int32),
            extra=self._init_extra(extra_key, params, hparams),
            carry=self.initial_carry(self.config.num_envs),
        )

    def init(self, key, hparams=None, env_params=None) -> TrainState:
        """A fresh `TrainState` for PRNG key `key`, (merged) hyperparameters and env params
        (default: the trainer's)."""
        args = (key, self.resolve_hparams(hparams), self._env_params(env_params))
        traced = any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(args))
        return (self._init_jit if traced else self._init_alone)(*args)

    def _env_params(self, env_params):
        return self.env_params if env_params is None else env_params

    def init_opt_state(self, params, hparams):
        """The optimiser state for `params` (a pytree like them)."""
        return self.optimizer(hparams).init(params)

    def apply_gradients(self, state_params, opt_state, grads, loss, hparams):
        """One optimiser step that refuses to make anything non-finite.

        If the loss or a gradient is NaN or infinite, the parameters and
        optimiser state are kept as they were and `finite` is False, so nothing learned so far
        is lost and the metrics say at which update it happened.

        Clipping, Adam and the guard run leaf by leaf. Flattening the parameters into one vector
        first (fewer, larger kernels) was 1.2x slower for PPO on CartPole with 1 seed and 1.1x
        with 64, measured alternately in one process: the concatenations and slices cost more
        than the kernels they saved.

        Returns:
          `(params, opt_state, finite, grad_norm)`.
        """
        updates, new_opt_state = self.optimizer(hparams).update(grads, opt_state, state_params)
        # The global norm is finite iff every gradient is; checking it and the loss costs one
        # scalar test instead of a reduction over every parameter (the norm is shared with
        # the clipping transform after common-subexpression elimination).
        grad_norm = optax.tree.norm(grads)
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
        params = tree_where(finite, optax.apply_updates(state_params, updates), state_params)
        opt_state = tree_where(finite, new_opt_state, opt_state)
        return params, opt_state, finite, grad_norm

    def _iteration(self, state: TrainState, env_params):
        raise NotImplementedError

    def _step(self, state, env_params):
        schedule = self.learning_rate(state.hparams)
        count = state.iteration * self.config.updates_per_iteration
        state, metrics = self._iteration(state, env_params)
        metrics["learning_rate"] = jnp.asarray(schedule(count) if callable(schedule) else schedule, jnp.float32)
        metrics["env_steps"] = (state.iteration + 1) * self.steps_per_iteration
        return state.replace(iteration=state.iteration + 1), metrics

    def step(self, state: TrainState, env_params=None):
        """One iteration (rollout and update). Pure and jitted: `(state, metrics)`."""
        return self._step_jit(state, self._env_params(env_params))

    def _iterate(self, state, env_params, n: int):
        return jax.lax.scan(lambda state, _: self._step(state, env_params), state, None, length=n)

    def iterate(self, state: TrainState, n: int, env_params=None):
        """`n` iterations from `state` as one `lax.scan`: `(state, metrics)`.

        Pure; jitted here, and vmappable. Chunks compose bit for bit:
        `iterate(iterate(s, a)[0], b)` gives the state of `iterate(s, a + b)` and the
        concatenation of the two chunks' metrics. `env_params` default to the trainer's; they
        are an argument, never a closure, so a batch of them vmaps and a large catalog is not
        constant-folded into the program.
        """
        return self._iterate_jit(state, self._env_params(env_params), n)

    def _train(self, key, hparams, env_params):
        return self._iterate(self._init(key, hparams, env_params), env_params, self.total_iterations)

    def train(self, key, hparams=None, env_params=None):
        """The whole run, `iterate(init(key, hparams, env_params), total_iterations)`, compiled as one program.

        Args:
          key: PRNG key; `jax.vmap(trainer.train)(keys)` trains one run per key.
          hparams: optional dict overriding some of `trainer.hparams`; its leaves may be
            batched under `jax.vmap` to sweep them.
          env_params: optional environment parameters (default: the trainer's); under
            `jax.vmap` a batch of them trains one run per setting.

        Returns:
          `(state, metrics)`: the final `TrainState` and a dict of arrays with a leading
          iteration axis.
        """
        state, metrics = self._train_jit(key, self.resolve_hparams(hparams), self._env_params(env_params))
        if not isinstance(metrics["nonfinite"], jax.core.Tracer):
            warn_nonfinite(metrics["nonfinite"])
        return state, metrics

    def act(self, state: TrainState, obs, key=None, deterministic: bool = False, carry=None):
        """Env actions for `obs` (one observation or a batch) under `state`'s policy.

        A recurrent policy (`trainer.recurrent`) returns `(actions, carry)`: pass the returned
        carry with the next observations, and `trainer.initial_carry(batch)["policy"]` (the
        default, `carry=None`) at the first step of an episode; replace an environment's carry
        by that initial one after its episode ends (`jaxpg.core.recurrent.reset_carry`).
        """
        if carry is None:
            carry = self._carry_of(self.policy_net, obs)
        carry, (outputs, log_std) = self.policy_step(state.params, state.obs_stats, carry, obs)
        if deterministic:
            raw = self.head.mode(outputs, log_std)
        else:
            if key is None:
                raise ValueError("act: a PRNG key is needed unless deterministic=True")
            raw, _ = self.head.sample(outputs, log_std, key)
        return (self.head.to_env(raw), carry) if self.recurrent else self.head.to_env(raw)


def episode_limit(algo: str, option: str, env_params, max_episode_steps: int | None = None) -> int:
    """The longest training episode, which `option=None` stands for: the env's
    `max_steps_in_episode`, or `max_episode_steps` (the trainer's `TimeLimit`) where that is
    shorter or the env has no limit; `ValueError` if neither is known."""
    limit = getattr(env_params, "max_steps_in_episode", None)
    if limit is None and max_episode_steps is None:
        raise ValueError(
            f"{algo}: {option}=None takes the environment's max_steps_in_episode, which these env_params "
            f"lack; pass {option} (a positive integer) or max_episode_steps"
        )
    if limit is None:
        return int(max_episode_steps)
    return int(limit) if max_episode_steps is None else min(int(limit), int(max_episode_steps))


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
