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
POLICIES = ("mlp", "linear", "transformer", "cnn", "gru", "lstm")


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


class Features(nn.Module):
    """One feature vector per observation pytree: `(*batch, features)`.

    With `conv_channels` empty (`policy="mlp"`) this is `observations.flatten`. Otherwise
    (`policy="cnn"`) each image-like leaf, one with three per-environment axes (height, width,
    channels: Craftax's pixels, grid worlds' cell grids), first passes through one convolution per
    entry of `conv_channels` (square `conv_kernel`, stride `conv_stride`, SAME padding,
    `activation` after each); every leaf is then flattened and the leaves concatenated.
    """

    obs_ndims: tuple[int, ...]
    conv_channels: Sequence[int] = ()
    conv_kernel: int = 3
    conv_stride: int = 1
    activation: str = "relu"

    @nn.compact
    def __call__(self, obs):
        if not self.conv_channels:
            return flatten(obs, self.obs_ndims)
        features = []
        for x, ndim in zip(jax.tree.leaves(obs), self.obs_ndims):
            batch = x.shape[: x.ndim - ndim]
            x = x.astype(jnp.float32)
            if ndim == 3:
                x = x.reshape((-1,) + x.shape[-3:])  # flax's Conv takes one batch axis
                for channels in self.conv_channels:
                    x = nn.Conv(channels, (self.conv_kernel,) * 2, strides=self.conv_stride,
                                kernel_init=orthogonal(np.sqrt(2)))(x)
                    x = ACTIVATIONS[self.activation](x)
            features.append(x.reshape(batch + (-1,)))
        return jnp.concatenate(features, axis=-1)


def image_leaves(obs_ndims: tuple[int, ...]) -> int:
    """How many leaves of an observation `Features` would convolve."""
    return sum(ndim == 3 for ndim in obs_ndims)


class PolicyNetwork(nn.Module):
    """Maps observations to `(outputs, log_std)` for an `ActionHead`.

    `policy="mlp"`: an MLP then a linear layer with small orthogonal init (gain 0.01), so the
    initial policy is close to uniform / zero-mean. `policy="cnn"`: the same after
    convolutions over the image-like leaves (`Features`). `policy="linear"`: `outputs = K obs`, no
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
    conv_channels: Sequence[int] = ()
    conv_kernel: int = 3
    conv_stride: int = 1

    @nn.compact
    def __call__(self, obs):
        if self.conv_channels:
            x = Features(self.obs_ndims, self.conv_channels, self.conv_kernel, self.conv_stride, self.activation)(obs)
        else:  # no submodule, so an MLP policy's parameters keep their names
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
    conv_channels: Sequence[int] = ()
    conv_kernel: int = 3
    conv_stride: int = 1

    @nn.compact
    def __call__(self, obs):
        if self.conv_channels:
            x = Features(self.obs_ndims, self.conv_channels, self.conv_kernel, self.conv_stride, self.activation)(obs)
        else:
            x = flatten(obs, self.obs_ndims)
        x = MLP(self.hidden_sizes, self.activation)(x)
        return nn.Dense(1, kernel_init=orthogonal(1.0))(x)[..., 0]
