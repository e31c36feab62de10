"""What driving a run from the host in chunks costs: `jaxpg.fit` against one `lax.scan` of the run.

Times the same PPO CartPole run (8 vmapped seeds) three ways, alternated A B C A B C in one
process after a compile call each: `jax.vmap(trainer.train)` as one program; `jaxpg.fit` with
metrics kept in memory (chunks, progress off); and `jaxpg.fit` writing its metrics files and a
final checkpoint to a run directory. Reports the median of each and the median of the per-round
ratios against the one-scan run, and the chunk size `fit` chose.

    python benchmarks/chunked.py            # 500k env steps per seed, 5 rounds
    python benchmarks/chunked.py --quick    # 100k env steps per seed, 3 rounds
"""

import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import jax  # noqa: E402

import envs  # noqa: E402
import jaxpg  # noqa: E402
from benchmarks import common  # noqa: E402


def main() -> None:
    parser = common.base_parser(__doc__)
    parser.add_argument("--seeds", type=int, default=8)
    args = parser.parse_args()
    steps, rounds = (100_000, 3) if args.quick else (500_000, 5)
    env, env_params = envs.make("CartPole-v1")
    trainer = jaxpg.make_trainer("ppo", env, env_params, total_timesteps=steps)
    keys = jax.random.split(jax.random.key(0), args.seeds)
    one_scan = jax.jit(jax.vmap(trainer.train))
    started = time.perf_counter()
    jax.block_until_ready(one_scan(keys))
    compile_scan = time.perf_counter() - started
    folder = tempfile.mkdtemp()

    def fit_to_disk():
        shutil.rmtree(folder, ignore_errors=True)
        return jaxpg.fit(trainer, keys, out=folder, progress=False)

    contenders = {
        "one scan (vmap(train))": lambda: jax.block_until_ready(one_scan(keys)),
        "fit, metrics in memory": lambda: jaxpg.fit(trainer, keys, progress=False),
        "fit, metrics files + checkpoint": fit_to_disk,
    }
    for name in list(contenders)[1:]:
        fitted = contenders[name]()  # compile (and warm) outside the timed rounds
    chunk = fitted.report["chunk_size"]
    times = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, run in contenders.items():
            t0 = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - t0)
    base = times["one scan (vmap(train))"]
    rows = []
    for name, values in times.items():
        ratios = [v / b for v, b in zip(values, base)]
        rows.append([name, f"{statistics.median(values):.2f}", f"{statistics.median(ratios):.3f}x"])
    info = common.machine_info()
    payload = {"machine": info, "seeds": args.seeds, "env_steps_per_seed": steps, "chunk_size": chunk,
               "iterations": trainer.total_iterations, "compile_one_scan_s": compile_scan, "times": times}
    path = common.write_results("chunked_quick" if args.quick else "chunked", payload, args.out)
    print(f"PPO CartPole, {args.seeds} seeds x {steps:,} env steps, {trainer.total_iterations} iterations, "
          f"fit's chunk {chunk} iterations ({trainer.total_iterations // chunk} chunks)")
    print(common.markdown_table(["run", "median wall (s)", "median ratio to one scan"], rows))
    print(f"\n{common.device_label(info)}; load {info['load_average']}; wrote {path}")


if __name__ == "__main__":
    main()
