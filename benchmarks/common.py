"""Small helpers shared by the benchmark scripts (see /BENCHMARKS.md for the protocol).

Every script: times a compiled function's first call apart from its steady state, runs the
contenders alternately in one process (A B A B ...) and reports medians and the median of the
pairwise ratios, writes every raw timing with the machine and versions to JSON, and prints a
short Markdown table.
"""

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import statistics
import time
from pathlib import Path

import jax

from jaxpg.run.results import cpu_model

RESULTS_DIR = Path(__file__).resolve().parent / "results"

_PACKAGES = ("jax", "jaxlib", "gymnax", "flax", "optax", "numpy")


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


def _timed_call(fn, *args) -> float:
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    return time.perf_counter() - start


def time_compiled(fn, key, *args) -> tuple[float, float]:
    """Times a jitted function's first call and its steady state.

    Args:
      fn: a jitted callable `fn(key, *args)` returning a pytree of arrays.
      key: a JAX PRNG key for the first call; the second call gets `fold_in(key, 1)`, so the
        steady-state run sees fresh randomness but the same shapes (no recompilation).
      *args: further arguments, identical for both calls.

    Returns:
      `(compile_seconds, run_seconds)`: `run_seconds` is the second call's wall time;
      `compile_seconds` is the first call's wall time (trace + compile + one run) minus
      `run_seconds`, so that a long-running program does not inflate its compile time. Both
      calls are waited for with `jax.block_until_ready`.
    """
    first_s = _timed_call(fn, key, *args)
    run_s = _timed_call(fn, jax.random.fold_in(key, 1), *args)
    return max(first_s - run_s, 0.0), run_s


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
            _timed_call(named_callables[name])
    times = {name: [] for name in names}
    for _ in range(repeats):
        for name in names:
            times[name].append(_timed_call(named_callables[name]))
    ref = times[names[0]]
    return {
        "times": times,
        "median": {name: statistics.median(t) for name, t in times.items()},
        "ratio": {
            name: statistics.median(a / b for a, b in zip(t, ref)) for name, t in times.items()
        },
    }


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


def base_parser(description: str) -> argparse.ArgumentParser:
    """An argument parser with the flags every benchmark shares.

    `--quick`: the small configuration that finishes in under two minutes on a 2-core CPU.
    `--out PATH`: where to write the JSON results (default `benchmarks/results/NAME.json`).
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--quick", action="store_true", help="small sizes; under two minutes on a 2-core CPU"
    )
    parser.add_argument(
        "--out", default=None, help="JSON output path (default: benchmarks/results/NAME.json)"
    )
    return parser
