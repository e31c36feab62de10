"""What makes a run start and finish sooner changes nothing it computes (issue: launch to result).

- gymnax's API modules load without gymnax's package, which still loads whole on first use;
- Threefry unrolled on the CPU draws the very bits of JAX's loop form;
- the evaluation program compiled ahead is the one `evaluate_runs` calls, with the same result.
"""

import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

import envs
import jaxpg
from jaxpg.run import compile_cache
from jaxpg.run import fit as fit_module

# Each starts Python or compiles a whole program to compare: under -m integration, which keeps
# the unit tier's time for the recurrent promises (tests/test_recurrent.py).
pytestmark = pytest.mark.integration

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_python(code: str, xla_flags: str | None = None) -> str:
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    if xla_flags is not None:
        env["XLA_FLAGS"] = xla_flags
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_gymnax_loads_whole_only_when_used():
    out = run_python("""
        import sys
        import envs
        env, params = envs.make("CartPole-v1")
        heavy = [m for m in ("seaborn", "matplotlib.pyplot", "gymnax.environments.misc") if m in sys.modules]
        print("heavy:", heavy)
        import gymnax
        from gymnax.wrappers import LogWrapper
        env, params = gymnax.make("Acrobot-v1")
        print("gymnax:", len(gymnax.registered_envs), type(env).__name__, LogWrapper.__name__)
        env, params = envs.make("Pendulum-v1")
        print("envs:", type(env).__name__)
    """)
    assert "heavy: []" in out
    assert "Acrobot LogWrapper" in out and "envs: Pendulum" in out


def test_unrolled_threefry_draws_the_same_bits():
    # XLA's default emitter (no test-tier flags), where `install` takes effect.
    out = run_python("""
        import jax, numpy as np
        from jaxpg.core import threefry_cpu

        def draws(key):
            a, b = jax.random.split(key)
            return (jax.random.key_data(jax.random.split(a, 7)), jax.random.normal(b, (5, 3)),
                    jax.random.categorical(jax.random.fold_in(a, 3), jax.numpy.zeros((4, 6))),
                    jax.random.uniform(b, (2, 9)))

        key = jax.random.key(11)
        program = lambda: jax.jit(draws).lower(key).as_text()
        before, loops_before = [np.asarray(x) for x in jax.jit(draws)(key)], "while" in program()
        threefry_cpu.install()
        jax.clear_caches()
        after, loops_after = [np.asarray(x) for x in jax.jit(draws)(key)], "while" in program()
        print("loops:", loops_before, loops_after)
        print("same:", all(np.array_equal(x, y) for x, y in zip(before, after)))
    """, xla_flags="")
    assert "loops: True False" in out  # the lowering did change
    assert "same: True" in out


def test_evaluation_compiled_ahead_is_the_one_evaluate_runs_calls():
    env, env_params = envs.make("CartPole-v1")
    options = dict(num_envs=2, num_steps=8, total_timesteps=32, hidden_sizes=(8,))
    keys = jax.random.split(jax.random.key(3), 2)
    ahead = jaxpg.make_trainer("ppo", env, env_params, **options)
    state = jax.vmap(ahead.init)(keys)  # what fit would return, untrained
    fit_module.compile_evaluation(ahead, keys, seed=5, episodes=3).result()
    log = compile_cache.CompileLog.get()
    seen = len(log.events)
    returns = fit_module.evaluate_runs(ahead, jax.device_get(state), 5, 2, 3)
    compiled_again = [e for e in log.events[seen:] if "evaluation" in e["program"] and e["stage"] == "compile"]
    assert not compiled_again

    plain = jaxpg.make_trainer("ppo", env, env_params, **options)
    np.testing.assert_array_equal(returns, fit_module.evaluate_runs(plain, jax.device_get(state), 5, 2, 3))
