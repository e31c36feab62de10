"""Metrics streamed to disk chunk by chunk, so a run of any length holds one chunk in memory.

A run directory holds, for runs R (seeds x settings) and metric rows (kept iterations):

- `metrics/NAME.f32`: raw float32 (or the metric's dtype, see `metrics/index.json`), row-major
  `(rows, R, ...)`, appended to after every chunk;
- `metrics.csv`: the scalar metrics in long form, one line per (iteration, run), appended
  likewise, floats with 9 significant digits (exact for float32);
- `metrics.npz`: `(R, rows)` arrays, written from the `.f32` files at the end of a run.

Resuming truncates both to the row count a checkpoint recorded, so a run killed between a
chunk's metrics and its checkpoint leaves no duplicate and no gap.
"""

import json
import os
import shutil

import numpy as np

INDEX = "index.json"


class MetricsWriter:
    """Appends chunks of per-run metrics to a run directory's files."""

    def __init__(self, out_dir: str, num_runs: int):
        self.out_dir, self.num_runs = out_dir, num_runs
        self.folder = os.path.join(out_dir, "metrics")
        os.makedirs(self.folder, exist_ok=True)
        self.csv_path = os.path.join(out_dir, "metrics.csv")
        index_path = os.path.join(self.folder, INDEX)
        self.index = json.load(open(index_path)) if os.path.exists(index_path) else None

    @property
    def names(self) -> list[str]:
        return sorted(self.index["metrics"]) if self.index else []

    def _start(self, chunk: dict) -> None:
        self.index = {
            "num_runs": self.num_runs,
            "metrics": {k: {"dtype": str(v.dtype), "shape": list(v.shape[2:])} for k, v in chunk.items()},
        }
        with open(os.path.join(self.folder, INDEX), "w") as f:
            json.dump(self.index, f)
        with open(self.csv_path, "w") as f:
            f.write(",".join(["iteration", "run", *self.csv_names]) + "\n")

    @property
    def csv_names(self) -> list[str]:
        return [n for n in self.names if not self.index["metrics"][n]["shape"]]

    def append(self, chunk: dict, iterations: np.ndarray) -> None:
        """Appends `chunk` (name -> `(R, c, ...)` host arrays) for the `c` given iterations."""
        if self.index is None:
            self._start(chunk)
        for name in self.names:
            rows = np.ascontiguousarray(np.swapaxes(np.asarray(chunk[name]), 0, 1))  # (c, R, ...)
            with open(os.path.join(self.folder, f"{name}.f32"), "ab") as f:
                f.write(rows.astype(self.index["metrics"][name]["dtype"]).tobytes())
        c = len(iterations)
        columns = [np.repeat(iterations, self.num_runs), np.tile(np.arange(self.num_runs), c)]
        columns += [np.swapaxes(np.asarray(chunk[n]), 0, 1).reshape(-1).astype(np.float64) for n in self.csv_names]
        with open(self.csv_path, "a") as f:
            np.savetxt(f, np.column_stack(columns), fmt=["%d", "%d"] + ["%.9g"] * len(self.csv_names), delimiter=",")

    def position(self) -> dict:
        """Where the files end now: what a checkpoint records to truncate back to."""
        csv_bytes = os.path.getsize(self.csv_path) if os.path.exists(self.csv_path) else 0
        return {"rows": self.rows(), "csv_bytes": csv_bytes}

    def rows(self) -> int:
        if not self.index:
            return 0
        name = self.names[0]
        return os.path.getsize(os.path.join(self.folder, f"{name}.f32")) // self._row_bytes(name)

    def _row_bytes(self, name: str) -> int:
        meta = self.index["metrics"][name]
        return self.num_runs * int(np.prod(meta["shape"], dtype=int)) * np.dtype(meta["dtype"]).itemsize

    def truncate(self, position: dict) -> None:
        """Cuts every file back to `position` (from `position()`), dropping rows written later."""
        if not self.index:
            return
        for name in self.names:
            with open(os.path.join(self.folder, f"{name}.f32"), "r+b") as f:
                f.truncate(position["rows"] * self._row_bytes(name))
        with open(self.csv_path, "r+b") as f:
            f.truncate(position["csv_bytes"])


def read_metrics(out_dir: str) -> dict:
    """Every metric of a run directory as `(R, rows, ...)` arrays, from the streamed files."""
    folder = os.path.join(out_dir, "metrics")
    index = json.load(open(os.path.join(folder, INDEX)))
    num_runs, arrays = index["num_runs"], {}
    for name, meta in index["metrics"].items():
        flat = np.fromfile(os.path.join(folder, f"{name}.f32"), dtype=meta["dtype"])
        arrays[name] = np.swapaxes(flat.reshape((-1, num_runs, *meta["shape"])), 0, 1)
    return arrays


def write_npz(out_dir: str) -> dict:
    """Writes `metrics.npz` from the streamed files and returns its arrays."""
    arrays = read_metrics(out_dir)
    np.savez(os.path.join(out_dir, "metrics.npz"), **arrays)
    return arrays


def remove(out_dir: str) -> None:
    """Deletes a run directory's metrics files (before a fresh run writes its own)."""
    shutil.rmtree(os.path.join(out_dir, "metrics"), ignore_errors=True)
    for name in ("metrics.csv", "metrics.npz"):
        if os.path.exists(os.path.join(out_dir, name)):
            os.remove(os.path.join(out_dir, name))
