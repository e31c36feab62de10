"""How the test process compiles.

The unit and integration tiers train for a few iterations on a handful of environments, so they
wait on XLA's compiler, not on the programs it makes. They compile with LLVM's optimisations off
(`--xla_backend_optimization_level=0`): measured on PPO CartPole on 2 cores, a program compiles in
about half the time and runs about 3x slower. The slow tier, whose learning runs are long, keeps
XLA's defaults. Flags a user sets in XLA_FLAGS are kept, and subprocesses inherit the setting.
"""

import os

FAST_COMPILE = "--xla_backend_optimization_level=0"


def selects_slow_tests(markexpr: str) -> bool:
    return "slow" in markexpr and "not slow" not in markexpr


def pytest_configure(config):
    # Before anything has compiled: XLA reads XLA_FLAGS once, when the first program needs a
    # backend, which is after collection imports the test modules.
    flags = os.environ.get("XLA_FLAGS", "")
    if not selects_slow_tests(config.getoption("markexpr") or "") and "optimization_level" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} {FAST_COMPILE}".strip()
