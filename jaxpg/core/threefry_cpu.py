"""Threefry lowered as straight-line code on the CPU, as JAX lowers it on every other platform.

Every random draw (`split`, `fold_in`, `uniform`, `normal`, `categorical`) hashes with
Threefry-2x32: 20 rounds of add, rotate and xor. JAX emits those rounds unrolled everywhere but on
the CPU, where it emits a 5-step `while` loop per call site. XLA:CPU compiles each such loop into
several kernels of its own, so a training program with a dozen random call sites spends seconds
compiling loops: PPO's CartPole chunk compiled in 9.4 s with the loops and 6.3 s unrolled (one
fused kernel per call site), and ran no slower (`benchmarks/latency.py`; 2 cores). The function
is the same one JAX uses on GPUs and TPUs, so every random bit is unchanged; only the program
that computes them differs.

`install()` swaps the CPU lowering for the whole process (it is what a jaxpg `Trainer` does when
built); it does nothing on a JAX that no longer has these internals, nor where `XLA_FLAGS` selects
XLA:CPU's older kernel emitter, which compiles the loop form faster (the unit tier ran 20 s
longer, 3 min 13 s against 2 min 54 s, with the unrolled form under the tiers' options).
"""

import os

_installed = False


def install() -> None:
    """Registers the unrolled Threefry lowering for the CPU, once per process."""
    global _installed
    if _installed:
        return
    _installed = True
    if "--xla_cpu_use_fusion_emitters=false" in os.environ.get("XLA_FLAGS", ""):
        return  # XLA:CPU's older emitter compiles the loops faster (the test tiers' setting)
    use_unrolled(True)


def use_unrolled(unrolled: bool) -> bool:
    """Lowers Threefry on the CPU unrolled (True) or as JAX's loop (False) in every program lowered
    from now on (`benchmarks/compile_flags.py` compares them); False if JAX lacks the internals."""
    try:
        from jax._src.interpreters import mlir
        from jax._src.random import threefry2x32
        unrolled_rule = threefry2x32._threefry2x32_lowering_rule
        loop_rule = threefry2x32._threefry2x32_cpu_lowering_rule
    except (ImportError, AttributeError):  # JAX moved its internals: keep its own lowering
        return False
    # As JAX registers each: the unrolled form out of line (as on GPUs), the loop inline (its CPU rule).
    mlir.register_lowering(threefry2x32.threefry2x32_p, unrolled_rule if unrolled else loop_rule, platform="cpu",
                           inline=not unrolled)
    return True
