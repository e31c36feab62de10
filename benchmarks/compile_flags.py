"""What XLA:CPU's compile options cost and save: compile time of the CartPole presets' training
programs against how fast those programs then run, one option set per row.

The test tiers compile with LLVM's optimisations off and with XLA:CPU's older kernel emitter
(tests/conftest.py); users compile with XLA's defaults. This measures both sides of that choice
for PPO and REINFORCE (each at its CartPole-v1 preset, one seed), and how Threefry is lowered on the
CPU (JAX's 5-step loop per call site, or unrolled, which jaxpg's trainers use: the
`jaxpg.core.threefry_cpu` docstring): the compile of `train` (the
whole run as one program), and the steady speed of `iterate` (a chunk of iterations) compiled
with the same options. Every program is compiled ahead of time with per-compile options, so one
process measures every row. The persistent compilation cache is not turned on here (jaxpg's CLI
turns it on; a library caller is off unless they set it).

    python -m benchmarks.compile_flags            # PPO and REINFORCE, 2 compiles per row
    python -m benchmarks.compile_flags --quick    # PPO, 1 compile per row
"""

import statistics
import sys

import jax

import envs
import jaxpg
from benchmarks import common
from jaxpg.core import threefry_cpu

# name -> (XLA compiler options, Threefry unrolled on the CPU: jaxpg.core.threefry_cpu)
OPTION_SETS = {
    "XLA defaults, Threefry unrolled (users)": ({}, True),
    "XLA defaults, JAX's Threefry loops": ({}, False),
    "fusion emitter off": ({"xla_cpu_use_fusion_emitters": False}, True),
    "LLVM -O0": ({"xla_backend_optimization_level": 0}, True),
    "-O0, fusion emitter off, Threefry loops (test tiers)": ({"xla_backend_optimization_level": 0,
                                                             "xla_cpu_use_fusion_emitters": False}, False),
    "-O0, fusion emitter off, Threefry unrolled": ({"xla_backend_optimization_level": 0,
                                                   "xla_cpu_use_fusion_emitters": False}, True),
}
DEFAULTS = "XLA defaults, Threefry unrolled (users)"
CHUNK = 16  # iterations per timed `iterate` call


def measure(algo: str, rounds: int) -> dict:
    """Per option set: `train`'s compile seconds (`rounds` compiles), then the steady seconds of
    `iterate` compiled with the same options, all option sets called in turn (A B C D, A B C D)
    so that drift on a shared machine hits every row alike."""
    env, env_params = envs.make("CartPole-v1")
    trainer = jaxpg.make_trainer(algo, env, env_params, preset="CartPole-v1")
    key = jax.random.key(0)
    state = trainer.init(key)
    compile_s, calls = {}, {}
    for name, (options, unrolled) in OPTION_SETS.items():
        threefry_cpu.use_unrolled(unrolled)  # picked when a program is lowered, so set before each
        jax.clear_caches()
        # A fresh function each compile, so the in-memory cache serves nothing.
        compile_s[name] = [common.compile_ahead(lambda k: trainer.train(k), key, **options)[1]
                           for _ in range(rounds)]
        iterate, _ = common.compile_ahead(lambda s: trainer.iterate(s, CHUNK), state, **options)
        calls[name] = lambda iterate=iterate: iterate(state)
        print(f"  {algo}, {name}: train compiles in {statistics.median(compile_s[name]):.1f} s", flush=True)
    timing = common.alternate(calls, repeats=5, warmup=1)
    steps = CHUNK * trainer.steps_per_iteration
    threefry_cpu.use_unrolled(True)
    return {name: {"options": OPTION_SETS[name][0], "threefry_unrolled": OPTION_SETS[name][1],
                   "compile_s": compile_s[name], "iterate_s": timing["times"][name],
                   "env_steps_per_s": steps / timing["median"][name], "run_time_ratio": timing["ratio"][name]}
            for name in OPTION_SETS}


def main(argv=None) -> int:
    args = common.base_parser(__doc__).parse_args(argv)
    info = common.announce()
    rounds = 1 if args.quick else 2
    rows, results = [], {}
    for algo in ["ppo"] if args.quick else ["ppo", "reinforce"]:
        results[algo] = measure(algo, rounds)
        base = statistics.median(results[algo][DEFAULTS]["compile_s"])
        for name, result in results[algo].items():
            compile_s = statistics.median(result["compile_s"])
            rows.append([algo, name, f"{compile_s:.1f}", f"{base / compile_s:.2f}x",
                         common.fmt_rate(result["env_steps_per_s"]), f"{1 / result['run_time_ratio']:.2f}x"])
    path = common.write_results("compile_flags_quick" if args.quick else "compile_flags",
                                {"machine": info, "chunk_iterations": CHUNK, "rounds": rounds,
                                 "results": results}, args.out)
    print(common.markdown_table(["algo", "options", "train compile (s)", "compile speed-up",
                                 "env steps/s", "run speed vs defaults"], rows))
    print(f"\n{common.device_label(info)}; wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
