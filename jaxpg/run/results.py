"""Describing a run: versions, device, learning-curve plots."""

import contextlib
import os
import platform
import warnings
from importlib import metadata

import jax
import numpy as np


def versions() -> dict:
    names = ("jaxpg", "jax", "jaxlib", "flax", "optax", "gymnax", "distrax", "chex")
    found = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    found["python"] = platform.python_version()
    return found


def device_description() -> str:
    devices = jax.devices()
    kind = devices[0].device_kind
    if devices[0].platform == "cpu":
        kind = f"{cpu_model()} ({os.cpu_count()} cores)"
    return f"{len(devices)} x {devices[0].platform}: {kind}"


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (or what `platform` knows)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


@contextlib.contextmanager
def _no_episode_yet():
    """Silences numpy's warnings for iterations where no seed has finished an episode yet (their
    return is NaN, a gap in the curve): long episodes (brax, Playground) start that way."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def plot_learning_curve(path: str, metrics: dict, title: str) -> None:
    """Mean episode return over seeds against env steps, with min-max and +-1 std bands."""
    from matplotlib.figure import Figure  # not pyplot: 0.5 s less to import, no global figure state

    returns = np.asarray(metrics["episode_return"])
    steps = np.asarray(metrics["env_steps"])[0]
    with _no_episode_yet():
        mean, std = np.nanmean(returns, axis=0), np.nanstd(returns, axis=0)
        low, high = np.nanmin(returns, axis=0), np.nanmax(returns, axis=0)
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    ax.fill_between(steps, low, high, alpha=0.15, label="min-max")
    ax.fill_between(steps, mean - std, mean + std, alpha=0.3, label="mean +- std")
    ax.plot(steps, mean, label=f"mean of {returns.shape[0]} seeds")
    ax.set_xlabel("environment steps (per seed)")
    ax.set_ylabel("episode return (training episodes)")
    ax.set_title(title)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def plot_runs(path: str, runs: list) -> None:
    """Overlays runs' learning curves: mean episode return over seeds, +-1 std band, on env steps.

    Args:
      path: PNG to write.
      runs: `(label, metrics)` pairs, metrics as `jaxpg.fit` returns them (`(R, rows)` arrays).
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    for label, metrics in runs:
        returns = np.asarray(metrics["episode_return"], np.float64)
        steps = np.asarray(metrics["env_steps"])[0]
        with _no_episode_yet():
            mean, std = np.nanmean(returns, axis=0), np.nanstd(returns, axis=0)
        ax.plot(steps, mean, label=f"{label} ({returns.shape[0]} seeds)")
        ax.fill_between(steps, mean - std, mean + std, alpha=0.2)
    ax.set_xlabel("environment steps (per seed)")
    ax.set_ylabel("episode return (training episodes)")
    ax.legend(loc="best", fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
