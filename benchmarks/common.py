"""The parts every benchmark script shares; the protocol is in benchmarks/README.md.

Scripts run from the repository root as `python -m benchmarks.NAME`. Each one compiles ahead of
time and times the compile apart from the steady run (`compile_ahead`, `timed`), runs contenders
alternately in one process, A B A B (`alternate`, `compile_then_alternate`), reads where a
learning curve first crosses a threshold (`first_crossing`), scores final policies over vmapped
seeds (`evaluate_seeds`, `evaluate_params`), records the machine (`machine_info`) and writes every
raw timing to JSON beside a short Markdown table (`write_results`, `markdown_table`).
"""

import argparse
import datetime
import importlib
import importlib.metadata
import json
import math
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import jaxpg
from jaxpg.run.results import cpu_model

RESULTS_DIR = Path(__file__).resolve().parent / "results"

_PACKAGES = ("jax", "jaxlib", "gymnax", "flax", "optax", "numpy", "rejax", "stable-baselines3", "torch")


# Machine facts ------------------------------------------------------------------------------

def machine_info() -> dict:
    """Describes where a benchmark ran, so an absolute time can be quoted with its device.

    Returns:
      dict with `cpu` (model name), `cpu_count` (cores this process may use), `devices`
      (one string per JAX device, e.g. "gpu:0 NVIDIA H100 80GB HBM3"), `backend`, `python`,
      `platform`, `versions` (package -> version or None if not installed), `date` (UTC ISO)
      and `load_average` (1, 5, 15 minutes; other work on a shared machine shows up here).
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count()
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "cpu": cpu_model(),
        "cpu_count": cores,
        "backend": jax.default_backend(),
        "devices": [f"{d.platform}:{d.id} {d.device_kind}" for d in jax.devices()],
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def device_label(info: dict | None = None) -> str:
    """One line naming the device for table captions: GPU name, or CPU model and core count."""
    info = info or machine_info()
    if info["backend"] == "cpu":
        return f"CPU {info['cpu']} ({info['cpu_count']} cores)"
    return f"{info['devices'][0]} ({len(info['devices'])} device(s)), host CPU {info['cpu']}"


def announce(extra: str = "") -> dict:
    """Prints the line every script starts with (device, jax, load average); returns `machine_info()`."""
    info = machine_info()
    print(f"device: {device_label(info)}; jax {info['versions']['jax']}; load average {info['load_average']}"
          + (f"; {extra}" if extra else ""), flush=True)
    return info


def peak_flops(info: dict) -> dict:
    """Rough fp32 peak of a CPU: cores x clock x FLOPs/cycle (2 FMA pipes x 8 lanes x 2 with AVX2+FMA)."""
    mhz, flags = None, ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("cpu MHz") and mhz is None:
                    mhz = float(line.split(":")[1])
                if line.startswith("flags") and not flags:
                    flags = line
    except OSError:
        pass
    per_cycle = 64 if "avx512f" in flags else 32 if ("avx2" in flags and "fma" in flags) else 8
    if info["backend"] != "cpu" or mhz is None:
        return {"flops_per_s": None, "note": "peak unknown for this device"}
    return {"flops_per_s": info["cpu_count"] * mhz * 1e6 * per_cycle,
            "note": f"{info['cpu_count']} cores x {mhz:.0f} MHz x {per_cycle} FLOP/cycle (fp32)"}


def device_memory() -> dict:
    """The first device's `bytes_limit` (what XLA may allocate) and `peak_bytes_in_use`; None where
    the backend keeps no statistics (the CPU)."""
    try:
        stats = jax.devices()[0].memory_stats() or {}
    except Exception:  # not every backend implements memory_stats
        stats = {}
    return {"limit": stats.get("bytes_limit"), "peak": stats.get("peak_bytes_in_use")}


def peak_rss_bytes() -> int:
    """This process's peak resident memory (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def tree_bytes(tree) -> int:
    """Bytes of a pytree's leaves (arrays, shape structs or Python numbers); PRNG keys not counted."""
    total = 0
    for x in jax.tree.leaves(tree):
        dtype = getattr(x, "dtype", None) or np.result_type(x)
        if not jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
            total += int(np.prod(np.shape(x))) * np.dtype(dtype).itemsize
    return total


def temp_bytes(compiled) -> int | None:
    """XLA's temporary buffers of a compiled program (its memory analysis), None where unknown."""
    stats = compiled.memory_analysis()
    return None if stats is None else getattr(stats, "temp_size_in_bytes", None)


# Compile, then time -----------------------------------------------------------------------

def compile_ahead(fn, *args, **compiler_options):
    """`(compiled, seconds)`: `fn` (jitted here unless it already is, with XLA `compiler_options`)
    traced, lowered and compiled for `args`, without running it."""
    if compiler_options or not hasattr(fn, "lower"):
        fn = jax.jit(fn, compiler_options=compiler_options or None)
    start = time.perf_counter()
    compiled = fn.lower(*args).compile()
    return compiled, time.perf_counter() - start


def timed(fn, *args):
    """`(outputs, seconds)` of `fn(*args)`, waited for with `jax.block_until_ready`."""
    start = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    return out, time.perf_counter() - start


def compile_and_run(fn, *args, **compiler_options):
    """`(outputs, compile_seconds, run_seconds)`: `compile_ahead`, then one `timed` call."""
    compiled, compile_s = compile_ahead(fn, *args, **compiler_options)
    out, run_s = timed(compiled, *args)
    return out, compile_s, run_s


def seed_keys(seed: int, num_seeds: int):
    """One key for 1 seed (no seed axis), else `num_seeds` keys split from `key(seed)`."""
    key = jax.random.key(seed)
    return key if num_seeds == 1 else jax.random.split(key, num_seeds)


def fresh_keys(keys, i: int):
    """Keys for call `i`: `keys` (one key or a batch) folded with `i`, same shapes."""
    if keys.ndim == 0:
        return jax.random.fold_in(keys, i)
    return jax.vmap(jax.random.fold_in, in_axes=(0, None))(keys, i)


def alternate(named_callables: dict, repeats: int, warmup: int = 1) -> dict:
    """Runs zero-argument callables in turn, A B A B ..., so drift on a shared machine hits all.

    Args:
      named_callables: ordered `{name: fn}`; each `fn()` returns a pytree of arrays that is
        waited for with `block_until_ready`. The first name is the reference for ratios.
      repeats: timed rounds; each round calls every callable once, in the given order.
      warmup: untimed rounds first (compile and caches), same order.

    Returns:
      dict with `times` (name -> list of `repeats` seconds), `median` (name -> median seconds)
      and `ratio` (name -> median over rounds of `times[name][r] / times[first][r]`; above 1
      means the first callable was that many times faster).
    """
    names = list(named_callables)
    for _ in range(warmup):
        for name in names:
            timed(named_callables[name])
    times = {name: [] for name in names}
    for _ in range(repeats):
        for name in names:
            times[name].append(timed(named_callables[name])[1])
    ref = times[names[0]]
    return {
        "times": times,
        "median": {name: statistics.median(t) for name, t in times.items()},
        "ratio": {name: statistics.median(a / b for a, b in zip(t, ref)) for name, t in times.items()},
    }


def compile_then_alternate(contenders: dict, keys, rounds: int) -> dict:
    """Compiles each jitted `fn(keys)` ahead of time, then alternates steady calls A B A B.

    Every timed round calls each compiled program once on fresh keys (`fresh_keys`), so no
    training run is spent on compiling and no call repeats another's randomness.

    Returns dict with `compile_s`, `times_s` (name -> rounds), `steady_s` (median), `ratio`
    (name -> median over rounds of its time / the first contender's), `compiled` and `last`
    (name -> the outputs of its last call).
    """
    compile_s, compiled, last, calls = {}, {}, {}, {}
    for name, fn in contenders.items():
        compiled[name], compile_s[name] = compile_ahead(fn, keys)
        print(f"    {name}: compile {compile_s[name]:.1f} s", flush=True)
        counter = iter(range(1, 10_000))

        def call(name=name):
            last[name] = compiled[name](fresh_keys(keys, next(counter)))
            return last[name]

        calls[name] = call
    timing = alternate(calls, rounds, warmup=0)
    return {"compile_s": compile_s, "times_s": timing["times"], "steady_s": timing["median"],
            "ratio": timing["ratio"], "compiled": compiled, "last": last}


# Learning curves and evaluation -----------------------------------------------------------

def first_crossing(curve, threshold: float, below: bool = False) -> int | None:
    """Index of the first entry of the 1-D `curve` at or above `threshold` (at or below it with
    `below`), or None if none is; NaN entries never cross."""
    curve = np.asarray(curve, dtype=np.float64)
    hits = np.flatnonzero(curve <= threshold if below else curve >= threshold)
    return int(hits[0]) if hits.size else None


def add_seed_axis(tree):
    """A leading seed axis of size 1 on every leaf (one unvmapped run looks like a batch of one)."""
    return jax.tree.map(lambda x: x[None], tree)


def concat_seeds(trees):
    """Pytrees with a leading seed axis, concatenated along it (to evaluate them in one program)."""
    return jax.tree.map(lambda *xs: jnp.concatenate(xs), *trees)


def split_seeds(values, counts) -> list:
    """`values` (leading axis sum(counts)) cut back into consecutive pieces of `counts` seeds."""
    ends = np.cumsum(counts)
    return [values[end - n:end] for n, end in zip(counts, ends)]


def evaluate_seeds(trainer, states, key, num_episodes: int) -> np.ndarray:
    """`(S,)` mean greedy evaluation return (`jaxpg.evaluate`) of each of `states`' S seeds; seed
    i plays with the i-th of `split(key, S)`, all seeds in one vmapped program."""
    seeds = jax.tree.leaves(states)[0].shape[0]
    fn = jax.jit(jax.vmap(lambda s, k: jaxpg.evaluate(trainer, s, k, num_episodes=num_episodes)))
    return np.asarray(fn(states, jax.random.split(key, seeds))).mean(axis=1)


def evaluate_params(env, env_params, act, params, key, num_episodes: int, sampled: bool = False) -> np.ndarray:
    """As `evaluate_seeds` for a peer's policy: `act(params, obs) -> actions` over `params` with a
    leading seed axis, on the same episode loop and keys as `jaxpg.evaluate`; with `sampled`,
    `act(params, obs, key)` draws its actions."""
    seeds = jax.tree.leaves(params)[0].shape[0]
    policy = (lambda p: lambda obs, k: act(p, obs, k)) if sampled else (lambda p: lambda obs, _: act(p, obs))
    fn = jax.jit(jax.vmap(lambda p, k: jaxpg.episode_returns(env, env_params, policy(p), k, num_episodes)))
    return np.asarray(fn(params, jax.random.split(key, seeds))).mean(axis=1)


# Results ------------------------------------------------------------------------------------

def write_results(name: str, payload: dict, out: str | os.PathLike | None = None) -> Path:
    """Writes `payload` as JSON to `out`, or to `benchmarks/results/NAME.json` if `out` is None.

    Writes a `.tmp` file first and renames it, so an interrupted run never leaves half a file.
    Returns the path written.
    """
    path = Path(out) if out else RESULTS_DIR / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=_to_json) + "\n")
    tmp.replace(path)
    return path


def _to_json(obj):
    # numpy / jax scalars and arrays that slip into payloads.
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def markdown_table(headers: list[str], rows: list[list]) -> str:
    """Formats a GitHub Markdown table; cells are `str()`-ed, so format numbers beforehand."""
    cells = [[str(c) for c in row] for row in rows]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in cells]
    return "\n".join(lines)


def fmt(x, spec: str = ".1f") -> str:
    """`format(x, spec)`, or "—" for None and NaN."""
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def fmt_rate(x) -> str:
    """A rate as "12.43 M" or "83.4 k"; "—" for None."""
    return "—" if x is None else f"{x / 1e6:,.2f} M" if x >= 1e6 else f"{x / 1e3:,.1f} k"


def fmt_bytes(x) -> str:
    """A size as "1.23 MB", "4.5 kB" or "276 B"; "—" for None."""
    if x is None:
        return "—"
    return f"{x / 1e6:,.2f} MB" if x >= 1e6 else f"{x / 1e3:,.1f} kB" if x >= 1e3 else f"{x:,.0f} B"


def pyplot():
    """`matplotlib.pyplot` on the Agg backend (figures go to files, no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def base_parser(description: str, quick: bool = True) -> argparse.ArgumentParser:
    """An argument parser with the flags every benchmark shares.

    `--quick` (unless `quick=False`): the small configuration, under two minutes on a 2-core CPU.
    `--out PATH`: where to write the JSON results (default `benchmarks/results/NAME.json`).
    """
    script = Path(sys.argv[0]).resolve()
    prog = f"python -m benchmarks.{script.stem}" if script.parent == RESULTS_DIR.parent else None
    parser = argparse.ArgumentParser(prog=prog, description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    if quick:
        parser.add_argument("--quick", action="store_true", help="small sizes; under two minutes on a 2-core CPU")
    parser.add_argument("--out", default=None, help="JSON output path (default: benchmarks/results/NAME.json)")
    return parser


# An older copy of a package -----------------------------------------------------------------

def load_package(path: str):
    """The package in folder `path` (an older copy of a package, for a before/after comparison in
    one process), imported under its folder's name."""
    folder = Path(path).resolve()
    sys.path.insert(0, str(folder.parent))
    try:
        return importlib.import_module(folder.name)
    finally:
        sys.path.remove(str(folder.parent))
