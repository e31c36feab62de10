"""PPO on CartPole-v1 as the runs (seeds) and environments grow, on however many devices there are.

Two sweeps through `jaxpg.fit`, each point one fresh trainer: seeds 1 .. 2,048 at PureJaxRL's
CartPole setting (4 envs x 128 steps per seed), and environments 1 .. 65,536 in one run. Each row
gives the device count, compile seconds, env steps/s after compilation, and memory: the train
state's bytes per run and per environment (measured from the state's arrays), the compiled
iteration's temporary buffers (XLA's memory analysis) and the process's peak resident memory.

`--memory` runs PureJaxRL's headline: 2,048 seeds, a few iterations with metrics streamed to a
run folder, and reports whether it fit. Fake CPU devices (`--xla_force_host_platform_device_count`)
split one CPU: their rows check correctness, not speed. On a GPU machine, run it there and put
the table in the README with the device named.

    python -m benchmarks.scaling --quick
    python -m benchmarks.scaling                       # seeds 1..2048, envs 1..65536
    python -m benchmarks.scaling --memory              # 2,048 seeds with streamed metrics
    python -m benchmarks.scaling --shard envs          # the envs sweep split over the devices
"""

import sys
import tempfile
import time

import jax

import envs
import jaxpg
from benchmarks import common

PUREJAXRL = dict(num_envs=4, num_steps=128, update_epochs=4, num_minibatches=4, lr=2.5e-4, gae_lambda=0.95)


def measure(num_runs: int, options: dict, iterations: int, shard: str, out: str | None = None) -> dict:
    env, env_params = envs.make("CartPole-v1")
    steps = options["num_envs"] * options["num_steps"]
    trainer = jaxpg.make_trainer("ppo", env, env_params, total_timesteps=steps * iterations, **options)
    keys = jax.random.split(jax.random.key(0), num_runs)
    started = time.perf_counter()
    fitted = jaxpg.fit(trainer, keys, out=out, chunk_size=iterations, progress=False, shard=shard)
    report = fitted.report
    one = jax.eval_shape(trainer.init, jax.random.key(0))
    iteration, _ = common.compile_ahead(lambda s: trainer._iterate(s, trainer.env_params, 1), one)
    return {
        "runs": num_runs, "num_envs": options["num_envs"], "num_steps": options["num_steps"], "shard": shard,
        "devices": report["num_devices"], "compile_s": report["compile_seconds"], "run_s": report["run_seconds"],
        "wall_s": time.perf_counter() - started,
        "env_steps_per_s": num_runs * steps * iterations / max(report["run_seconds"], 1e-9),
        "state_bytes_per_run": common.tree_bytes(one),
        "env_bytes_per_env": common.tree_bytes((one.env_state, one.obs)) / options["num_envs"],
        "iteration_temp_bytes_per_run": common.temp_bytes(iteration),
        "peak_rss_bytes": common.peak_rss_bytes(),
    }


def _mib(value) -> str:
    return "-" if value is None else f"{value / 2**20:,.1f}"


def print_table(rows) -> None:
    print(common.markdown_table(
        ["runs", "envs/run", "devices", "compile s", "env steps/s", "state KiB/run", "env B/env",
         "iteration temp MiB/run", "peak RSS MiB"],
        [[f"{r['runs']:,}", f"{r['num_envs']:,}", r["devices"], f"{r['compile_s']:.1f}", f"{r['env_steps_per_s']:,.0f}",
          f"{r['state_bytes_per_run'] / 1024:.1f}", f"{r['env_bytes_per_env']:.0f}",
          _mib(r["iteration_temp_bytes_per_run"]), _mib(r["peak_rss_bytes"])] for r in rows]))


def main(argv=None) -> int:
    parser = common.base_parser(__doc__)
    parser.add_argument("--memory", action="store_true", help="2,048 PureJaxRL seeds with streamed metrics")
    parser.add_argument("--shard", default="runs", choices=("runs", "envs"), help="layout of the envs sweep")
    parser.add_argument("--iterations", type=int, default=None)
    args = parser.parse_args(argv)
    info = common.machine_info()
    fake = jax.devices()[0].platform == "cpu" and jax.device_count() > 1
    print(f"device: {common.device_label(info)} x {jax.device_count()}"
          + (" (fake CPU devices: a correctness run, not a speed figure)" if fake else ""))
    iterations = args.iterations or (2 if args.quick else 5)
    rows = []
    if args.memory:
        with tempfile.TemporaryDirectory() as out:
            row = measure(2048, PUREJAXRL, iterations, "runs", out=out)
        rows.append(row)
        print_table(rows)
        print(f"2,048 seeds fit: peak resident memory {row['peak_rss_bytes'] / 2**30:.2f} GiB on this machine, "
              f"metrics streamed to disk.")
    else:
        seed_counts = [1, 8, 64] if args.quick else [1, 8, 64, 512, 2048]
        env_counts = [1, 64, 1024] if args.quick else [1, 64, 1024, 8192, 65536]
        for runs in seed_counts:
            rows.append(measure(runs, PUREJAXRL, iterations, "runs"))
        for num_envs in env_counts:
            shard = args.shard if num_envs % jax.device_count() == 0 else "runs"
            rows.append(measure(1, {**PUREJAXRL, "num_envs": num_envs, "num_minibatches": 1 if num_envs < 4 else 4},
                                iterations, shard))
        print_table(rows)
    name = "scaling_memory" if args.memory else ("scaling_quick" if args.quick else "scaling")
    path = common.write_results(name, {"machine": info, "fake_devices": fake, "rows": rows}, args.out)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
