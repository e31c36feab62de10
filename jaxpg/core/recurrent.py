"""Policies with memory: recurrent policy and value networks, and the rule that resets them.

A recurrent network is a flax module with two methods:

- `initial_carry(batch_shape) -> carry`, called on the unbound module (no parameters): the
  hidden state an episode starts from, each leaf with leading axes `batch_shape`;
- `__call__(carry, obs) -> (carry, outputs)` for one step: `obs` a batch of observations with
  leading axes `batch_shape`, `outputs` the feed-forward network's (`(logits or means, log_std)`
  for a policy, values for a value network).

It may also expose its step in three parts, `embed(obs) -> x`, `recur(carry, x) -> (carry, h)`
and `readout(h) -> outputs`, with `__call__` their composition (as `RecurrentNetwork` does). Only
`recur` then runs step by step when a sequence is re-read; `embed` and `readout` run once over
all its steps.

The reset rule, in one sentence: after every step that ends an episode (terminated or
truncated) the carry of that environment is replaced by its initial carry, so the next
observation, the first of a new episode, is read from a fresh hidden state. The rollout applies
it step by step, and `read_sequence` applies it again when an update re-reads a rollout from the
carry stored at its start, so both see the same hidden states.
"""

import functools
from collections.abc import Sequence

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


def parts(network, variables):
    """`(embed, recur, readout)` of a recurrent network, its variables bound. A network without
    the three methods is read whole at every step: `embed` and `readout` are then the identity."""
    if all(callable(getattr(network, name, None)) for name in ("embed", "recur", "readout")):
        bind = lambda method: functools.partial(network.apply, variables, method=method)
        return bind("embed"), bind("recur"), bind("readout")

    def readout(outputs):
        # Read whole, a policy's `log_std` comes out stacked over the steps; it does not depend
        # on the state, so the first step's is the policy's, as `readout` gives it.
        return (outputs[0], jax.tree.map(lambda x: x[0], outputs[1])) if isinstance(outputs, tuple) else outputs

    return (lambda obs: obs), functools.partial(network.apply, variables), readout


def joint_parts(named_parts: dict):
    """The `parts` of several networks read together: each takes and returns a dict by name, so
    one scan steps every cell."""

    def each(i):
        return lambda *args: {name: p[i](*(a[name] for a in args)) for name, p in named_parts.items()}

    embed, readout = each(0), each(2)

    def recur(carry, x):
        stepped = each(1)(carry, x)
        return {name: c for name, (c, _) in stepped.items()}, {name: h for name, (_, h) in stepped.items()}

    return embed, recur, readout


def read_sequence(network_parts, carry, obs, dones, initial, keep_read=False):
    """Runs a recurrent network over a rollout's time axis under the reset rule.

    Args:
      network_parts: `(embed, recur, readout)` (`parts`).
      carry: the carry at `obs[0]`, batch axes `(N, ...)`.
      obs: observations `(T, N, ...)` (a pytree).
      dones: `(T, N)`: step t ended an episode, so the carry is reset before step t + 1.
      initial: the initial carry, batch axes `(N, ...)`.
      keep_read: return `read` (otherwise None): stacking every step's carry costs a write per
        step, which an update that only needs the outputs should not pay.

    Returns:
      `(carry, outputs, read)`: the carry after the last step (reset where it ended an episode),
      the outputs with a leading `T` axis, and `read[t]`, the carry right after reading `obs[t]`
      (before any reset: the one a truncated episode's final observation is read with).
    """
    embed, recur, readout = network_parts

    def one_step(carry, inputs):
        x_t, done_t = inputs
        carry, h = recur(carry, x_t)
        return reset_carry(carry, done_t, initial), (h, carry if keep_read else None)

    carry, (hs, read) = jax.lax.scan(one_step, carry, (embed(obs), dones))
    return carry, readout(hs), read


def zero_carry(cell: str, hidden_size: int, batch_shape=()):
    """The built-in cells' initial carry, zeros: `h (*batch, hidden)` for a GRU, `(c, h)` for an LSTM."""
    zeros = jnp.zeros(tuple(batch_shape) + (hidden_size,), jnp.float32)
    return zeros if cell == "gru" else (zeros, zeros)


class Torso(nn.Module):
    """The observation flattened (`jaxpg.core.observations`), then an MLP: the layers before the cell."""

    sizes: Sequence[int] = (64,)
    activation: str = "tanh"
    obs_ndims: tuple[int, ...] = (1,)

    @nn.compact
    def __call__(self, obs):
        return MLP(self.sizes, self.activation)(flatten(obs, self.obs_ndims))


class Cell(nn.Module):
    """flax's GRU or LSTM cell: `(carry, x) -> (carry, h)`."""

    cell: str = "gru"
    hidden_size: int = 128

    @nn.compact
    def __call__(self, carry, x):
        # flax's cells draw their recurrent kernels with its orthogonal initialiser, a LAPACK QR
        # that deadlocks vmapped on a 2-thread CPU (jaxpg.core.networks.orthogonal says why); ours
        # draws from the same distribution with plain array ops.
        cell = nn.GRUCell if self.cell == "gru" else nn.OptimizedLSTMCell
        return cell(self.hidden_size, recurrent_kernel_init=orthogonal())(carry, x)


class Readout(nn.Module):
    """An MLP of `head_sizes`, then the outputs: `(outputs, log_std)` for a policy (`num_outputs`
    given; outputs with small orthogonal init, `log_std` as `PolicyNetwork`'s), V for a value network."""

    num_outputs: int | None = None
    head_sizes: Sequence[int] = (64,)
    activation: str = "tanh"
    learns_log_std: bool = False
    init_log_std: float = 0.0

    @nn.compact
    def __call__(self, h):
        x = MLP(self.head_sizes, self.activation)(h)
        if self.num_outputs is None:
            return nn.Dense(1, kernel_init=orthogonal(1.0))(x)[..., 0]
        outputs = nn.Dense(self.num_outputs, kernel_init=orthogonal(0.01))(x)
        if self.learns_log_std:
            log_std = self.param("log_std", nn.initializers.constant(self.init_log_std), (self.num_outputs,))
        else:
            log_std = jnp.zeros(())
        return outputs, log_std


class RecurrentNetwork(nn.Module):
    """`policy="gru"` / `"lstm"`: `Torso`, `Cell`, then `Readout`.

    A policy network (`num_outputs` given) answers `(carry, (outputs, log_std))` as
    `PolicyNetwork` does; a value network (`num_outputs=None`) answers `(carry, V)`.

    Only the cell depends on the step before, so the network also exposes its three parts as
    `embed`, `recur` and `readout` (`__call__` is their composition): `read_sequence` then runs
    the feed-forward layers once over a whole `(T, N)` sequence and only the cell step by step.
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

    def setup(self):
        self.torso = Torso(self.torso_sizes, self.activation, self.obs_ndims)
        self.core = Cell(self.cell, self.hidden_size)
        self.head = Readout(self.num_outputs, self.head_sizes, self.activation, self.learns_log_std,
                            self.init_log_std)

    def __call__(self, carry, obs):
        carry, h = self.recur(carry, self.embed(obs))
        return carry, self.readout(h)

    def embed(self, obs):
        return self.torso(obs)

    def recur(self, carry, x):
        return self.core(carry, x)

    def readout(self, h):
        return self.head(h)

    def initial_carry(self, batch_shape=()):
        return zero_carry(self.cell, self.hidden_size, batch_shape)
