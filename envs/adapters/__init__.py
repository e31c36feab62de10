"""Other JAX environment suites on gymnax's API: `envs.make("SUITE:ID", **options)`.

Each suite has a module here whose `make(name, **options)` returns `(env, env_params)`: an
`AutoResetEnv` (envs/autoreset.py) whose `step_env` makes one transition with the suite's own
step function and splits the suite's end signal into `terminated` and `truncated`, so
`info["final_observation"]` and the auto-reset are the same as for `envs`' own environments.
A suite's package is imported only when one of its ids is made; each is an optional extra
(`pip install -e ".[brax]"`, or `".[suites]"` for all).
"""

import importlib
import importlib.util
from dataclasses import dataclass


@dataclass(frozen=True)
class Suite:
    package: str  # the import name the suite's package installs
    extra: str  # the pyproject extra that installs it
    example: str  # an id to show in messages


SUITES = {
    "brax": Suite("brax", "brax", "brax:inverted_pendulum"),
    "playground": Suite("mujoco_playground", "playground", "playground:CartpoleBalance"),
    "craftax": Suite("craftax", "craftax", "craftax:Craftax-Classic-Symbolic-v1"),
    "jumanji": Suite("jumanji", "jumanji", "jumanji:Snake-v1"),
    "xminigrid": Suite("xminigrid", "xminigrid", "xminigrid:MiniGrid-Empty-6x6"),
    "navix": Suite("navix", "navix", "navix:Navix-Empty-5x5-v0"),
}


def installed() -> tuple[str, ...]:
    """The suites whose packages this Python can import (nothing is imported to find out)."""
    return tuple(name for name, suite in SUITES.items() if importlib.util.find_spec(suite.package) is not None)


def make(env_id: str, **options):
    """`(env, env_params)` for `"SUITE:NAME"`; a one-line error for an unknown suite or name, or a
    suite that is not installed."""
    suite_name, _, name = env_id.partition(":")
    if suite_name not in SUITES:
        raise ValueError(f"unknown suite {suite_name!r} in {env_id!r}; accepted: {', '.join(SUITES)} "
                         f"(for example {SUITES['brax'].example})")
    suite = SUITES[suite_name]
    if importlib.util.find_spec(suite.package) is None:
        raise ValueError(f"{env_id}: the {suite_name} suite is not installed; "
                         f"install it with pip install 'jaxpg[{suite.extra}]'")
    if not name:
        raise ValueError(f"{env_id!r} names no environment; accepted: {suite_name}:NAME, e.g. {suite.example}")
    return importlib.import_module(f"envs.adapters.{suite_name}").make(name, **options)
