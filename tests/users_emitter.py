"""Compiling with the kernel emitter users get, for the tests of bit-for-bit promises.

tests/conftest.py turns XLA:CPU's fusion emitter off to compile faster. The older emitter it falls
back to vectorises a few reductions differently inside a scan than in a lone step, so chunks then
differ from the whole run in the last bit. The promise is about what users run, so its tests
compile their programs with the default emitter.
"""

import jax

OPTIONS = {"xla_cpu_use_fusion_emitters": True}


def compile_as_users_do(fn, *args, static_argnums=()):
    return jax.jit(fn, static_argnums=static_argnums).lower(*args).compile(OPTIONS)
