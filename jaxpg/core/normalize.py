"""Running mean and variance (Chan et al.'s parallel Welford merge), kept in the train state.

The statistics are ordinary arrays inside `TrainState`, so they vmap over seeds, shard and
checkpoint with everything else.
"""

import jax.numpy as jnp
from flax import struct


@struct.dataclass
class RunningStats:
    mean: jnp.ndarray
    var: jnp.ndarray
    count: jnp.ndarray

    @classmethod
    def create(cls, shape=()):
        # A tiny prior count keeps the first merge well defined without biasing the estimate.
        return cls(jnp.zeros(shape), jnp.ones(shape), jnp.asarray(1e-4))

    def update(self, batch):
        """Merges a batch whose leading axes are samples and trailing axes match `mean`."""
        batch = batch.reshape((-1,) + self.mean.shape).astype(jnp.float32)
        batch_mean = batch.mean(axis=0)
        batch_var = batch.var(axis=0)
        batch_count = batch.shape[0]
        delta = batch_mean - self.mean
        total = self.count + batch_count
        mean = self.mean + delta * batch_count / total
        m2 = self.var * self.count + batch_var * batch_count + delta**2 * self.count * batch_count / total
        return RunningStats(mean, m2 / total, total)

    def normalize(self, x, clip=10.0):
        return jnp.clip((x - self.mean) / jnp.sqrt(self.var + 1e-8), -clip, clip)
