"""Policy and value networks (flax linen). Parameters are plain pytrees.

Both networks read an observation pytree as one feature vector (`jaxpg.core.observations`:
each leaf's trailing `obs_ndims` axes flattened, the leaves concatenated), so any leading batch
axes pass through: `(obs_shape) -> ()`, `(N, obs_shape) -> (N,)`, `(T, N, obs_shape) -> (T, N)`.
"""

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxpg.core.observations import flatten

ACTIVATIONS = {"tanh": nn.tanh, "relu": nn.relu, "elu": nn.elu, "gelu": nn.gelu, "swish": nn.swish}
POLICIES = ("mlp", "linear", "transformer")


def _orthonormal_columns(a):
    """Q of the thin QR factorisation of a tall `(p, q)` matrix, with diag(R) > 0.

    Classical Gram-Schmidt applied twice per column ("twice is enough") keeps Q orthonormal to
    float32 precision. Why not `jnp.linalg.qr`: on the CPU it is a LAPACK custom call that,
    batched under `vmap` (one initialisation per seed), splits its work over XLA's intra-op
    thread pool and waits for it; two such calls running at once on a 2-thread pool wait on
    each other forever. Plain array ops cannot deadlock.
    """

    def add_column(j, q):
        v = a[:, j]
        for _ in range(2):
            v = v - q @ (q.T @ v)  # columns >= j of q are still zero
        return q.at[:, j].set(v / jnp.linalg.norm(v))

    return jax.lax.fori_loop(0, a.shape[1], add_column, jnp.zeros_like(a))


def orthogonal(scale: float = 1.0):
    """Orthogonal initialiser, the same distribution as `flax.linen.initializers.orthogonal`."""

    def init(key, shape, dtype=jnp.float32):
        rows, cols = int(np.prod(shape[:-1])), shape[-1]
        gaussian = jax.random.normal(key, (max(rows, cols), min(rows, cols)), jnp.float32)
        q = _orthonormal_columns(gaussian)
        if rows < cols:
            q = q.T
        return (scale * q).reshape(shape).astype(dtype)

    return init


class MLP(nn.Module):
    """Hidden layers with orthogonal init (gain sqrt 2) and zero biases."""

    hidden_sizes: Sequence[int]
    activation: str = "tanh"

    @nn.compact
    def __call__(self, x):
        for size in self.hidden_sizes:
            x = nn.Dense(size, kernel_init=orthogonal(np.sqrt(2)))(x)
            x = ACTIVATIONS[self.activation](x)
        return x


class PolicyNetwork(nn.Module):
    """Maps observations to `(outputs, log_std)` for an `ActionHead`.

    `policy="mlp"`: an MLP then a linear layer with small orthogonal init (gain 0.01), so the
    initial policy is close to uniform / zero-mean. `policy="linear"`: `outputs = K obs`, no
    hidden layers and no bias, K initialised to zero (the linear-Gaussian policy for LQR).
    `log_std` is a state-independent parameter of shape `(num_outputs,)` when
    `learns_log_std`, else a zero scalar.
    """

    num_outputs: int
    hidden_sizes: Sequence[int] = (64, 64)
    activation: str = "tanh"
    policy: str = "mlp"
    learns_log_std: bool = False
    init_log_std: float = 0.0
    obs_ndims: tuple[int, ...] = (1,)

    @nn.compact
    def __call__(self, obs):
        x = flatten(obs, self.obs_ndims)
        if self.policy == "linear":
            outputs = nn.Dense(
                self.num_outputs, use_bias=False, kernel_init=nn.initializers.zeros, name="gain"
            )(x)
        else:
            x = MLP(self.hidden_sizes, self.activation)(x)
            outputs = nn.Dense(self.num_outputs, kernel_init=orthogonal(0.01))(x)
        if self.learns_log_std:
            log_std = self.param(
                "log_std", nn.initializers.constant(self.init_log_std), (self.num_outputs,)
            )
        else:
            log_std = jnp.zeros(())
        return outputs, log_std


class ValueNetwork(nn.Module):
    """Maps observations to a scalar state value V(s)."""

    hidden_sizes: Sequence[int] = (64, 64)
    activation: str = "tanh"
    obs_ndims: tuple[int, ...] = (1,)

    @nn.compact
    def __call__(self, obs):
        x = MLP(self.hidden_sizes, self.activation)(flatten(obs, self.obs_ndims))
        return nn.Dense(1, kernel_init=orthogonal(1.0))(x)[..., 0]
