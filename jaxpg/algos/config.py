"""Declaring a trainer's options once.

Every option of an algorithm is a field of its frozen `Config` dataclass, declared with
`setting(...)` (structural and static: sizes, choices, flags) or `hparam(...)` (numeric: a traced
float32 leaf of `TrainState.hparams` that `jax.vmap` can sweep). The declaration holds the default,
the accepted values and a one-line doc; checks, `Trainer.hparams`, `jaxpg train --help-algo`,
`summary.json` and the trainers' docstrings all come from it.

Every check raises `ValueError` naming the field, the value given and the accepted values, when
the config is built: before anything compiles.
"""

import dataclasses
import difflib
import math
from collections.abc import Mapping
from typing import Any, ClassVar

import jax
import numpy as np

from jaxpg.core.distributions import DISTRIBUTIONS, check_init_std
from jaxpg.core.networks import ACTIVATIONS, POLICIES
from jaxpg.core.recurrent import CELLS

LR_SCHEDULES = ("constant", "linear", "cosine", "exponential")


@dataclasses.dataclass(frozen=True)
class Spec:
    """What an option accepts.

    Attributes:
      doc: one line for `--help-algo` and the docstrings.
      traced: a hyperparameter (float32 leaf, sweepable) rather than a static setting.
      kind: `float`, `int`, `bool`, `choice` or `sizes` (a tuple of positive integers).
      interval: `(low, high, low_inclusive, high_inclusive)` for `float` and `int`.
      choices: the accepted values of a `choice`.
      optional: None is accepted too (its meaning is in `doc`).
    """

    doc: str
    traced: bool = False
    kind: str = "float"
    interval: tuple | None = None
    choices: tuple | None = None
    optional: bool = False

    def accepted(self) -> str:
        if self.kind == "choice":
            text = ", ".join(map(str, self.choices))
        elif self.kind == "bool":
            text = "True, False"
        elif self.kind == "sizes":
            text = "a tuple of positive integers"
        elif self.kind == "int":
            text = f"an integer >= {self.interval[0]}"
        else:
            low, high, low_inclusive, high_inclusive = self.interval
            text = f"{'[' if low_inclusive else '('}{float(low)}, {float(high)}{']' if high_inclusive else ')'}"
        return text + (" or None" if self.optional else "")

    def check(self, name: str, value):
        """Returns `value` normalised (sizes as a tuple) or raises `ValueError`."""
        if value is None and self.optional:
            return None
        if self.kind == "choice":
            if value not in self.choices:
                raise ValueError(f"{name}={value!r} is unknown; accepted: {self.accepted()}")
        elif self.kind == "bool":
            if not isinstance(value, (bool, np.bool_)):
                raise ValueError(f"{name}={value!r} must be True or False")
            value = bool(value)
        elif self.kind == "sizes":
            sizes = (value,) if isinstance(value, int) else value
            if not isinstance(sizes, (tuple, list)) or not all(
                isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in sizes
            ):
                raise ValueError(f"{name}={value!r} must be a sequence of positive integers")
            value = tuple(sizes)
        elif self.kind == "int":
            low = self.interval[0]
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                rule = "a positive integer" if low == 1 else f"an integer >= {low}"
                raise ValueError(f"{name}={value!r} must be {rule}")
            value = int(value)
        else:
            check_number(name, value, self)
        return value


def check_number(name: str, value, spec: Spec) -> None:
    """Checks a float option, elementwise for arrays; traced values (under jit/vmap) pass."""
    if isinstance(value, jax.core.Tracer):
        return
    try:
        values = np.ravel(np.asarray(value, np.float64))
    except (TypeError, ValueError):
        raise ValueError(f"{name}={value!r} is not a number; accepted: {spec.accepted()}") from None
    low, high, low_inclusive, high_inclusive = spec.interval
    for v in values.tolist():
        above = v >= low if low_inclusive else v > low
        below = v <= high if high_inclusive else v < high
        if not (above and below and not math.isnan(v)):
            raise ValueError(f"{name}={v:g} is out of range; accepted: {spec.accepted()}")


def setting(default, doc: str, kind: str = "int", *, minimum: int = 1, choices=None, optional=False):
    """A static option: part of the program's structure; changing it recompiles."""
    interval = {"int": (minimum, math.inf, True, False), "float": (0.0, math.inf, False, False)}.get(kind)
    spec = Spec(doc, False, kind, interval, tuple(choices) if choices else None, optional)
    return dataclasses.field(default=default, metadata={"spec": spec})


def hparam(default, doc: str, low=0.0, high=math.inf, low_inclusive=False, high_inclusive=False, optional=False):
    """A numeric hyperparameter: a float32 leaf of `TrainState.hparams`, sweepable with vmap."""
    spec = Spec(doc, True, "float", (low, high, low_inclusive, high_inclusive), None, optional)
    return dataclasses.field(default=default, metadata={"spec": spec})


def redeclare(config_class, name: str, default, doc: str | None = None):
    """`config_class`'s option `name` with a new default (and doc), for a subclass."""
    spec = config_class.specs()[name]
    return dataclasses.field(
        default=default, metadata={"spec": dataclasses.replace(spec, doc=doc or spec.doc)}
    )


@dataclasses.dataclass(frozen=True)
class Declared:
    """A frozen dataclass whose fields are declared with `setting`/`hparam`: building one checks
    every field against its `Spec` (then `validate`), and its help, table and docstring come from
    the same declaration. `Config` (a trainer's options) and `jaxpg.run.options.RunOptions` (a
    run's) are the two."""

    # What error messages call the owner of the options (an algorithm's name, "run").
    owner: ClassVar[str] = "options"

    def __post_init__(self):
        for name, spec in self.specs().items():
            object.__setattr__(self, name, spec.check(name, getattr(self, name)))
        self.validate()

    def validate(self) -> None:
        """Checks that involve several options; raises `ValueError` naming them."""

    @classmethod
    def owner_name(cls) -> str:
        return cls.owner

    @classmethod
    def specs(cls) -> dict[str, Spec]:
        return {f.name: f.metadata["spec"] for f in dataclasses.fields(cls)}

    @classmethod
    def hparam_names(cls) -> tuple[str, ...]:
        return tuple(name for name, spec in cls.specs().items() if spec.traced)

    @classmethod
    def from_options(cls, options: Mapping):
        """Builds the instance from keyword options, refusing unknown names."""
        specs = cls.specs()
        unknown = sorted(set(options) - set(specs))
        if unknown:
            hints = [
                f"{name!r} -> {close[0]!r}"
                for name in unknown if (close := difflib.get_close_matches(name, specs, n=1))
            ]
            accepted = f"accepted settings: {sorted(n for n, s in specs.items() if not s.traced)}"
            if cls.hparam_names():
                accepted += f"; accepted hyperparameters: {sorted(cls.hparam_names())}"
            raise ValueError(
                f"{cls.owner_name()}: unknown option(s) {unknown}"
                + (f" (did you mean {', '.join(hints)}?)" if hints else "")
                + f"; {accepted}"
            )
        return cls(**options)

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def table(cls) -> str:
        """The options as a Markdown table: name, kind, default, accepted, doc."""
        rows = ["| option | kind | default | accepted | what |", "|---|---|---|---|---|"]
        for field in dataclasses.fields(cls):
            spec = field.metadata["spec"]
            kind = "hyperparameter (traced)" if spec.traced else "setting (static)"
            rows.append(f"| `{field.name}` | {kind} | `{field.default!r}` | {spec.accepted()} | {spec.doc} |")
        return "\n".join(rows)

    @classmethod
    def docstring(cls) -> str:
        """The options as docstring lines (appended to each trainer's docstring)."""
        lines = ["", "Options (from the algorithm's `Config`; `jaxpg train --help-algo` prints them):", ""]
        for field in dataclasses.fields(cls):
            spec = field.metadata["spec"]
            tag = "traced" if spec.traced else "static"
            lines.append(f"  {field.name} ({tag}, default {field.default!r}; {spec.accepted()}): {spec.doc}")
        return "\n".join(lines)


@dataclasses.dataclass(frozen=True)
class Config(Declared):
    """Options every algorithm has. Subclasses add theirs and override `validate`."""

    algo: ClassVar[str] = "base"

    @classmethod
    def owner_name(cls) -> str:
        return cls.algo

    num_envs: int = setting(16, "parallel environments")
    num_steps: int = setting(128, "environment steps per environment per iteration")
    total_timesteps: int = setting(500_000, "environment steps of the whole run (per seed)")
    max_episode_steps: int | None = setting(
        None, "training episodes are truncated after this many steps (None: the env's own limit); PPO "
        "bootstraps the cut from its value, so its target stays the same", optional=True,
    )
    hidden_sizes: tuple = setting((64, 64), "hidden layer sizes of the policy and value MLPs", "sizes")
    activation: str = setting("tanh", "hidden activation", "choice", choices=tuple(ACTIVATIONS))
    policy: str = setting(
        "mlp", "policy network: mlp; linear (a = K obs, no bias, K from 0; continuous actions); or "
        "transformer (jaxpg.core.transformer's causal transformer over a token env's buffer, value too); or "
        "cnn (convolutions over the observation's image-like leaves, height x width x channels, then the MLP; "
        "value too); or gru / lstm (a recurrent policy and value: the MLP of hidden_sizes, the cell, then "
        "rnn_head_sizes; its carry is reset at every episode boundary)",
        "choice", choices=POLICIES,
    )
    transformer_dim: int = setting(64, "policy='transformer': embedding width (a multiple of transformer_heads)")
    transformer_layers: int = setting(2, "policy='transformer': attention blocks")
    transformer_heads: int = setting(4, "policy='transformer': attention heads per block")
    cnn_channels: tuple = setting((32, 32), "policy='cnn': output channels of each convolution", "sizes")
    cnn_kernel: int = setting(3, "policy='cnn': square kernel size of every convolution")
    cnn_stride: int = setting(1, "policy='cnn': stride of every convolution (2 halves each image side)")
    rnn_hidden_size: int = setting(128, "policy='gru' or 'lstm': the cell's hidden units")
    rnn_head_sizes: tuple = setting((64,), "policy='gru' or 'lstm': hidden layers after the cell", "sizes")
    distribution: str | None = setting(
        None, "action distribution; None picks categorical for Discrete, gaussian for Box",
        "choice", choices=DISTRIBUTIONS, optional=True,
    )
    init_std: float = setting(
        1.0, "initial standard deviation of Gaussian policies; a learned one starts within [exp(-5), exp(2)], "
        "the bounds of its log_std", "float",
    )
    normalize_observations: bool = setting(False, "standardise observations by running statistics", "bool")
    lr_schedule: str = setting(
        "constant", "learning-rate schedule from lr to lr_end over all updates", "choice", choices=LR_SCHEDULES
    )
    lr: float = hparam(1e-3, "Adam learning rate (the schedule's start)")
    lr_end: float = hparam(0.0, "learning rate at the last update (linear, cosine, exponential)", low_inclusive=True)
    max_grad_norm: float = hparam(1.0, "gradients are clipped to this global norm")

    def validate(self) -> None:
        """Checks that involve several options; raises `ValueError` naming them."""
        if self.transformer_dim % self.transformer_heads:
            raise ValueError(
                f"transformer_dim={self.transformer_dim} must be a multiple of transformer_heads="
                f"{self.transformer_heads}"
            )
        if self.lr_schedule == "exponential":
            check_number("lr_end", self.lr_end, Spec("", True, "float", (0.0, math.inf, False, False)))
        check_init_std(self.init_std, self.distribution)
        if self.policy not in CELLS:  # the recurrent sizes would otherwise be silently ignored
            defaults = {field.name: field.default for field in dataclasses.fields(self)}
            for name in ("rnn_hidden_size", "rnn_head_sizes"):
                if getattr(self, name) != defaults[name]:
                    raise ValueError(
                        f"{name}={getattr(self, name)!r} sizes a recurrent network, and policy={self.policy!r} has "
                        f"none; accepted: policy='gru' or 'lstm' with it, or {name} left at its default"
                    )

    def check_hparams(self, hparams: Mapping) -> None:
        """Checks a user's hyperparameter overrides: names, then every concrete value."""
        if not isinstance(hparams, Mapping):
            raise ValueError(f"{self.algo}: hparams must be a dict of numbers, got {type(hparams).__name__}")
        specs = self.specs()
        unknown = sorted(set(hparams) - set(self.hparam_names()))
        if unknown:
            raise ValueError(
                f"{self.algo}: unknown hyperparameter(s) {unknown}; accepted: {sorted(self.hparam_names())}"
            )
        for name, value in hparams.items():
            check_number(name, value, specs[name])
        if self.lr_schedule == "exponential" and "lr_end" in hparams:
            check_number("lr_end", hparams["lr_end"], Spec("", True, "float", (0.0, math.inf, False, False)))

    def hparam_values(self) -> dict[str, float]:
        """The hyperparameters as the floats `TrainState.hparams` starts from: an optional one left
        at None (a default that follows another hyperparameter) is NaN, resolved where traced."""
        return {k: math.nan if getattr(self, k) is None else getattr(self, k) for k in self.hparam_names()}

    @property
    def steps_per_iteration(self) -> int:
        return self.num_envs * self.num_steps

    @property
    def total_iterations(self) -> int:
        """Iterations (rollout and update) of the whole run."""
        return max(1, self.total_timesteps // self.steps_per_iteration)

    @property
    def updates_per_iteration(self) -> int:
        """Optimiser steps per iteration; learning-rate schedules count these."""
        return 1
