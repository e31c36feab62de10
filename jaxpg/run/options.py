"""The options of a run, declared once: how `fit` drives the chunks, keeps metrics and checkpoints,
lays the runs over devices and reports progress.

`fit`, `sweep`, `pbt` and the CLI all read this one declaration: `fit(..., **options)`, `sweep(...,
**options)` and `pbt(..., **options)` check their keyword options against it, and the `jaxpg
train`/`sweep`/`pbt` flags and their `--help` are generated from it (`add_flags`). The machinery
is the trainer's (`Declared`).
"""

import argparse
import dataclasses

from jaxpg.algos.config import Declared, setting
from jaxpg.run.sharding import SHARD_MODES

ON_NONFINITE = ("skip", "stop")


@dataclasses.dataclass(frozen=True)
class RunOptions(Declared):
    """How a run is driven; nothing here changes what a run computes, only how it is cut into
    programs, kept and shown (a fixed layout's bits are the same for every choice)."""

    owner = "run"

    chunk_size: int | None = setting(
        None, "iterations per compiled call (None: about 2% of the run, dividing checkpoint_every)", optional=True
    )
    metrics_every: int = setting(1, "keep every k-th iteration's metrics (and the last)")
    checkpoint_every: int | None = setting(
        None, "save a checkpoint every this many iterations (None: at the end only); needs out", optional=True
    )
    keep_checkpoints: int = setting(3, "checkpoints kept on disk (the newest)")
    on_nonfinite: str = setting(
        "skip", "a NaN/inf update is skipped and flagged (skip), or stops the run keeping the state before it (stop)",
        "choice", choices=ON_NONFINITE,
    )
    shard: str = setting(
        "runs", "lay the runs over the devices (runs), or split each run's environments over them (envs)",
        "choice", choices=SHARD_MODES,
    )
    progress: bool = setting(True, "show a progress bar (iteration, env steps/s, latest return, ETA)", "bool")
    tensorboard: bool = setting(False, "also write TensorBoard event files to out (jaxpg[tensorboard])", "bool")
    wandb: bool = setting(False, "also log to Weights & Biases, offline, in out (jaxpg[wandb])", "bool")

    def validate(self) -> None:
        if self.checkpoint_every and self.chunk_size and self.checkpoint_every % self.chunk_size:
            raise ValueError(f"chunk_size={self.chunk_size} must divide checkpoint_every={self.checkpoint_every}")

    def sinks(self, out: str | None) -> list:
        """The logging backends these options ask for, writing into `out`."""
        if not (self.tensorboard or self.wandb):
            return []
        if out is None:
            raise ValueError("tensorboard=True and wandb=True write into the run folder; they need out")
        from jaxpg.run import sinks  # the backends load only when asked for

        return ([sinks.TensorBoard(out)] if self.tensorboard else []) + ([sinks.WandB(out)] if self.wandb else [])


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_flags(parser: argparse.ArgumentParser, names=None) -> None:
    """Adds a flag per run option (all, or those in `names`), its help from the declaration: a
    boolean that defaults to True becomes `--no-NAME`, one that defaults to False `--NAME`."""
    for field in dataclasses.fields(RunOptions):
        if names is not None and field.name not in names:
            continue
        spec = field.metadata["spec"]
        doc = spec.doc.replace("%", "%%")  # argparse formats help strings with %
        if spec.kind == "bool":
            negate = field.default is True
            parser.add_argument(("--no-" + field.name.replace("_", "-")) if negate else flag(field.name),
                                dest=field.name, action="store_false" if negate else "store_true",
                                help=f"turn off: {doc}" if negate else doc)
        elif spec.kind == "choice":
            parser.add_argument(flag(field.name), dest=field.name, default=field.default, choices=spec.choices,
                                help=f"{doc} (default {field.default})")
        else:
            parser.add_argument(flag(field.name), dest=field.name, type=int, default=field.default, metavar="N",
                                help=f"{doc}; {spec.accepted()}")


def from_args(args: argparse.Namespace, names=None) -> dict:
    """The run options among `args` (those `add_flags` added), as keyword options."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(RunOptions)
            if (names is None or f.name in names) and hasattr(args, f.name)}
