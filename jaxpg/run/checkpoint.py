"""Checkpoints of a whole training run with orbax's `CheckpointManager`.

A checkpoint holds the complete `TrainState` of every run (parameters, optimiser state,
normaliser statistics, environment states, PRNG keys as key data, iteration counters), and a
JSON record of the run: config, hyperparameters, environment, versions, and where the metrics
files ended when it was written. Orbax writes each step into a temporary folder and renames it
when complete, so a process killed mid-write leaves the previous checkpoints intact; a latest
checkpoint that still fails to restore is skipped with a warning naming it.
"""

import math
import os
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp


def _is_key(x) -> bool:
    return hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jax.dtypes.prng_key)


def keys_to_data(tree):
    """PRNG key arrays as their raw uint32 data (what orbax can store); works on abstract trees too."""
    return jax.tree.map(lambda x: jax.random.key_data(x) if _is_key(x) else x, tree)


def data_to_keys(tree, like, impl):
    """Inverse of `keys_to_data`: `like` says which leaves were keys, `impl` their PRNG impl."""
    return jax.tree.map(lambda x, ref: jax.random.wrap_key_data(x, impl=impl) if _is_key(ref) else x, tree, like)


def _empty(x) -> bool:
    return math.prod(np.shape(x)) == 0


def fill_empty(tree):
    """`tree` with each zero-size leaf replaced by one element of its dtype: orbax refuses to save
    an array without elements (NAVIX's states without doors hold some, MuJoCo Playground's
    `data.act` of a model without actuator state). The tree keeps its structure, so a state
    without such leaves is saved exactly as before."""
    return jax.tree.map(lambda x: np.zeros((1,), x.dtype) if _empty(x) else x, tree)


def fill_empty_abstract(abstract):
    """`fill_empty` for the abstract tree a restore reads into (the placeholder on this process's
    first device)."""
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct((1,), x.dtype, sharding=device) if _empty(x) else x, abstract)


def restore_empty(tree, abstract):
    """Inverse of `fill_empty`: the placeholders become zero-size arrays again, shaped (and
    placed, when `abstract` carries shardings) as `abstract`'s leaves."""

    def restore(got, ref):
        if not _empty(ref):
            return got
        zeros = jnp.zeros(ref.shape, ref.dtype)
        return jax.device_put(zeros, ref.sharding) if getattr(ref, "sharding", None) is not None else zeros

    return jax.tree.map(restore, tree, abstract)


class Checkpoints:
    """The checkpoints of one run directory (`DIR/checkpoints/<iteration>/`)."""

    def __init__(self, out_dir: str, keep: int = 3):
        self.directory = os.path.abspath(os.path.join(out_dir, "checkpoints"))
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True, enable_async_checkpointing=False)
        self.manager = ocp.CheckpointManager(self.directory, options=options)

    def save(self, step: int, state, record: dict) -> None:
        """Saves `state` (a batched `TrainState`) and `record` (JSON-able) as step `step`,
        replacing an unreadable checkpoint of that step that a resume skipped."""
        if step in self.steps():
            self.manager.delete(step)
        self.manager.save(
            step,
            args=ocp.args.Composite(state=ocp.args.StandardSave(fill_empty(keys_to_data(state))),
                                    record=ocp.args.JsonSave(record)),
            force=True,
        )
        self.manager.wait_until_finished()

    def steps(self) -> list[int]:
        self.manager.reload()
        return sorted(self.manager.all_steps())

    def restore_latest(self, like, impl, shardings=None):
        """`(step, state, record)` of the newest checkpoint that restores, or None if none does.

        Args:
          like: a `TrainState` of the right structure and shapes (e.g. from `jax.eval_shape`).
          impl: the PRNG implementation of its keys (`jax.random.key_impl(keys)`).
          shardings: optional shardings of `like`'s leaves (`jaxpg.sharding.Layout`), which the
            restored arrays are placed on; default the first device.
        """
        abstract = jax.eval_shape(keys_to_data, like)
        if shardings is not None:
            abstract = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                                    abstract, shardings)
        for step in reversed(self.steps()):
            try:
                restored = self.manager.restore(
                    step,
                    args=ocp.args.Composite(state=ocp.args.StandardRestore(fill_empty_abstract(abstract)),
                                            record=ocp.args.JsonRestore()),
                )
                state = data_to_keys(restore_empty(restored["state"], abstract), like, impl)
                if not all(np.shape(a) == np.shape(b) for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(like))):
                    raise ValueError("shapes differ from the run's state")
                return step, state, restored["record"]
            except Exception as error:  # noqa: BLE001 - any unreadable checkpoint is skipped
                warnings.warn(
                    f"checkpoint {os.path.join(self.directory, str(step))} could not be restored "
                    f"({type(error).__name__}: {error}); trying the previous one",
                    RuntimeWarning, stacklevel=2,
                )
        return None

    def close(self) -> None:
        self.manager.close()
