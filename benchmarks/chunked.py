"""What driving a run from the host in chunks costs: `jaxpg.fit` against one `lax.scan` of the run.

Times the same PPO CartPole run (8 vmapped seeds) three ways, alternated A B C A B C in one
process after a compile call each: `jax.vmap(trainer.train)` as one program; `jaxpg.fit` with
metrics kept in memory (chunks, progress off); and `jaxpg.fit` writing its metrics files and a
final checkpoint to a run directory. Reports the median of each and the median of the per-round
ratios against the one-scan run, and the chunk size `fit` chose.

    python -m benchmarks.chunked            # 500k env steps per seed, 5 rounds
    python -m benchmarks.chunked --quick    # 100k env steps per seed, 3 rounds
"""

import shutil
import tempfile

import jax

import envs
import jaxpg
from benchmarks import common


def main() -> None:
    parser = common.base_parser(__doc__)
    parser.add_argument("--seeds", type=int, default=8)
    args = parser.parse_args()
    steps, rounds = (100_000, 3) if args.quick else (500_000, 5)
    env, env_params = envs.make("CartPole-v1")
    trainer = jaxpg.make_trainer("ppo", env, env_params, total_timesteps=steps)
    keys = jax.random.split(jax.random.key(0), args.seeds)
    one_scan, compile_scan = common.compile_ahead(jax.vmap(trainer.train), keys)
    folder = tempfile.mkdtemp()

    fitted = {}

    def fit(out=None):
        if out:
            shutil.rmtree(out, ignore_errors=True)
        fitted["last"] = jaxpg.fit(trainer, keys, out=out, progress=False)
        return fitted["last"]

    contenders = {
        "one scan (vmap(train))": lambda: one_scan(keys),
        "fit, metrics in memory": fit,
        "fit, metrics files + checkpoint": lambda: fit(folder),
    }
    # One untimed round first: fit compiles (and keeps) its programs, the one scan warms up.
    timing = common.alternate(contenders, rounds, warmup=1)
    chunk = fitted["last"].report["chunk_size"]
    times = timing["times"]
    rows = [[name, f"{timing['median'][name]:.2f}", f"{timing['ratio'][name]:.3f}x"] for name in contenders]
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
