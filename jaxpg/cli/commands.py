"""The commands of `jaxpg` (see `jaxpg.cli`): `train ENV --algo ppo --seeds 8 --set lr=3e-4 --out
runs/NAME`, and `resume`, `eval`, `sweep`, `pbt`, `plot`.

`train` uses the preset of the (env, algo) pair unless told `--no-preset`, runs the seeds as one
vmapped program in host-driven chunks (`jaxpg.fit`), and writes metrics as it goes, checkpoints,
a summary, a learning curve and the environment's exact references where it has them.
"""

import argparse
import ast
import json
import os
import sys
import time

import jax
import numpy as np

import envs
import jaxpg
from jaxpg import presets
from jaxpg.core.evaluate import DEFAULT_EPISODES
from jaxpg.presets.references import references, score_policies
from jaxpg.run import compile_cache, results
from jaxpg.run import options as run_options
from jaxpg.run.checkpoint import Checkpoints
from jaxpg.run.fit import beside, compile_evaluation, evaluation_keys
from jaxpg.run.fit import evaluate_runs as evaluate_seeds
from jaxpg.run.sharding import host_copy, is_main_process

RUN_FILE = "run.json"
# The options a resume may change (`--override`): only the run's length. Every other option
# either shapes the compiled program and the saved state (num_envs, network sizes: the
# checkpoint no longer fits) or changes what the iterations already trained would have
# computed (lr, clip_eps, ...), so the resumed run would be neither the saved run nor any run
# one command could have made; start a new run for those.
RESUME_OVERRIDES = ("total_timesteps",)
# The run option a resume may change: whether progress is shown, never how the run is cut or kept.
RESUME_OPTIONS = ("progress",)


def parse_assignment(text: str):
    """`key=value` -> (key, value); the value is a Python literal if it parses as one."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    key, value = text.split("=", 1)
    try:
        return key.strip(), ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key.strip(), value


def parse_list(text: str):
    """`name=v1,v2,...` -> (name, [numbers])."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected NAME=V1,V2,..., got {text!r}")
    name, values = text.split("=", 1)
    try:
        return name.strip(), [float(v) for v in values.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{name}: values must be numbers, got {values!r}") from None


def _add_process_options(parser):
    """The flags of the process rather than the run: joining a multi-process job, the compile cache."""
    parser.add_argument("--coordinator", metavar="HOST:PORT",
                        help="train across processes: process 0's address (jax.distributed.initialize)")
    parser.add_argument("--num-processes", type=int, metavar="N", help="processes in the job (with --coordinator)")
    parser.add_argument("--process-id", type=int, metavar="I", help="this process's index, 0..N-1 (with --coordinator)")
    parser.add_argument("--no-compile-cache", action="store_true",
                        help=f"do not use JAX's persistent compilation cache (default folder: "
                             f"${compile_cache.ENV_VAR} or ~/.cache/jaxpg/xla)")


def _add_many_runs_options(parser, verb: str, set_help: str, per: str) -> None:
    """The flags `jaxpg sweep` and `jaxpg pbt` share: trainer and environment options, the
    preset, evaluation, the output folder and resuming it, the run options, the process flags."""
    parser.add_argument("--set", dest="options", action="append", type=parse_assignment, default=[],
                        metavar="KEY=VALUE", help=set_help)
    parser.add_argument("--env-set", dest="env_options", action="append", type=parse_assignment, default=[],
                        metavar="KEY=VALUE", help="environment option for envs.make")
    parser.add_argument("--no-preset", action="store_true", help="start from the algorithm's defaults")
    parser.add_argument("--eval-episodes", type=int, default=DEFAULT_EPISODES,
                        help=f"evaluation episodes {per} (the same protocol as train)")
    parser.add_argument("--out", default=None, help=f"output folder (default runs/{verb}-ENV-ALGO)")
    parser.add_argument("--resume", action="store_true", help=f"continue the {verb} in --out from its checkpoint")
    run_options.add_flags(parser)
    _add_process_options(parser)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jaxpg", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="train seeds in one vmapped program")
    train.add_argument("env", nargs="?", help=f"environment id: {', '.join(envs.ENV_IDS)}, any gymnax id, or "
                       "SUITE:ID for another JAX suite (brax, playground, craftax, jumanji, xminigrid, navix)")
    train.add_argument("--algo", default="ppo", help=f"one of {', '.join(jaxpg.ALGORITHMS)}")
    train.add_argument("--help-algo", metavar="ALGO", help="list ALGO's every option (default, range, doc) and exit")
    train.add_argument("--seeds", type=int, default=4, help="runs trained together (vmapped)")
    train.add_argument("--seed", type=int, default=0, help="base PRNG seed")
    train.add_argument("--set", dest="options", action="append", type=parse_assignment, default=[],
                       metavar="KEY=VALUE", help="trainer option, e.g. lr=3e-4 or hidden_sizes=(32,32)")
    train.add_argument("--env-set", dest="env_options", action="append", type=parse_assignment,
                       default=[], metavar="KEY=VALUE", help="environment option for envs.make")
    train.add_argument("--preset", default=None, help="preset name (default: the one for ENV and ALGO)")
    train.add_argument("--no-preset", action="store_true", help="the algorithm's own defaults, no preset")
    train.add_argument("--eval-episodes", type=int, default=DEFAULT_EPISODES,
                       help="evaluation episodes per seed after training")
    train.add_argument("--out", default=None, help="output folder (default runs/ENV-ALGO)")
    run_options.add_flags(train)
    _add_process_options(train)
    resume = commands.add_parser("resume", help="continue a run from its latest complete checkpoint")
    resume.add_argument("dir")
    resume.add_argument("--override", action="append", type=parse_assignment, default=[], metavar="KEY=VALUE",
                        help="train on to another length: total_timesteps=N (the one option a resume accepts; "
                             "others are refused by name). The iterations trained keep their learning rates; "
                             "from the checkpoint on, the rates are those of a run planned for N steps from the "
                             "start (a decaying rate rises to where the longer schedule stands)")
    run_options.add_flags(resume, RESUME_OPTIONS)
    _add_process_options(resume)
    evaluate = commands.add_parser("eval", help="evaluate a run's latest checkpoint")
    evaluate.add_argument("dir")
    evaluate.add_argument("--episodes", type=int, default=DEFAULT_EPISODES,
                          help="evaluation episodes per seed (the protocol of train and sweep)")
    sweep = commands.add_parser("sweep", help="train every setting x seed as one program and rank the settings")
    sweep.add_argument("env", help="environment id")
    sweep.add_argument("--algo", default="ppo", help=f"one of {', '.join(jaxpg.ALGORITHMS)}")
    sweep.add_argument("--grid", action="append", type=parse_list, default=[], metavar="NAME=V1,V2,...",
                       help="values of a traced hyperparameter; settings are the product of every --grid")
    sweep.add_argument("--random", action="append", type=parse_assignment, default=[], metavar="NAME=DIST",
                       help="a hyperparameter drawn per trial: uniform:LO:HI, loguniform:LO:HI or choice:A:B")
    sweep.add_argument("--trials", type=int, default=0, help="settings drawn for --random")
    sweep.add_argument("--env-grid", action="append", type=parse_list, default=[], metavar="FIELD=V1,V2,...",
                       help="values of a scalar environment parameter that training reads (e.g. "
                            "length=0.5,1.0 on CartPole); one it never reads is refused")
    sweep.add_argument("--seeds", type=int, default=4, help="seeds per setting (the same seeds for every setting)")
    sweep.add_argument("--seed", type=int, default=0)
    sweep.add_argument("--threshold", type=float, default=None, help="training return for steps-to-threshold")
    _add_many_runs_options(sweep, "sweep", "a trainer option fixed across the sweep", "per seed and setting")
    pbt = commands.add_parser("pbt", help="population-based training: exploit and explore between chunks")
    pbt.add_argument("env", help="environment id")
    pbt.add_argument("--algo", default="ppo", help=f"one of {', '.join(jaxpg.ALGORITHMS)}")
    pbt.add_argument("--population", type=int, default=8, help="members per population (at least 2)")
    pbt.add_argument("--explore", action="append", type=parse_assignment, default=[], metavar="NAME=LOW:HIGH[:log]",
                     help="a traced hyperparameter to search, its range and scale (linear unless :log); "
                          "members start from values drawn from it")
    pbt.add_argument("--ready-every", type=int, default=20, help="iterations between exploit/explore steps")
    pbt.add_argument("--truncation", type=float, default=0.25,
                     help="fraction of each population that copies the top fraction at a ready point, in (0, 0.5]")
    pbt.add_argument("--resample-probability", type=float, default=0.25,
                     help="chance an explored value is drawn afresh instead of perturbed by 0.8 or 1.25")
    pbt.add_argument("--seeds", type=int, default=1, help="independent populations trained together (vmapped)")
    pbt.add_argument("--seed", type=int, default=0, help="base PRNG seed (members, draws, exploit steps)")
    _add_many_runs_options(pbt, "pbt", "a trainer option shared by every member", "per member")
    plot = commands.add_parser("plot", help="overlay the learning curves of runs")
    plot.add_argument("dirs", nargs="+")
    plot.add_argument("--out", required=True, help="PNG file to write")
    return parser


def help_algo(algo: str) -> int:
    if algo not in jaxpg.ALGORITHMS:
        raise ValueError(f"--help-algo {algo!r} is unknown; accepted: {', '.join(jaxpg.ALGORITHMS)}")
    print(f"Options of {algo} (set with --set KEY=VALUE; traced hyperparameters also sweep):\n")
    print(jaxpg.ALGORITHMS[algo].Config.table())
    names = sorted({p.name for p in presets.PRESETS.values() if p.algo == algo})
    print(f"\nPresets for {algo}: {', '.join(names)}")
    return 0


def build_run(spec: dict):
    """`(trainer, preset)` from a run's spec (what run.json holds). A preset with an SFT stage
    (token tasks) fits the policy to demonstrations first, from the run's base seed (so a resume
    rebuilds the same start), and the trainer starts from it."""
    env, env_params = envs.make(spec["env"], **spec["env_options"])
    preset = presets.get(spec["preset"], spec["algo"]) if spec["preset"] else None
    trainer = jaxpg.make_trainer(spec["algo"], env, env_params, preset=preset, **spec["options"])
    if preset is not None and preset.sft:
        from jaxpg.presets.build import trainer_after_sft

        started = time.perf_counter()
        trainer, accuracy = trainer_after_sft(spec["algo"], env, env_params, preset, jax.random.key(spec["base_seed"]),
                                              **spec["options"])
        say(f"jaxpg: SFT on {preset.sft['num_demonstrations']} demonstrations, {preset.sft['num_updates']} updates "
            f"({time.perf_counter() - started:.0f} s): greedy exact-match accuracy {accuracy:.3f}")
    return trainer, preset


def holds_run(folder: str) -> bool:
    checkpoints = os.path.join(folder, "checkpoints")
    return os.path.isdir(checkpoints) and bool(os.listdir(checkpoints))


def fresh_folder(base: str) -> str:
    """`base`, or `base-2`, `base-3`, ... : the first that holds no run (the default --out)."""
    folder, number = base, 1
    while holds_run(folder):
        number += 1
        folder = f"{base}-{number}"
    return folder


def train_command(args) -> int:
    if args.help_algo:
        return help_algo(args.help_algo)
    if not args.env:
        raise ValueError("train needs an environment id, e.g. jaxpg train CartPole-v1")
    if args.coordinator is not None and args.out is None:
        raise ValueError("a multi-process run needs --out, the one run folder every process shares")
    if args.seeds < 1:
        raise ValueError(f"--seeds={args.seeds} must be a positive integer")
    env_options = dict(args.env_options)
    if args.no_preset:
        preset = None
    elif args.preset:
        preset = presets.get(args.preset, args.algo)
    else:
        preset = presets.find(args.env, args.algo, env_options)
    spec = {
        "env": args.env, "env_options": env_options, "algo": args.algo, "preset": preset.name if preset else None,
        "options": dict(args.options), "seeds": args.seeds, "base_seed": args.seed,
        "eval_episodes": args.eval_episodes, "run_options": run_options.from_args(args),
    }
    run_options.RunOptions.from_options(spec["run_options"])  # refused here, before anything is built
    trainer, preset = build_run(spec)  # every option is checked here, before anything is written
    out = args.out or fresh_folder(os.path.join("runs", f"{args.env}-{args.algo}"))
    if holds_run(out):
        raise ValueError(f"{out} already holds a run; continue it with `jaxpg resume {out}`, or pass another --out")
    os.makedirs(out, exist_ok=True)
    if is_main_process():
        write_spec(os.path.join(out, RUN_FILE), spec)
    say(f"jaxpg: preset {preset.describe()}" if preset else
          f"jaxpg: no preset for {args.algo} on {args.env}{' (--no-preset)' if args.no_preset else ''}; "
          "the algorithm's defaults")
    return run(trainer, spec, out, args, resume=False, allow_changes=())


def resume_command(args) -> int:
    path = os.path.join(args.dir, RUN_FILE)
    if not os.path.exists(path):
        raise ValueError(f"{args.dir} holds no {RUN_FILE}: it is not a jaxpg run directory")
    overrides = dict(args.override)
    for name in overrides:
        if name not in RESUME_OVERRIDES:
            raise ValueError(f"--override {name} is refused: a resumed run keeps every option but its length "
                             f"(start a new run to change {name}); accepted: {', '.join(RESUME_OVERRIDES)}")
    with open(path) as f:
        saved = json.load(f)
    spec = {**saved, "options": {**saved["options"], **overrides}}
    trainer, _ = build_run(spec)
    # run.json changes only once the resumed run is under way, so a resume that fails before
    # (restoring, compiling) leaves the folder as it was. Every resume allows total_timesteps to
    # differ from the checkpoint's: run.json holds the plan, and a checkpoint saved before an
    # extension got under way records the shorter one.
    on_start = (lambda: write_spec(path, spec)) if spec != saved else None
    return run(trainer, spec, args.dir, args, resume=True, allow_changes=RESUME_OVERRIDES, on_start=on_start)


def write_spec(path: str, spec: dict) -> None:
    """Writes a run's `run.json` atomically: a temporary file renamed over it."""
    temporary = f"{path}.tmp-{os.getpid()}"
    with open(temporary, "w") as f:
        json.dump(spec, f, indent=2, default=str)
    os.replace(temporary, path)


def run(trainer, spec: dict, out: str, args, resume: bool, allow_changes, on_start=None) -> int:
    with compile_cache.enabled(on=not args.no_compile_cache) as cache_dir:
        return _run(trainer, spec, out, args, resume, allow_changes, cache_dir, on_start)


def _run(trainer, spec: dict, out: str, args, resume: bool, allow_changes, cache_dir, on_start=None) -> int:
    steps = trainer.total_iterations * trainer.steps_per_iteration
    say(
        f"jaxpg: {spec['algo']} on {spec['env']}, {spec['seeds']} seed(s) x {steps:,} env steps "
        f"({trainer.total_iterations} iterations) on {results.device_description()}"
        + (f" in {jax.process_count()} processes" if jax.process_count() > 1 else "")
    )
    keys = jax.random.split(jax.random.key(spec["base_seed"]), spec["seeds"])
    record = {"env": spec["env"], "env_options": spec["env_options"], "algo": spec["algo"],
              "preset": spec["preset"], "name": os.path.basename(os.path.abspath(out)), "versions": results.versions()}
    started, fit_start = time.perf_counter(), time.time()
    try:
        # The run's options as saved, with what this command line may change on resume.
        options = {**spec["run_options"], **run_options.from_args(args, RESUME_OPTIONS)}
        if is_main_process():  # evaluation compiles, and the references score, beside training
            compile_evaluation(trainer, keys, spec["base_seed"], spec["eval_episodes"],
                               deterministic=eval_deterministic(spec))
            score_references_beside(trainer, spec["seeds"], spec["base_seed"], spec["eval_episodes"])
        fitted = jaxpg.fit(trainer, keys, out=out, resume=resume, allow_changes=allow_changes, record=record,
                           on_start=on_start, **options)
        state, metrics = fitted
    except jaxpg.NonFiniteUpdate as stop:
        say(f"jaxpg: {stop}. Metrics up to there are in {out}/metrics.csv.", file=sys.stderr)
        return 3
    report = dict(fitted.report, wall_seconds=time.perf_counter() - started, compile_cache_dir=cache_dir,
                  num_processes=jax.process_count(),
                  timeline={"command_start": _command_started, "fit_start": fit_start, "fit_end": time.time()})
    # Evaluation runs on each process's own device from a host copy (every process takes part in
    # the gather); process 0 alone writes and prints.
    state = host_copy(state)
    if is_main_process():
        finish(trainer, spec, out, state, metrics, report)
    return 0


def say(*args, **kwargs) -> None:
    """`print`, on process 0 only."""
    if is_main_process():
        print(*args, **kwargs)


def score_references(trainer, num_runs: int, seed: int, episodes: int):
    """`(references, their returns)`: the environment's reference values and policies, and each
    policy's mean return on the evaluation's episodes. Neither depends on the trained state."""
    found = references(trainer.env, trainer.env_params)
    scored = score_policies(trainer.env, trainer.env_params, found["policies"], evaluation_keys(seed, num_runs),
                            episodes)
    return found, scored


def score_references_beside(trainer, num_runs: int, seed: int, episodes: int) -> None:
    """Starts `score_references` in a thread: its programs compile and run while training's
    compile and run (SearchRanking's reference policies took 11-14 s after training on 2 cores;
    benchmarks/latency.py). `evaluate_runs` takes the result."""
    trainer.__dict__["_references_ahead"] = ((num_runs, seed, episodes),
                                             beside(score_references, trainer, num_runs, seed, episodes,
                                                    name="references"))


def evaluate_runs(trainer, state, num_runs: int, seed: int, episodes: int, deterministic: bool = True):
    """Per-seed evaluation returns `(R, episodes)` (the protocol `jaxpg sweep` reports too:
    `jaxpg.run.fit.evaluate_runs`; sampled actions where the run's preset judges them so) and
    the references of the environment on the same episodes."""
    returns = evaluate_seeds(trainer, state, seed, num_runs, episodes, deterministic=deterministic)
    ahead = trainer.__dict__.pop("_references_ahead", None)
    if ahead is not None and ahead[0] == (num_runs, seed, episodes):
        found, reference_returns = ahead[1].result()
    else:
        found, reference_returns = score_references(trainer, num_runs, seed, episodes)
    per_seed = []
    for i in range(num_runs):
        one = jax.tree.map(lambda x, i=i: x[i], state)
        # The references score a memoryless policy; a recurrent one is scored by its returns only.
        act = None if trainer.recurrent else (lambda obs, one=one: trainer.act(one, obs, deterministic=True))
        per_seed.append(references(trainer.env, trainer.env_params, act)["values"])
    return returns, found["values"], per_seed, reference_returns


def eval_deterministic(spec) -> bool:
    """Whether a run's evaluation acts with the policy's mode: yes, unless its preset's criterion
    samples actions (a greedy Snake circles without eating)."""
    preset = presets.get(spec["preset"], spec["algo"]) if spec.get("preset") else None
    return getattr(preset, "eval_deterministic", True)


def finish(trainer, spec, out, state, metrics, report) -> None:
    """Evaluation, references, summary, learning curve, and the table printed at the end."""
    num_runs = spec["seeds"]
    started = time.perf_counter()
    returns, values, per_seed, reference_returns = evaluate_runs(
        trainer, state, num_runs, spec["base_seed"], spec["eval_episodes"], eval_deterministic(spec)
    )
    eval_per_seed = returns.mean(axis=1)
    evaluated = time.perf_counter()
    results.plot_learning_curve(os.path.join(out, "learning_curve.png"), metrics, f"{spec['algo']} on {spec['env']}")
    # Where the time after training goes, and every program's trace/lower/compile seconds since
    # the command started (benchmarks/latency.py reads both).
    report = dict(report, after_training={"evaluation_and_references": evaluated - started,
                                          "plot": time.perf_counter() - evaluated},
                  compile_events=compile_cache.CompileLog.get().events)
    nonfinite = np.argwhere(metrics["nonfinite"])
    run_steps = trainer.total_iterations * trainer.steps_per_iteration * num_runs
    gains = [v.get("gain_relative_error") for v in per_seed]
    summary = {
        **{k: spec[k] for k in ("env", "env_options", "algo", "preset", "seeds", "base_seed", "eval_episodes")},
        "config": trainer.config.as_dict(),
        "hparams": {k: float(v) for k, v in trainer.resolve_hparams(None).items()},
        "total_iterations": trainer.total_iterations,
        "env_steps_per_seed": trainer.total_iterations * trainer.steps_per_iteration,
        "device": results.device_description(),
        "versions": results.versions(),
        **report,
        "env_steps_per_second": run_steps / max(report["run_seconds"], 1e-9),
        "eval_return_per_seed": eval_per_seed.tolist(),
        "eval_return_mean": float(eval_per_seed.mean()),
        "eval_return_std": float(eval_per_seed.std()),
        "references": values,
        "reference_policy_returns": reference_returns,
        "per_seed_references": per_seed,
        "final_train_return_per_seed": np.asarray(metrics["episode_return"])[:, -1].tolist(),
        "nonfinite_updates": [list(map(int, i)) for i in nonfinite],
    }
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2, default=str)

    has_gain = all(g is not None for g in gains)
    print()
    sampled = "" if eval_deterministic(spec) else ", sampled actions"
    header = f"| seed | final training return | evaluation return (mean of {spec['eval_episodes']} episodes{sampled}) |"
    print(header + (" gain error vs K* |" if has_gain else ""))
    print("|---:|---:|---:|" + ("---:|" if has_gain else ""))
    for seed in range(num_runs):
        row = f"| {seed} | {summary['final_train_return_per_seed'][seed]:.4g} | {eval_per_seed[seed]:.4g} |"
        print(row + (f" {100 * gains[seed]:.2f}% |" if has_gain else ""))
    print()
    for name, value in values.items():
        print(f"Reference {name}: {np.round(np.asarray(value), 4).tolist()}")
    for name, value in reference_returns.items():
        print(f"Reference policy {name!r}: evaluation return {value:.4g} on the same episodes")
    for name in sorted({k for v in per_seed for k, x in v.items() if np.ndim(x) == 0} - {"gain_relative_error"}):
        print(f"Per seed {name}: {[round(float(v[name]), 4) for v in per_seed]}")
    if has_gain:
        within = sum(g < 0.01 for g in gains)
        print(f"Learned gain within 1% of K* on {within} of {num_runs} seeds (worst {100 * max(gains):.2f}%).")
    cache = ("served by the compile cache" if report["compile_cache_hits"] and not report["compile_cache_misses"]
             else "compiled")
    print(
        f"Evaluation return {eval_per_seed.mean():.4g} +- {eval_per_seed.std():.3g} over {num_runs} seed(s). "
        f"Trained in {report['run_seconds']:.1f} s ({summary['env_steps_per_second']:,.0f} env steps/s) "
        f"after {report['compile_seconds']:.1f} s of compilation ({cache})."
    )
    if len(nonfinite):
        print(
            f"WARNING: {len(nonfinite)} update(s) produced NaN/inf and were skipped; the first at "
            f"seed {nonfinite[0][0]}, iteration {nonfinite[0][1]}. Everything else was kept."
        )
    print(f"Wrote metrics.npz, metrics.csv, summary.json, learning_curve.png and checkpoints/ to {out}/")


def restore_run(directory: str):
    """`(trainer, spec, state)` from a run directory's latest complete checkpoint."""
    path = os.path.join(directory, RUN_FILE)
    if not os.path.exists(path):
        raise ValueError(f"{directory} holds no {RUN_FILE}: it is not a jaxpg run directory")
    spec = json.load(open(path))
    trainer, _ = build_run(spec)
    keys = jax.random.split(jax.random.key(spec["base_seed"]), spec["seeds"])
    like = jax.eval_shape(jax.vmap(trainer.init), keys)
    checkpoints = Checkpoints(directory)
    restored = checkpoints.restore_latest(like, jax.random.key_impl(keys))
    checkpoints.close()
    if restored is None:
        raise ValueError(f"{directory} holds no checkpoint that restores")
    return trainer, spec, restored[1], restored[0]


def eval_command(args) -> int:
    trainer, spec, state, step = restore_run(args.dir)
    returns, values, per_seed, reference_returns = evaluate_runs(
        trainer, state, spec["seeds"], spec["base_seed"], args.episodes, eval_deterministic(spec)
    )
    print(f"{args.dir}: checkpoint at iteration {step}, {args.episodes} episodes per seed")
    for seed, value in enumerate(returns.mean(axis=1)):
        gain = per_seed[seed].get("gain_relative_error")
        gain_text = f", gain error {100 * gain:.2f}%" if gain is not None else ""
        print(f"seed {seed}: evaluation return {value:.4g}{gain_text}")
    for name, value in reference_returns.items():
        print(f"reference policy {name!r}: {value:.4g}")
    print(f"mean {returns.mean(axis=1).mean():.4g} +- {returns.mean(axis=1).std():.3g}")
    return 0


def sweep_command(args) -> int:
    with compile_cache.enabled(on=not args.no_compile_cache) as cache_dir:
        return _sweep(args, cache_dir)


def _sweep(args, cache_dir) -> int:
    from jaxpg.run.sweep import sweep

    out = args.out or fresh_folder(os.path.join("runs", f"sweep-{args.env}-{args.algo}"))
    os.makedirs(out, exist_ok=True)
    rows = sweep(
        args.env, args.algo, grid=dict(args.grid), random=dict(args.random), trials=args.trials,
        env_grid=dict(args.env_grid), seeds=args.seeds, seed=args.seed, env_options=dict(args.env_options),
        options=dict(args.options), preset=None if args.no_preset else "auto", threshold=args.threshold,
        eval_episodes=args.eval_episodes, out=out, resume=args.resume, **run_options.from_args(args),
    )
    if is_main_process():
        print(open(os.path.join(out, "sweep.md")).read())
        best = rows[0]
        names = [n for n, _ in [*args.grid, *args.random, *args.env_grid]]
        setting = ", ".join(f"{n}={best[n]:.4g}" for n in dict.fromkeys(names))
        print(f"Best setting: {setting}: evaluation return {best['eval_mean']:.4g} +- {best['eval_ci95']:.3g} "
              f"(95% interval over {args.seeds} seeds).")
        print(f"Wrote sweep.csv, sweep.md, sweep.png, metrics and checkpoints to {out}/"
              + (f" (compile cache: {cache_dir})" if cache_dir else ""))
    return 0


def pbt_command(args) -> int:
    with compile_cache.enabled(on=not args.no_compile_cache) as cache_dir:
        return _pbt(args, cache_dir)


def _pbt(args, cache_dir) -> int:
    from jaxpg.run import pbt

    if not args.explore:
        raise ValueError("pbt needs at least one --explore NAME=LOW:HIGH[:log], e.g. --explore lr=1e-5:1e-1:log")
    if args.population < 2:
        raise ValueError(f"--population={args.population} must be at least 2 (members that exploit each other)")
    if args.seeds < 1:
        raise ValueError(f"--seeds={args.seeds} must be a positive integer")
    options = run_options.from_args(args)
    run_options.RunOptions.from_options(options)
    env_options = dict(args.env_options)
    preset = None if args.no_preset else presets.find(args.env, args.algo, env_options)
    spec = {"env": args.env, "env_options": env_options, "algo": args.algo, "preset": preset.name if preset else None,
            "options": dict(args.options), "seeds": args.seeds * args.population, "base_seed": args.seed}
    trainer, preset = build_run(spec)
    explore = pbt.check_explore(trainer, dict(args.explore))
    out = args.out or fresh_folder(os.path.join("runs", f"pbt-{args.env}-{args.algo}"))
    if holds_run(out) and not args.resume:
        raise ValueError(f"{out} already holds a run; continue it with --resume, or pass another --out")
    os.makedirs(out, exist_ok=True)
    num_runs = spec["seeds"]
    say(f"jaxpg: pbt of {args.algo} on {args.env}: {args.seeds} population(s) x {args.population} members x "
        f"{trainer.total_iterations * trainer.steps_per_iteration:,} env steps, exploring "
        f"{', '.join(f'{n} in [{lo:g}, {hi:g}] ({scale})' for n, (lo, hi, scale) in explore.items())} every "
        f"{args.ready_every} iterations" + (f"; preset {preset.name}" if preset else ""))
    keys = jax.random.split(jax.random.key(args.seed), num_runs)
    record = {"env": args.env, "env_options": env_options, "algo": args.algo, "preset": spec["preset"],
              "name": os.path.basename(os.path.abspath(out)), "versions": results.versions()}
    try:
        result = pbt.pbt(trainer, keys, explore, args.ready_every, populations=args.seeds,
                         truncation=args.truncation, resample_probability=args.resample_probability, seed=args.seed,
                         out=out, resume=args.resume, record=record, **options)
    except jaxpg.NonFiniteUpdate as stop:
        say(f"jaxpg: {stop}. Metrics up to there are in {out}/metrics.csv, the lineage in {out}/pbt.csv.",
            file=sys.stderr)
        return 3
    (state, lineage), report = result, result.report
    state = host_copy(state)
    if not is_main_process():
        return 0
    returns = evaluate_seeds(trainer, state, args.seed, num_runs, args.eval_episodes,
                             deterministic=eval_deterministic(spec))
    evaluation = returns.mean(axis=1)
    final_train = np.asarray(result.metrics["episode_return"])[:, -1]
    names = list(explore)
    print()
    print(pbt.table(lineage, names, args.population, final_train, evaluation))
    best_members = [int(np.argmax(evaluation[p * args.population:(p + 1) * args.population])) + p * args.population
                    for p in range(args.seeds)]
    for population, best in enumerate(best_members):
        print(f"\nBest member of population {population}: {best}, evaluation return {evaluation[best]:.4g}; "
              f"its hyperparameters along its lineage: {pbt.describe_schedule(pbt.schedule(lineage, best, names))}")
    summary = {**spec, "explore": {n: list(r) for n, r in explore.items()}, "population": args.population,
               "ready_every": args.ready_every, "truncation": args.truncation,
               "resample_probability": args.resample_probability, "eval_episodes": args.eval_episodes,
               "eval_return_per_member": evaluation.tolist(), "final_train_return_per_member": final_train.tolist(),
               "best_members": best_members, "best_schedules": [pbt.schedule(lineage, b, names) for b in best_members],
               "device": results.device_description(), **report}
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2, default=str)
    share = report["exploit_seconds"] / max(report["run_seconds"], 1e-9)
    print(f"Trained in {report['run_seconds']:.1f} s after {report['compile_seconds']:.1f} s of compilation; the "
          f"exploit/explore steps took {report['exploit_seconds']:.2f} s ({100 * share:.2f}% of the run).")
    print(f"Wrote pbt.csv, pbt.png, summary.json, metrics and checkpoints to {out}/"
          + (f" (compile cache: {cache_dir})" if cache_dir else ""))
    return 0


def plot_command(args) -> int:
    runs = []
    for directory in args.dirs:
        path = os.path.join(directory, "metrics.npz")
        if not os.path.exists(path):
            raise ValueError(f"{directory} holds no metrics.npz (is the run finished?)")
        runs.append((directory, dict(np.load(path))))
    results.plot_runs(args.out, runs)
    print(f"Wrote {args.out} ({len(runs)} run(s))")
    return 0


COMMANDS = {"train": train_command, "resume": resume_command, "eval": eval_command, "plot": plot_command,
            "sweep": sweep_command, "pbt": pbt_command}


# When the command began (after Python started and the imports above): the start of its timeline.
_command_started = None


def main(argv=None) -> int:
    global _command_started
    _command_started = time.time()
    compile_cache.CompileLog.get()
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except ValueError as error:
        print(f"jaxpg: error: {error}", file=sys.stderr)
        return 2
