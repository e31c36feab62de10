"""`jaxpg train ENV --algo ppo --seeds 8 --set lr=3e-4 --out runs/NAME`."""

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
from jaxpg import results


def parse_assignment(text: str):
    """`key=value` -> (key, value); the value is a Python literal if it parses as one."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    key, value = text.split("=", 1)
    try:
        return key.strip(), ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key.strip(), value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jaxpg", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="train seeds in one vmapped program")
    train.add_argument("env", help=f"environment id: {', '.join(envs.ENV_IDS)} or any gymnax id")
    train.add_argument("--algo", default="ppo", help=f"one of {', '.join(jaxpg.ALGORITHMS)}")
    train.add_argument("--seeds", type=int, default=4, help="runs trained together (vmapped)")
    train.add_argument("--seed", type=int, default=0, help="base PRNG seed")
    train.add_argument("--set", dest="options", action="append", type=parse_assignment, default=[],
                       metavar="KEY=VALUE", help="trainer option, e.g. lr=3e-4 or hidden_sizes=(32,32)")
    train.add_argument("--env-set", dest="env_options", action="append", type=parse_assignment,
                       default=[], metavar="KEY=VALUE", help="environment option for envs.make")
    train.add_argument("--eval-episodes", type=int, default=100)
    train.add_argument("--out", default=None, help="output folder (default runs/ENV-ALGO)")
    train.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


def train_command(args) -> int:
    if args.seeds < 1:
        raise ValueError(f"--seeds={args.seeds} must be a positive integer")
    env_options = dict(args.env_options)
    options = dict(args.options)
    if args.no_progress:
        options["progress"] = False
    env, env_params = envs.make(args.env, **env_options)
    trainer = jaxpg.make_trainer(args.algo, env, env_params, **options)
    out = args.out or os.path.join("runs", f"{args.env}-{args.algo}")
    os.makedirs(out, exist_ok=True)
    steps = trainer.total_iterations * trainer.steps_per_iteration
    print(
        f"jaxpg: {args.algo} on {args.env}, {args.seeds} seed(s) x {steps:,} env steps "
        f"({trainer.total_iterations} iterations) on {results.device_description()}"
    )

    keys = jax.random.split(jax.random.key(args.seed), args.seeds)
    train = jax.jit(jax.vmap(trainer.train))
    started = time.perf_counter()
    compiled = train.lower(keys).compile()
    compile_seconds = time.perf_counter() - started
    started = time.perf_counter()
    state, metrics = jax.block_until_ready(compiled(keys))
    train_seconds = time.perf_counter() - started

    eval_keys = jax.random.split(jax.random.key(args.seed + 1), args.seeds)
    eval_returns = np.asarray(
        jax.jit(jax.vmap(lambda s, k: jaxpg.evaluate(trainer, s, k, args.eval_episodes)))(state, eval_keys)
    )
    metrics = {k: np.asarray(v) for k, v in metrics.items()}
    nonfinite = np.argwhere(metrics["nonfinite"])

    results.write_metrics(out, metrics)
    results.plot_learning_curve(
        os.path.join(out, "learning_curve.png"), metrics, f"{args.algo} on {args.env}"
    )
    results.save_checkpoint(os.path.join(out, "checkpoint"), state)
    per_seed = eval_returns.mean(axis=1)
    summary = {
        "env": args.env,
        "env_options": env_options,
        "algo": args.algo,
        "seeds": args.seeds,
        "base_seed": args.seed,
        "config": {k: v for k, v in trainer.config.as_dict().items()},
        "hparams": {k: float(v) for k, v in trainer.resolve_hparams(None).items()},
        "num_iterations": trainer.total_iterations,
        "env_steps_per_seed": steps,
        "device": results.device_description(),
        "versions": results.versions(),
        "compile_seconds": compile_seconds,
        "train_seconds": train_seconds,
        "env_steps_per_second": steps * args.seeds / train_seconds,
        "eval_episodes": args.eval_episodes,
        "eval_return_per_seed": per_seed.tolist(),
        "eval_return_mean": float(per_seed.mean()),
        "eval_return_std": float(per_seed.std()),
        "final_train_return_per_seed": metrics["episode_return"][:, -1].tolist(),
        "nonfinite_updates": [list(map(int, i)) for i in nonfinite],
    }
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2, default=str)

    print()
    print("| seed | final training return | evaluation return (mean of %d episodes) |" % args.eval_episodes)
    print("|---:|---:|---:|")
    for seed, (train_ret, eval_ret) in enumerate(zip(summary["final_train_return_per_seed"], per_seed)):
        print(f"| {seed} | {train_ret:.1f} | {eval_ret:.1f} |")
    print()
    print(
        f"Evaluation return {per_seed.mean():.1f} +- {per_seed.std():.1f} over {args.seeds} seed(s). "
        f"Trained in {train_seconds:.1f} s ({summary['env_steps_per_second']:,.0f} env steps/s) "
        f"after {compile_seconds:.1f} s of compilation."
    )
    if len(nonfinite):
        print(
            f"WARNING: {len(nonfinite)} update(s) produced NaN/inf and were skipped; the first at "
            f"seed {nonfinite[0][0]}, iteration {nonfinite[0][1]}. Everything else was kept."
        )
    print(f"Wrote metrics.npz, metrics.csv, summary.json, learning_curve.png and checkpoint/ to {out}/")
    return 0


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return train_command(args)
    except ValueError as error:
        print(f"jaxpg: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
