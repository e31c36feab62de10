"""Time to solve as a new user feels it: `jaxpg train CartPole-v1` end to end, compile included.

Every contender runs as its own subprocess, so its process start, imports and compilation count:

- jaxpg: `jaxpg train CartPole-v1 --no-progress --out DIR` with its default preset and seed count
  (PPO at PureJaxRL's CartPole settings, 500k env steps per seed, 4 seeds vmapped), first with
  an empty private compile cache (`JAXPG_COMPILATION_CACHE`, cold) and then again on that cache
  (warm), once per SB3 round. Full mode repeats the pair at `--seeds 1`, the same work as one SB3
  run. Wall time is measured around the process; compile and train seconds come from its
  summary.json (`compile_seconds`: the init and chunk programs' lower+compile; `run_seconds`:
  the chunks' execution).
- time to 475 (jaxpg): the seconds from launch until the first iteration whose training return,
  averaged over the run's seeds (what the progress bar shows), is >= 475 was written to
  metrics.csv. The parent polls metrics.csv's size every 20 ms while the run goes; `jaxpg.fit`
  appends one chunk (about 1/50 of the run) at a time, so this is an upper bound by at most one
  chunk plus one poll. The CLI has no stop-at-threshold option and records no per-iteration time,
  so this is the closest exact figure; the estimate `startup + compile + run_seconds * (k + 1) /
  iterations` (k: the crossing iteration; startup: when run.json appeared, i.e. imports done and
  the trainer built) is reported beside it as a cross-check.
- stable-baselines3: `ppo_cartpole.run_sb3` (PureJaxRL's settings, 4 DummyVecEnv envs, torch on
  1 thread) in a `python -c` child, stopped at its first rollout whose finished episodes average
  475. Time to 475 = launch to `import torch` + stable_baselines3 + gymnasium done, plus `learn()`'s
  seconds to 475. The child also imports `benchmarks.ppo_cartpole` (and so JAX) to reach
  `run_sb3`; that import is timed and subtracted. The model's construction inside `run_sb3`
  (a fraction of a second) is not counted, which favours SB3.
- rejax: its first call, in a child: `jax.jit(algo.train)` (vmapped over the same seed count as
  the jaxpg run it is paired with) lowered and compiled (compile seconds), then run once (run
  seconds); the sum is what `jax.jit(algo.train)(keys)` costs on first call. Its final policies
  are then evaluated greedily (32 episodes per seed, outside the timing) to say whether the
  run reached 475; rejax's train returns no training curve with its evaluation disabled.

Order (so load drift hits all): jaxpg cold, rejax, then per round: SB3 seed i, jaxpg warm;
then (full) jaxpg cold 1 seed, rejax 1 seed, jaxpg warm 1 seed. Ratios: jaxpg cold compile /
rejax compile (goal <= 1), and the median over rounds of SB3's time to 475 / jaxpg warm's in
the same round (goal >= 10).

    python -m benchmarks.time_to_solve            # 11 processes, ~4.5 min on a shared 2-core CPU
    python -m benchmarks.time_to_solve --quick    # 100k steps, 1 SB3 seed, no 1-seed pair
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks import common
from benchmarks.ppo_cartpole import BATCH, TARGET

ROOT = Path(__file__).resolve().parents[1]
POLL_S = 0.02
QUICK_STEPS = 100_000
FULL_STEPS = 500_000  # the CartPole-v1 PPO preset's total_timesteps (jaxpg.config default)


def cli_command() -> list[str]:
    """`jaxpg` as the user types it: the console script beside this Python, else `python -m`."""
    script = Path(sys.executable).parent / "jaxpg"
    return [str(script)] if script.exists() else [sys.executable, "-m", "jaxpg.cli"]


def child_env(**extra) -> dict:
    # No inherited JAX cache: rejax must compile cold, and jaxpg only uses its private folder.
    env = {k: v for k, v in os.environ.items()
           if k not in ("JAX_COMPILATION_CACHE_DIR", "JAXPG_COMPILATION_CACHE")}
    return {**env, **extra}


def iterations_on_disk(csv_prefix: bytes, num_runs: int) -> int:
    """Iterations whose rows for every run are complete in a prefix of metrics.csv.

    metrics.csv holds a header line then one line per (iteration, run), iterations in order
    (`--metrics-every 1`); a line counts once its newline is written.
    """
    return max(csv_prefix.count(b"\n") - 1, 0) // num_runs


def seconds_on_disk(polls: list, csv_bytes: bytes, num_runs: int, iteration: int) -> float | None:
    """The first polled time at which `iteration` (0-based) was complete in metrics.csv.

    Args:
      polls: `(seconds since launch, file size in bytes)`, in time order, one per observed size.
      csv_bytes: the finished file's contents (a run only appends to it).
      num_runs: seeds in the run.
      iteration: the iteration to find.
    """
    for seconds, size in polls:
        if iterations_on_disk(csv_bytes[:size], num_runs) > iteration:
            return seconds
    return None


def estimate_seconds_to(iteration: int, iterations: int, startup_s: float, compile_s: float,
                        run_s: float) -> float:
    """Launch to the end of `iteration`, if every iteration of the run took the same time.

    startup (launch to the run's start), then compile, then `(iteration + 1) / iterations` of the
    run's execution seconds: the run's own overheads (metric writes between chunks, the final
    checkpoint, which `run_seconds` includes) are spread evenly over its iterations.
    """
    return startup_s + compile_s + run_s * (iteration + 1) / iterations


def run_jaxpg(label: str, work: str, cache: str, seeds: int, steps: int | None) -> dict:
    """One `jaxpg train CartPole-v1` process, its metrics.csv watched while it runs."""
    out = os.path.join(work, label.replace(" ", "_"))
    command = [*cli_command(), "train", "CartPole-v1", "--no-progress", "--out", out, "--seeds", str(seeds)]
    if steps is not None:
        command += ["--set", f"total_timesteps={steps}"]
    csv_path, spec_path = os.path.join(out, "metrics.csv"), os.path.join(out, "run.json")
    polls, spec_s, last_size = [], None, -1
    with open(out + ".log", "w") as log:
        start = time.perf_counter()
        process = subprocess.Popen(command, env=child_env(JAXPG_COMPILATION_CACHE=cache), cwd=work,
                                   stdout=log, stderr=subprocess.STDOUT)
        while True:
            done = process.poll() is not None
            now = time.perf_counter() - start
            if spec_s is None and os.path.exists(spec_path):
                spec_s = now
            size = os.path.getsize(csv_path) if os.path.exists(csv_path) else -1
            if size != last_size and size >= 0:
                polls.append((now, size))
                last_size = size
            if done:
                break
            time.sleep(POLL_S)
        wall_s = time.perf_counter() - start
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {process.returncode}:\n{open(out + '.log').read()[-3000:]}")
    summary = json.load(open(os.path.join(out, "summary.json")))
    returns = np.load(os.path.join(out, "metrics.npz"))["episode_return"]
    csv_bytes = open(csv_path, "rb").read()
    iterations = summary["total_iterations"]
    hit = common.first_crossing(returns.mean(axis=0), TARGET)
    startup_s = spec_s if spec_s is not None else 0.0
    compile_s, run_s = summary["compile_seconds"], summary["run_seconds"]
    per_seed = [common.first_crossing(r, TARGET) for r in returns]
    per_seed_s = [None if h is None else seconds_on_disk(polls, csv_bytes, seeds, h) for h in per_seed]
    return {
        "label": label, "peer": "jaxpg", "command": command, "seeds": seeds,
        "iterations": iterations, "env_steps_per_seed": summary["env_steps_per_seed"],
        "wall_s": wall_s, "startup_s": startup_s, "compile_s": compile_s, "run_s": run_s,
        "after_training_s": wall_s - startup_s - compile_s - run_s,
        "compile_cache_hits": summary["compile_cache_hits"],
        "compile_cache_misses": summary["compile_cache_misses"], "chunk_size": summary["chunk_size"],
        "iteration_to_475": hit,
        "seconds_to_475": None if hit is None else seconds_on_disk(polls, csv_bytes, seeds, hit),
        "estimate_seconds_to_475": None if hit is None else estimate_seconds_to(
            hit, iterations, startup_s, compile_s, run_s),
        "per_seed_iteration_to_475": per_seed, "per_seed_seconds_to_475": per_seed_s,
        "median_seed_seconds_to_475": None if None in per_seed_s else statistics.median(per_seed_s),
        "eval_return_mean": summary["eval_return_mean"], "eval_return_per_seed": summary["eval_return_per_seed"],
        "final_train_return_per_seed": summary["final_train_return_per_seed"],
        "first_metrics_on_disk_s": polls[0][0] if polls else None, "polls": polls,
    }


SB3_CHILD = """
import json, time
t0 = time.time()
import gymnasium, torch
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
imported = time.time()
from benchmarks.ppo_cartpole import run_sb3
helper = time.time()
r = run_sb3({seed}, {iterations}, {eval_episodes}, stop_at_target=True)
r["curve"] = {{k: [float(x) for x in v] for k, v in r["curve"].items()}}
json.dump({{"t0": t0, "import_s": imported - t0, "helper_import_s": helper - imported,
           "helper_done": helper, "result": r}}, open({path!r}, "w"))
"""

REJAX_CHILD = """
import json, time
t0 = time.time()
import jax, rejax
import envs
from benchmarks import common
from benchmarks.ppo_cartpole import make_rejax, rejax_returns
imported = time.time()
env, env_params = envs.make("CartPole-v1")
algo = make_rejax({iterations}, env, env_params)
seeds = {seeds}
keys = common.seed_keys(0, seeds)
(ts, _), compile_s, run_s = common.compile_and_run(algo.train if seeds == 1 else jax.vmap(algo.train), keys)
params = ts.actor_ts.params if seeds > 1 else common.add_seed_axis(ts.actor_ts.params)
returns = rejax_returns(algo, env, env_params, params, jax.random.key(1000), {eval_episodes})
json.dump({{"t0": t0, "import_s": imported - t0, "compile_s": compile_s, "run_s": run_s,
           "eval_return_per_seed": returns.tolist()}}, open({path!r}, "w"))
"""


def run_child(code: str, path: str) -> tuple[float, float, dict]:
    """Runs `python -c code` (which writes JSON to `path`); `(launch time, wall seconds, JSON)`."""
    launched = time.time()
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], env=child_env(), cwd=ROOT, capture_output=True, text=True)
    wall_s = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"child exited {done.returncode}:\n{done.stderr[-3000:]}")
    return launched, wall_s, json.load(open(path))


def run_sb3_process(work: str, seed: int, iterations: int, eval_episodes: int) -> dict:
    path = os.path.join(work, f"sb3_{seed}.json")
    code = SB3_CHILD.format(seed=seed, iterations=iterations, eval_episodes=eval_episodes, path=path)
    launched, wall_s, child = run_child(code, path)
    r = child["result"]
    # Launch to run_sb3's call, less the JAX import that only this harness needs.
    startup_s = child["helper_done"] - launched - child["helper_import_s"]
    return {
        "label": f"SB3 seed {seed}", "peer": "sb3", "seeds": 1, "seed": seed, "wall_s": wall_s,
        "startup_s": startup_s, "import_s": child["import_s"], "harness_jax_import_s": child["helper_import_s"],
        "learn_s": r["train_s"], "env_steps": r["env_steps"], "iteration_to_475": r["iteration_to_475"],
        "learn_seconds_to_475": r["seconds_to_475"],
        "seconds_to_475": None if r["seconds_to_475"] is None else startup_s + r["seconds_to_475"],
        "eval_return_mean": r["eval_return_mean"], "iterations_cap": iterations,
        "torch_threads": r["torch_threads"], "curve": r["curve"],
    }


def run_rejax_process(work: str, seeds: int, iterations: int, eval_episodes: int) -> dict:
    path = os.path.join(work, f"rejax_{seeds}.json")
    code = REJAX_CHILD.format(iterations=iterations, seeds=seeds, eval_episodes=eval_episodes,
                              path=path)
    launched, wall_s, child = run_child(code, path)
    returns = child["eval_return_per_seed"]
    return {
        "label": f"rejax first call, {seeds} seed(s)", "peer": "rejax", "seeds": seeds, "iterations": iterations,
        "wall_s": wall_s, "startup_s": child["t0"] - launched + child["import_s"], "import_s": child["import_s"],
        "compile_s": child["compile_s"], "run_s": child["run_s"],
        "first_call_s": child["compile_s"] + child["run_s"],
        "eval_return_per_seed": returns, "eval_return_mean": float(np.mean(returns)),
        "eval_reached_475": bool(np.mean(returns) >= TARGET),
    }


def ratio_rows(runs: list[dict], default_seeds: int) -> tuple[list[list], dict]:
    """The goal rows: compile against rejax per seed count, SB3 / jaxpg warm per round."""
    rows, values = [], {}
    for seeds in sorted({r["seeds"] for r in runs if r["peer"] == "rejax"}, reverse=True):
        cold = next(r for r in runs if r["label"] == f"jaxpg cold, {seeds} seed(s)")
        rejax = next(r for r in runs if r["peer"] == "rejax" and r["seeds"] == seeds)
        x = cold["compile_s"] / rejax["compile_s"]
        values[f"jaxpg_cold_compile_over_rejax_compile_{seeds}_seeds"] = x
        rows.append([f"jaxpg cold compile / rejax first-call compile, {seeds} seed(s)", f"{x:.2f}",
                     "<= 1", "met" if x <= 1 else "not met",
                     f"jaxpg {cold['compile_s']:.1f} s (of a {cold['wall_s']:.1f} s process) vs rejax "
                     f"{rejax['compile_s']:.1f} s (first call {rejax['first_call_s']:.1f} s), one of each"])
    sb3 = [r for r in runs if r["peer"] == "sb3"]
    for seeds in sorted({r["seeds"] for r in runs if r["label"].startswith("jaxpg warm")}, reverse=True):
        warm = [r for r in runs if r["label"].startswith(f"jaxpg warm, {seeds} seed(s)")]
        if not sb3:
            break
        paired = seeds == default_seeds and len(warm) == len(sb3)
        pairs = [(s["seconds_to_475"], w["seconds_to_475"]) for s, w in zip(sb3, warm) if paired]
        if not paired:  # the 1-seed warm run is single: against the median SB3 run
            sb3_s = [s["seconds_to_475"] for s in sb3 if s["seconds_to_475"] is not None]
            pairs = [(statistics.median(sb3_s) if sb3_s else None, w["seconds_to_475"]) for w in warm]
        good = [a / b for a, b in pairs if a is not None and b is not None]
        if not good:
            tried = ", ".join(f"SB3 {common.fmt(a)} s / jaxpg {common.fmt(b)} s" for a, b in pairs)
            rows.append([f"SB3 / jaxpg warm, seconds to 475, {seeds} seed(s)", "—", ">= 10x", "undecided",
                         f"a run did not reach 475: {tried}"])
            continue
        x = statistics.median(good)
        values[f"sb3_over_jaxpg_warm_to_475_{seeds}_seeds"] = x
        how = ("median of the rounds' ratios" if paired else "median SB3 run over the one jaxpg run") + ": " + \
            "; ".join(f"{common.fmt(a)} / {common.fmt(b, '.2f')} s" for a, b in pairs)
        rows.append([f"SB3 / jaxpg warm, seconds to 475 from launch, {seeds} seed(s)", f"{x:.1f}x", ">= 10x",
                     "met" if x >= 10 else "not met", how])
    return rows, values


def main(argv=None) -> int:
    parser = common.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int,
                        help=f"env steps per seed for jaxpg, rejax and SB3's schedule (default: the preset's "
                             f"{FULL_STEPS:,}; quick {QUICK_STEPS:,})")
    parser.add_argument("--sb3-seeds", type=int,
                        help="SB3 runs, each paired with a warm jaxpg run (default 3, quick 1)")
    parser.add_argument("--sb3-iterations", type=int,
                        help=f"SB3's cap in iterations of {BATCH} steps if it never reaches 475 (default: --steps')")
    parser.add_argument("--one-seed", action=argparse.BooleanOptionalAction, default=None,
                        help="also jaxpg cold and warm and rejax at --seeds 1 (default: on; quick: off)")
    parser.add_argument("--skip-rejax", action="store_true")
    args = parser.parse_args(argv)

    from jaxpg.cli.commands import build_parser

    default_seeds = build_parser().parse_args(["train", "CartPole-v1"]).seeds
    quick = args.quick
    steps = args.steps or (QUICK_STEPS if quick else None)
    iterations = (steps or FULL_STEPS) // BATCH
    sb3_seeds = args.sb3_seeds if args.sb3_seeds is not None else (1 if quick else 3)
    sb3_iterations = args.sb3_iterations or iterations
    one_seed = args.one_seed if args.one_seed is not None else not quick
    eval_episodes = 32
    started = time.perf_counter()
    info = common.machine_info()
    print(f"device: {common.device_label(info)}; load average {info['load_average']}", flush=True)

    work = tempfile.mkdtemp(prefix="time_to_solve_")
    runs = []

    def record(r):
        runs.append(r)
        t475 = r.get("seconds_to_475")
        print(f"  {r['label']}: process {r['wall_s']:.1f} s, compile {common.fmt(r.get('compile_s'))} s, "
              f"to 475 {common.fmt(t475)} s", flush=True)

    seed_counts = [default_seeds] + ([1] if one_seed and default_seeds != 1 else [])
    for seeds in seed_counts:
        cache = os.path.join(work, f"cache_{seeds}")
        record(run_jaxpg(f"jaxpg cold, {seeds} seed(s)", work, cache, seeds, steps))
        if not args.skip_rejax:
            record(run_rejax_process(work, seeds, iterations, eval_episodes))
        rounds = max(sb3_seeds, 1) if seeds == default_seeds else 1
        for i in range(rounds):
            if seeds == default_seeds and i < sb3_seeds:
                record(run_sb3_process(work, i, sb3_iterations, eval_episodes))
            suffix = f", round {i + 1}" if rounds > 1 else ""
            record(run_jaxpg(f"jaxpg warm, {seeds} seed(s){suffix}", work, cache, seeds, steps))

    rows = []
    for r in runs:
        if r["peer"] == "jaxpg":
            rows.append([r["label"], f"{r['wall_s']:.1f}", f"{r['startup_s']:.1f}", f"{r['compile_s']:.1f}",
                         f"{r['run_s']:.1f}", f"{r['after_training_s']:.1f}", common.fmt(r["seconds_to_475"], ".2f"),
                         common.fmt(r["estimate_seconds_to_475"], ".2f"), f"{r['eval_return_mean']:.1f}"])
        elif r["peer"] == "sb3":
            rows.append([r["label"], f"{r['wall_s']:.1f}", f"{r['startup_s']:.1f}", "—",
                         f"{r['learn_s']:.1f} (stopped)", "—", common.fmt(r["seconds_to_475"], ".2f"), "—",
                         f"{r['eval_return_mean']:.1f}"])
        else:
            rows.append([r["label"], f"{r['wall_s']:.1f}", f"{r['startup_s']:.1f}", f"{r['compile_s']:.1f}",
                         f"{r['run_s']:.1f}", "—", "—", "—",
                         f"{r['eval_return_mean']:.1f} ({'reached' if r['eval_reached_475'] else 'below'} 475)"])
    table = common.markdown_table(
        ["run", "process (s)", "startup (s)", "compile (s)", "train (s)", "after training (s)",
         "to 475 from launch (s)", "to 475 estimate (s)", "eval return"], rows)
    goal_rows, ratios = ratio_rows(runs, default_seeds)
    ratio_table = common.markdown_table(["ratio", "value", "goal", "", "how"], goal_rows)
    caption = (
        f"{common.device_label(info)}; load average at start {info['load_average']}; "
        f"{iterations * BATCH:,} env steps per seed ({iterations} iterations of {BATCH}). "
        "jaxpg: `jaxpg train CartPole-v1` (default preset, cold = empty compile cache, warm = that "
        "cache again); startup = launch to run.json (imports, trainer built); compile and train from "
        "summary.json; after training = the rest (evaluation, plot, summary, exit). To 475 from launch: "
        "when the first iteration whose training return averaged over the seeds is >= 475 was on disk in "
        "metrics.csv (polled; upper bound by one chunk); estimate = startup + compile + train x (k+1)/iterations. "
        "SB3: PPO (PureJaxRL settings, torch 1 thread) in its own process, startup = imports of "
        "torch/SB3/gymnasium, stopped at its first rollout averaging 475. rejax: first call = lower+compile, "
        f"then one run; eval return = greedy, {eval_episodes} episodes per seed.")
    elapsed = time.perf_counter() - started
    print()
    print(table)
    print()
    print(ratio_table)
    print()
    print(caption)
    print(f"total {elapsed:.0f} s")
    payload = {
        "benchmark": "time_to_solve", "machine": info,
        "config": {"quick": quick, "env_steps_per_seed": iterations * BATCH, "iterations": iterations,
                   "jaxpg_command": cli_command() + ["train", "CartPole-v1", "--no-progress"]
                   + ([] if steps is None else ["--set", f"total_timesteps={steps}"]),
                   "jaxpg_default_seeds": default_seeds, "seed_counts": seed_counts, "sb3_seeds": sb3_seeds,
                   "sb3_iterations_cap": sb3_iterations, "poll_s": POLL_S, "target_return": TARGET,
                   "eval_episodes_peers": eval_episodes,
                   "jaxpg_time_to_475": "first iteration whose training return averaged over seeds is >= 475, "
                                        "time it was on disk in metrics.csv, seconds from launch"},
        "runs": runs, "ratios": ratios,
        "tables": {"runs": table, "ratios": ratio_table}, "caption": caption, "total_s": elapsed,
    }
    path = common.write_results("time_to_solve_quick" if quick else "time_to_solve", payload, args.out)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
