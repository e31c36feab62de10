"""Where `fit`'s arrays live: the runs axis, or one run's environments, laid over a device mesh.

`fit` trains a batch of runs (seeds x hyperparameter settings x environment settings) as one
program. `Layout` says how that program's arrays are split over devices:

- `shard="runs"` (the default): the runs axis over every device, one `NamedSharding` with the
  mesh axis `"runs"`, and the vmapped program `shard_map`ped so that each device trains its
  own block of whole runs with no collectives. A run count the device count does not divide is
  padded with copies of the last run, which are trained and dropped (nothing padded is
  returned, written or logged). The same layout gives the same bits, whether its devices sit
  in one process or many; another device count gives each run's result to float rounding
  only: XLA:CPU rounds a run's sums differently with the number of runs batched beside it
  and the number of devices in the program (measured in tests/test_sharding.py, about 1e-7
  relative after one update; the same holds on one device for 1, 2 or 8 vmapped seeds).
- `shard="envs"`: every run's environments over the devices (data-parallel rollouts), the
  parameters and optimiser state replicated. XLA's partitioner turns the loss's means over the
  batch into all-reduces across devices, so every device applies the same averaged gradient.
  Sums are then added in another order than on one device: the result matches a one-device
  run to float rounding, not bit for bit.

On many hosts (after `jax.distributed.initialize`) the mesh spans every process's devices;
host arrays enter with `jax.make_array_from_callback`, each process filling only its own
shards, and leave with `host_copy` (a gather every process takes part in).
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

SHARD_MODES = ("runs", "envs")


@dataclasses.dataclass(frozen=True)
class Layout:
    """A mesh and the rule that places a batched `TrainState` on it.

    Attributes:
      mode: `"runs"` or `"envs"`.
      mesh: a 1-D mesh over `devices`, its axis named after the mode.
      num_runs: the runs the user asked for.
      padded_runs: the runs trained (`num_runs` rounded up to the device count for `"runs"`).
    """

    mode: str
    mesh: Mesh
    num_runs: int
    padded_runs: int

    @classmethod
    def make(cls, mode: str, num_runs: int, num_envs: int | None = None, devices=None) -> "Layout":
        """The layout of `num_runs` runs of `num_envs` environments over `devices` (default:
        every device of every process); `ValueError` for a mode or split that cannot be."""
        if mode not in SHARD_MODES:
            raise ValueError(f"shard={mode!r} is unknown; accepted: {', '.join(SHARD_MODES)}")
        devices = list(jax.devices() if devices is None else devices)
        count = len(devices)
        if mode == "envs":
            if num_envs is None or num_envs % count:
                raise ValueError(
                    f"shard='envs' splits each run's num_envs={num_envs} environments over {count} devices; "
                    f"accepted: a num_envs that is a multiple of {count}"
                )
            padded = num_runs
        else:
            padded = -(-num_runs // count) * count
        return cls(mode, Mesh(np.array(devices), (mode,)), num_runs, padded)

    @property
    def num_devices(self) -> int:
        return self.mesh.devices.size

    @property
    def replicated(self) -> NamedSharding:
        return NamedSharding(self.mesh, P())

    def per_run(self) -> NamedSharding:
        """The sharding of an array whose leading axis is the runs axis."""
        return NamedSharding(self.mesh, P("runs") if self.mode == "runs" else P())

    def per_device(self, batched, in_axes):
        """`batched` (a function vmapped over runs, whose arguments have runs axes `in_axes`: 0
        or None per argument, or a dict of them) as one program per device. For `"runs"` it is
        `shard_map`ped: each device runs `batched` on its own block of runs, with no
        collectives (so no replication check is needed: `check_vma=False`). For `"envs"` it is
        returned as is, for XLA's partitioner to split."""
        if self.mode != "runs":
            return batched

        def spec(axis):
            if isinstance(axis, dict):
                return {k: spec(v) for k, v in axis.items()}
            return P("runs") if axis == 0 else P()

        return jax.shard_map(batched, mesh=self.mesh, in_specs=tuple(spec(a) for a in in_axes), out_specs=P("runs"),
                             check_vma=False)

    def state_shardings(self, abstract_state):
        """Shardings of a batched `TrainState` (`jax.eval_shape` of the vmapped init): every
        leaf by runs for `"runs"`; for `"envs"` the environments' states and observations
        (axes: runs, envs, ...) and a recurrent network's carries by envs, everything else
        replicated."""
        if self.mode == "runs":
            return jax.tree.map(lambda _: self.per_run(), abstract_state)
        replicated = jax.tree.map(lambda _: self.replicated, abstract_state)
        by_envs = NamedSharding(self.mesh, P(None, "envs"))
        return replicated.replace(
            env_state=jax.tree.map(lambda _: by_envs, abstract_state.env_state),
            obs=jax.tree.map(lambda _: by_envs, abstract_state.obs),
            carry=jax.tree.map(lambda _: by_envs, abstract_state.carry),
        )

    def pad(self, tree, axis):
        """`tree`'s leaves with their runs axis (`axis` 0; None: shared, left alone) padded from
        `num_runs` to `padded_runs` by repeating the last run; host (NumPy) arrays."""
        extra = self.padded_runs - self.num_runs

        def pad_leaf(x):
            x = np.asarray(x)
            if axis is None or not extra:
                return x
            return np.concatenate([x, np.repeat(x[-1:], extra, axis=0)], axis=0)

        return jax.tree.map(pad_leaf, tree)

    def put(self, tree, axis):
        """Host arrays as global arrays: by runs where `axis` is 0, replicated where None."""
        sharding = self.per_run() if axis == 0 else self.replicated
        return jax.tree.map(lambda x: global_array(x, sharding), tree)

    def unpad(self, tree):
        """The first `num_runs` runs of a batched tree (the padding dropped), as host arrays when
        padded; unchanged when nothing was padded."""
        if self.padded_runs == self.num_runs:
            return tree
        return jax.tree.map(lambda x: x[: self.num_runs], host_copy(tree))


def global_array(value, sharding: NamedSharding) -> jax.Array:
    """A host array as a `jax.Array` on `sharding`; each process fills its own shards, which
    works the same on one host and many (where `jax.device_put` of a host value cannot)."""
    value = np.asarray(value)
    return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])


def put_keys(key_data, impl, sharding: NamedSharding) -> jax.Array:
    """Typed PRNG keys of `impl` from their host-side `key_data`, placed on `sharding`."""
    data = global_array(key_data, sharding)
    return jax.jit(lambda d: jax.random.wrap_key_data(d, impl=impl), out_shardings=sharding)(data)


def host_copy(tree):
    """Every leaf of a tree of global arrays as a NumPy array on every process (typed PRNG keys
    as keys again). One process: `jax.device_get`; many: an all-gather all of them must call."""
    if jax.process_count() == 1:
        return jax.device_get(tree)

    def gather(x):
        if isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
            data = multihost_utils.process_allgather(jax.random.key_data(x), tiled=True)
            return jax.random.wrap_key_data(np.asarray(data), impl=jax.random.key_impl(x))
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            return np.asarray(multihost_utils.process_allgather(x, tiled=True))
        return jax.device_get(x)

    return jax.tree.map(gather, tree)


def is_main_process() -> bool:
    """True on the process that writes files (metrics, summaries, plots): process 0."""
    return jax.process_index() == 0
