"""Running mean and variance (Chan et al.'s parallel Welford merge), kept in the train state.

The statistics are ordinary arrays inside `TrainState`, so they vmap over seeds, shard and
checkpoint with everything else. A pytree observation keeps one `RunningStats` per leaf.
"""

import jax
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


def _is_stats(x) -> bool:
    return isinstance(x, RunningStats)


def observation_stats(obs_spec):
    """Fresh statistics for an observation pytree: one `RunningStats` per leaf, in the same tree
    (a single `RunningStats` for an array observation)."""
    return jax.tree.map(lambda leaf: RunningStats.create(tuple(leaf.shape)), obs_spec)


def normalize_observation(stats, obs):
    """Each leaf of `obs` (any leading batch axes) normalised by its own statistics."""
    return jax.tree.map(lambda s, x: s.normalize(x), stats, obs, is_leaf=_is_stats)


def update_observation_stats(stats, batch):
    """Each leaf's statistics merged with that leaf of `batch` (leading axes are samples)."""
    return jax.tree.map(lambda s, x: s.update(x), stats, batch, is_leaf=_is_stats)
