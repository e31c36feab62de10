"""From launch to a result: where `jaxpg train` spends its time, cold and warm compile cache.

Each (preset, seed count) runs `jaxpg train ENV --algo ALGO --seeds S` in its own process, twice
on a private, empty compile cache (cold, then warm). From the outside: seconds to the first line
of output and to exit. From the run's `summary.json` (`timeline`, `compile_events`,
`after_training`): start-up (Python and the imports, to the command's start), building the
environment and trainer (SFT included where a preset has it), each program's trace + lower +
compile seconds as JAX reports them (init, chunk, evaluation, the rest), the seconds `fit` waited
on compiling (the evaluation program compiles beside it in a thread, so the programs' seconds can
add up to more than the wait), training, and the time after training (evaluation with the
references, the plot, files and exit).

    python -m benchmarks.latency --quick --checkouts /path/to/before .

measures each checkout's `jaxpg` in turn, case by case (before and after a change in one run).

    python -m benchmarks.latency --quick                 # CartPole-v1 PPO at 1 and 4 seeds
    python -m benchmarks.latency                         # every preset at 1 and 4 seeds
    python -m benchmarks.latency --presets CartPole-v1/reinforce SearchRanking-v0/grpo --seeds 1

Writes benchmarks/results/latency[_quick].json and prints a Markdown table.
"""

import json
import os
import subprocess
import sys
import tempfile
import time

from benchmarks import common
from jaxpg import presets

PROGRAMS = {"jit(_init)": "init", "jit(chunk)": "chunk", "jit(evaluation)": "evaluation"}


def run_once(env_id, algo, seeds, cache, work, checkout=None, env_options=None) -> dict:
    out = tempfile.mkdtemp(dir=work)
    command = [sys.executable, "-m", "jaxpg.cli", "train", env_id, "--algo", algo, "--seeds", str(seeds),
               "--no-progress", "--out", out]
    for name, value in (env_options or {}).items():  # `jaxpg train` finds such a preset from its options
        command += ["--env-set", f"{name}={value}"]
    launched = time.time()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "JAXPG_COMPILATION_CACHE": cache,
                                    **({"PYTHONPATH": checkout} if checkout else {})}, cwd=checkout)
    first_line = process.stdout.readline()
    first_output = time.time() - launched
    rest, errors = process.communicate()
    exited = time.time()
    if process.returncode:
        raise RuntimeError(f"{' '.join(command)} failed:\n{errors[-3000:]}")
    summary = json.load(open(os.path.join(out, "summary.json")))
    timeline = summary["timeline"]
    compile_by_program = {}
    for event in summary["compile_events"]:
        name = PROGRAMS.get(event["program"], PROGRAMS.get(f"jit({event['program']})", "other"))
        compile_by_program[name] = compile_by_program.get(name, 0.0) + event["seconds"]
    return {
        "to_first_output": first_output, "wall": exited - launched,
        "startup": timeline["command_start"] - launched, "build": timeline["fit_start"] - timeline["command_start"],
        "compile": compile_by_program, "compile_in_fit": summary["compile_seconds"], "training": summary["run_seconds"],
        "after_training": exited - timeline["fit_end"], "after_training_parts": summary["after_training"],
        "compile_cache_hits": summary["compile_cache_hits"], "eval_return_mean": summary["eval_return_mean"],
        "first_line": first_line.strip(), "last_line": rest.strip().splitlines()[-2] if rest.strip() else "",
    }


def commit_of(folder: str) -> str:
    done = subprocess.run(["git", "-C", folder, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", folder, "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    return done.stdout.strip() + (" (modified)" if dirty else "") if done.returncode == 0 else folder


def table(rows) -> str:
    headers = ["code", "preset", "seeds", "cache", "to first output", "start-up", "build", "compile: init", "chunk",
               "evaluation", "other", "fit's compile wait", "training", "after training", "launch to exit"]
    cells = []
    for r in rows:
        c = r["compile"]
        cells.append([r.get("code", ""), r["preset"], r["seeds"], r["cache"],
                      *(f"{r[k]:.1f}" for k in ("to_first_output", "startup", "build")),
                      *(f"{c.get(k, 0.0):.1f}" for k in ("init", "chunk", "evaluation", "other")),
                      *(f"{r[k]:.1f}" for k in ("compile_in_fit", "training", "after_training", "wall"))])
    return common.markdown_table(headers, cells)


def main(argv=None) -> int:
    parser = common.base_parser(__doc__, quick=False)
    parser.add_argument("--quick", action="store_true", help="CartPole-v1 PPO only (about 3 minutes on 2 cores)")
    parser.add_argument("--presets", nargs="+", metavar="NAME/ALGO", help="default: every preset (quick: CartPole PPO)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 4])
    parser.add_argument("--caches", nargs="+", choices=["cold", "warm"], default=["cold", "warm"],
                        help="compile cache states to run (warm follows a cold run on the same cache)")
    parser.add_argument("--checkouts", nargs="+", metavar="DIR",
                        help="checkouts to measure (root folders), in turn for every case: before and after a "
                             "change in one run; default this one")
    args = parser.parse_args(argv)
    if args.presets:
        chosen = [presets.get(*name.rsplit("/", 1)) for name in args.presets]
    elif args.quick:
        chosen = [presets.get("CartPole-v1", "ppo")]
    else:
        chosen = list(presets.PRESETS.values())
    info = common.announce("latency: jaxpg train, cold and warm compile cache")
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    checkouts = {commit_of(folder): folder for folder in (args.checkouts or [here])}
    info["checkouts"] = list(checkouts)
    rows, work = [], tempfile.mkdtemp()
    for preset in chosen:
        for seeds in args.seeds:
            for code, folder in checkouts.items():
                cache = tempfile.mkdtemp(dir=work)
                for state in args.caches:
                    row = {"code": code, "preset": f"{preset.name}/{preset.algo}", "seeds": seeds, "cache": state,
                           **run_once(preset.env_id, preset.algo, seeds, cache, work, folder, preset.env_options)}
                    rows.append(row)
                    print(f"  {code}: {row['preset']} x {seeds} ({state}): {row['wall']:.1f} s launch to exit, "
                          f"training {row['training']:.1f} s, fit's compile wait {row['compile_in_fit']:.1f} s")
                    common.write_results("latency_quick" if args.quick else "latency",
                                         {"machine": info, "rows": rows}, args.out)
    print()
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
