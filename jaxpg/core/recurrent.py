"""Policies with memory: recurrent policy and value networks, and the rule that resets them.

A recurrent network is a flax module with two methods:

- `initial_carry(batch_shape) -> carry`, called on the unbound module (no parameters): the
  hidden state an episode starts from, each leaf with leading axes `batch_shape`;
- `__call__(carry, obs) -> (carry, outputs)` for one step: `obs` a batch of observations with
  leading axes `batch_shape`, `outputs` the feed-forward network's (`(logits or means, log_std)`
  for a policy, values for a value network).

The reset rule, in one sentence: after every step that ends an episode (terminated or
truncated) the carry of that environment is replaced by its initial carry, so the next
observation, the first of a new episode, is read from a fresh hidden state. The rollout applies
it step by step, and `run_sequence` applies it again when an update re-reads a rollout from the
carry stored at its start, so both see the same hidden states.
"""

from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxpg.core.networks import MLP, orthogonal
from jaxpg.core.observations import flatten

CELLS = ("gru", "lstm")


def is_recurrent(module) -> bool:
    """Whether a network carries a hidden state (has `initial_carry`)."""
    return callable(getattr(module, "initial_carry", None))


def reset_carry(carry, done, initial):
    """`carry` with the environments where `done` (shape: the carry's batch axes) set to `initial`."""

    def select(current, fresh):
        where = done.reshape(done.shape + (1,) * (current.ndim - done.ndim))
        return jnp.where(where, fresh, current)

    return jax.tree.map(select, carry, initial)


def run_sequence(step: Callable, carry, obs, dones, initial):
    """Runs a recurrent `step(carry, obs_t) -> (carry, outputs_t)` over a rollout's time axis.

    Args:
      step: one step of the network (parameters bound).
      carry: the carry at `obs[0]`, batch axes `(N, ...)`.
      obs: observations `(T, N, ...)` (a pytree).
      dones: `(T, N)`: step t ended an episode, so the carry is reset before step t + 1.
      initial: the initial carry, batch axes `(N, ...)`.

    Returns:
      `(carry, outputs)`: the carry after the last step (reset where it ended an episode), and
      the outputs with a leading `T` axis.
    """

    def one_step(carry, inputs):
        obs_t, done_t = inputs
        carry, outputs = step(carry, obs_t)
        return reset_carry(carry, done_t, initial), outputs

    return jax.lax.scan(one_step, carry, (obs, dones))


def zero_carry(cell: str, hidden_size: int, batch_shape=()):
    """The built-in cells' initial carry, zeros: `h (*batch, hidden)` for a GRU, `(c, h)` for an LSTM."""
    zeros = jnp.zeros(tuple(batch_shape) + (hidden_size,), jnp.float32)
    return zeros if cell == "gru" else (zeros, zeros)


class RecurrentCore(nn.Module):
    """The observation flattened (`jaxpg.core.observations`), an MLP torso, then a GRU or LSTM cell:
    `(carry, obs) -> (carry, h)`."""

    cell: str = "gru"
    hidden_size: int = 128
    torso_sizes: Sequence[int] = (64,)
    activation: str = "tanh"
    obs_ndims: tuple[int, ...] = (1,)

    @nn.compact
    def __call__(self, carry, obs):
        x = MLP(self.torso_sizes, self.activation)(flatten(obs, self.obs_ndims))
        # flax's cells draw their recurrent kernels with its orthogonal initialiser, a LAPACK QR
        # that deadlocks vmapped on a 2-thread CPU (jaxpg.core.networks.orthogonal says why); ours
        # draws from the same distribution with plain array ops.
        cell = nn.GRUCell if self.cell == "gru" else nn.OptimizedLSTMCell
        return cell(self.hidden_size, recurrent_kernel_init=orthogonal())(carry, x)


class RecurrentNetwork(nn.Module):
    """`policy="gru"` / `"lstm"`: `RecurrentCore`, an MLP head of `head_sizes`, then the outputs.

    A policy network (`num_outputs` given) answers `(carry, (outputs, log_std))` as
    `PolicyNetwork` does (outputs with small orthogonal init, the same `log_std`); a value
    network (`num_outputs=None`) answers `(carry, V)`.
    """

    num_outputs: int | None = None
    cell: str = "gru"
    hidden_size: int = 128
    torso_sizes: Sequence[int] = (64,)
    head_sizes: Sequence[int] = (64,)
    activation: str = "tanh"
    learns_log_std: bool = False
    init_log_std: float = 0.0
    obs_ndims: tuple[int, ...] = (1,)

    @nn.compact
    def __call__(self, carry, obs):
        carry, h = RecurrentCore(self.cell, self.hidden_size, self.torso_sizes, self.activation, self.obs_ndims,
                                 name="core")(carry, obs)
        x = MLP(self.head_sizes, self.activation)(h)
        if self.num_outputs is None:
            return carry, nn.Dense(1, kernel_init=orthogonal(1.0))(x)[..., 0]
        outputs = nn.Dense(self.num_outputs, kernel_init=orthogonal(0.01))(x)
        if self.learns_log_std:
            log_std = self.param("log_std", nn.initializers.constant(self.init_log_std), (self.num_outputs,))
        else:
            log_std = jnp.zeros(())
        return carry, (outputs, log_std)

    def initial_carry(self, batch_shape=()):
        return zero_carry(self.cell, self.hidden_size, batch_shape)
