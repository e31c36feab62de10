"""How the test process compiles.

The unit and integration tiers train for a few iterations on a handful of environments, so they
wait on XLA's compiler, not on the programs it makes. They compile with LLVM's optimisations off
(`--xla_backend_optimization_level=0`) and with XLA:CPU's older kernel emitter
(`--xla_cpu_use_fusion_emitters=false`). `python -m benchmarks.compile_flags` measures the
trade (benchmarks/results/compile_flags.json, 2 cores, 2026-12-04): PPO's CartPole train program
compiles 2.0x faster and runs 0.30x as fast; REINFORCE's compiles 2.7x faster. The unit tier went
from 3 min 3 s to between 2 min 11 s and 2 min 58 s.

The older emitter vectorises a few reductions differently in a scan body than in a lone step, so
`iterate` and `step` then differ in the last bit; the unit test of that promise compiles its
programs with the emitter users get (tests/users_emitter.py).

The slow tier, whose learning runs are long, keeps XLA's defaults. Flags a user sets in XLA_FLAGS
are kept, and subprocesses inherit the setting.
"""

import os

import jaxlib

FAST_COMPILE = ["--xla_backend_optimization_level=0"]
# Unknown XLA flags abort the process, so the emitter flag is only passed to the jaxlib versions
# it was measured on (the range gymnax allows starts at 0.6).
if tuple(int(part) for part in jaxlib.__version__.split(".")[:2]) >= (0, 10):
    FAST_COMPILE.append("--xla_cpu_use_fusion_emitters=false")


def selects_slow_tests(markexpr: str) -> bool:
    return "slow" in markexpr and "not slow" not in markexpr


def pytest_configure(config):
    # Before anything has compiled: XLA reads XLA_FLAGS once, when the first program needs a
    # backend, which is after collection imports the test modules.
    flags = os.environ.get("XLA_FLAGS", "")
    if selects_slow_tests(config.getoption("markexpr") or ""):
        return
    added = [flag for flag in FAST_COMPILE if flag.split("=")[0] not in flags]
    os.environ["XLA_FLAGS"] = " ".join([flags, *added]).strip()
