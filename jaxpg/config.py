"""Checking a trainer's configuration before anything compiles.

Every check raises `ValueError` naming the field, the value given and the accepted range.
"""

import math
from collections.abc import Mapping

import jax
import numpy as np

# name -> (low, high, low_inclusive, high_inclusive)
HPARAM_RANGES = {
    "lr": (0.0, math.inf, False, False),
    "gamma": (0.0, 1.0, False, True),
    "gae_lambda": (0.0, 1.0, True, True),
    "clip_eps": (0.0, 1.0, False, False),
    "clip_eps_high": (0.0, math.inf, False, False),
    "ent_coef": (0.0, math.inf, True, False),
    "vf_coef": (0.0, math.inf, True, False),
    "max_grad_norm": (0.0, math.inf, False, False),
    "beta": (0.0, math.inf, True, False),
    "baseline_decay": (0.0, 1.0, True, False),
}


def _interval(low, high, low_inclusive, high_inclusive):
    return f"{'[' if low_inclusive else '('}{low}, {high}{']' if high_inclusive else ')'}"


def check_hparam(name: str, value) -> None:
    """Checks one numeric hyperparameter; traced values (under vmap or jit) are skipped."""
    if isinstance(value, jax.core.Tracer):
        return
    low, high, low_inc, high_inc = HPARAM_RANGES[name]
    try:
        values = [float(v) for v in np.ravel(np.asarray(value, np.float64))]
    except (TypeError, ValueError):
        raise ValueError(f"{name}={value!r} is not a number; accepted: {_interval(*HPARAM_RANGES[name])}")
    for v in values:
        above = v >= low if low_inc else v > low
        below = v <= high if high_inc else v < high
        if not (above and below and not math.isnan(v)):
            raise ValueError(f"{name}={v:g} is out of range; accepted: {_interval(*HPARAM_RANGES[name])}")


def check_positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}={value!r} must be a positive integer")
    return value


def check_choice(name: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(f"{name}={value!r} is unknown; accepted: {', '.join(map(str, choices))}")


def check_hidden_sizes(value) -> tuple:
    sizes = (value,) if isinstance(value, int) else tuple(value)
    if not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in sizes):
        raise ValueError(f"hidden_sizes={value!r} must be a sequence of positive integers")
    return sizes


def split_config(algo: str, config: Mapping, static_defaults: Mapping, hparam_defaults: Mapping):
    """Splits keyword options into static settings and numeric hyperparameters.

    Returns:
      `(static, hparams)`: dicts with every default filled in.
    """
    unknown = sorted(set(config) - set(static_defaults) - set(hparam_defaults))
    if unknown:
        raise ValueError(
            f"{algo}: unknown option(s) {unknown}; accepted settings: {sorted(static_defaults)}; "
            f"accepted hyperparameters: {sorted(hparam_defaults)}"
        )
    static = {k: config.get(k, v) for k, v in static_defaults.items()}
    hparams = {k: config.get(k, v) for k, v in hparam_defaults.items()}
    return static, hparams


def check_hparams_keys(algo: str, given: Mapping, accepted: Mapping) -> None:
    if not isinstance(given, Mapping):
        raise ValueError(f"{algo}: hparams must be a dict of numbers, got {type(given).__name__}")
    unknown = sorted(set(given) - set(accepted))
    if unknown:
        raise ValueError(
            f"{algo}: unknown hyperparameter(s) {unknown}; accepted: {sorted(accepted)}"
        )
