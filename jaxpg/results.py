"""Writing a training run to disk: metrics, summary, learning curve and checkpoint."""

import csv
import json
import os
import platform
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


def write_metrics(out_dir: str, metrics: dict) -> None:
    """`metrics.npz` (arrays `(seeds, iterations)`) and a long-form `metrics.csv`."""
    arrays = {k: np.asarray(v) for k, v in metrics.items()}
    np.savez(os.path.join(out_dir, "metrics.npz"), **arrays)
    names = sorted(arrays)
    num_seeds, num_iterations = arrays[names[0]].shape[:2]
    with open(os.path.join(out_dir, "metrics.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["seed", "iteration", *names])
        for seed in range(num_seeds):
            for it in range(num_iterations):
                writer.writerow([seed, it, *(_scalar(arrays[n][seed, it]) for n in names)])


def _scalar(x):
    x = np.asarray(x)
    return x.item() if x.size == 1 else json.dumps(x.tolist())


def plot_learning_curve(path: str, metrics: dict, title: str) -> None:
    """Mean episode return over seeds against env steps, with min-max and +-1 std bands."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    returns = np.asarray(metrics["episode_return"])
    steps = np.asarray(metrics["env_steps"])[0]
    mean, std = np.nanmean(returns, axis=0), np.nanstd(returns, axis=0)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.fill_between(steps, np.nanmin(returns, axis=0), np.nanmax(returns, axis=0), alpha=0.15, label="min-max")
    ax.fill_between(steps, mean - std, mean + std, alpha=0.3, label="mean +- std")
    ax.plot(steps, mean, label=f"mean of {returns.shape[0]} seeds")
    ax.set_xlabel("environment steps (per seed)")
    ax.set_ylabel("episode return (training episodes)")
    ax.set_title(title)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def save_checkpoint(path: str, state) -> None:
    """Saves the (seed-batched) `TrainState` with orbax; restore with `load_checkpoint`."""
    import orbax.checkpoint as ocp

    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(os.path.abspath(path), state, force=True)


def load_checkpoint(path: str, like):
    """Restores a `TrainState` saved by `save_checkpoint`; `like` gives its structure."""
    import orbax.checkpoint as ocp

    with ocp.StandardCheckpointer() as checkpointer:
        return checkpointer.restore(os.path.abspath(path), like)
