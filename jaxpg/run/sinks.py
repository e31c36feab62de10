"""Optional metric sinks for `jaxpg.fit`: TensorBoard event files and Weights & Biases (offline).

Neither backend is imported unless its sink is built. A sink gets `open(record)` once (the run's
config and hyperparameters), `write(chunk, iterations)` after every chunk (name -> `(R, c)`
host arrays) and `close()` at the end.
"""

import os

import numpy as np


def _scalars(chunk: dict):
    return {name: np.asarray(v) for name, v in chunk.items() if np.asarray(v).ndim == 2}


class TensorBoard:
    """One TensorBoard run per seed under `DIR/tensorboard/run_K`, hyperparameters as text and hparams."""

    def __init__(self, out_dir: str):
        try:
            from tensorboardX import SummaryWriter
        except ImportError as error:
            raise ImportError("TensorBoard logging needs tensorboardX: pip install 'jaxpg[tensorboard]'") from error
        self._writer_class = SummaryWriter
        self.folder = os.path.join(out_dir, "tensorboard")
        self.writers = []

    def open(self, record: dict) -> None:
        hparams = record.get("hparams_per_run") or [{}] * record["num_runs"]
        for run in range(record["num_runs"]):
            writer = self._writer_class(os.path.join(self.folder, f"run_{run}"))
            options = {**record.get("config", {}), **hparams[run]}
            flat = {k: v for k, v in options.items() if isinstance(v, (int, float, str, bool))}
            writer.add_text("config", "\n".join(f"{k} = {v}" for k, v in sorted(flat.items())))
            writer.add_hparams(flat, {}, name=".")
            self.writers.append(writer)

    def write(self, chunk: dict, iterations: np.ndarray) -> None:
        steps = np.asarray(chunk["env_steps"])
        for name, values in _scalars(chunk).items():
            for run, writer in enumerate(self.writers):
                for j in range(values.shape[1]):
                    writer.add_scalar(name, float(values[run, j]), int(steps[run, j]))

    def close(self) -> None:
        for writer in self.writers:
            writer.close()


class WandB:
    """Weights & Biases in offline mode (sync later with `wandb sync DIR/wandb/...`): one W&B run per seed."""

    def __init__(self, out_dir: str, project: str = "jaxpg"):
        try:
            import wandb
        except ImportError as error:
            raise ImportError("W&B logging needs wandb: pip install 'jaxpg[wandb]'") from error
        self.wandb, self.out_dir, self.project, self.runs = wandb, out_dir, project, []

    def open(self, record: dict) -> None:
        hparams = record.get("hparams_per_run") or [{}] * record["num_runs"]
        for run in range(record["num_runs"]):
            self.runs.append(self.wandb.init(
                project=self.project, dir=self.out_dir, mode="offline", name=f"run_{run}", group=record.get("name"),
                config={**record.get("config", {}), **hparams[run]}, reinit="create_new",
            ))

    def write(self, chunk: dict, iterations: np.ndarray) -> None:
        scalars = _scalars(chunk)
        steps = np.asarray(chunk["env_steps"])
        for run, wandb_run in enumerate(self.runs):
            for j in range(len(iterations)):
                wandb_run.log({name: float(v[run, j]) for name, v in scalars.items()}, step=int(steps[run, j]))

    def close(self) -> None:
        for wandb_run in self.runs:
            wandb_run.finish()
