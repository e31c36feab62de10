"""XLA options for programs that run once per run, where compiling is all the time they take.

A run's initialisation (networks, optimiser, first reset) executes once, for milliseconds, yet on
a CPU XLA spends seconds optimising it: every random draw and every orthogonal initialiser is its
own kernel, and LLVM optimises each one. With LLVM at -O0 and XLA:CPU's older kernel emitter (the
options the test tiers use everywhere, tests/conftest.py) PPO's CartPole initialisation compiles
about 3x faster (`benchmarks/latency.py`). The training chunks keep XLA's defaults: they run for
the whole budget. On a GPU or TPU the options do not apply and XLA's defaults stand.

The values it computes can differ from a default-options compile in the last bit (LLVM fuses
multiply-adds differently), so every path that initialises a run (`Trainer.init`, `fit`) uses the
same options and they agree bit for bit.
"""

import jax

_CPU_RUN_ONCE = {"xla_backend_optimization_level": 0, "xla_cpu_use_fusion_emitters": False}


def run_once(platform: str | None = None) -> dict | None:
    """Compiler options for a program that runs once on `platform` (default: JAX's default
    backend): the fast-compiling ones on a CPU, None (XLA's defaults) elsewhere."""
    platform = platform or jax.default_backend()
    return dict(_CPU_RUN_ONCE) if platform == "cpu" else None
