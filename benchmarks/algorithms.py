"""REINFORCE, PPO and GRPO on CartPole-v1, LQR-v0 and SearchRanking-v0 at equal env-step budgets.

For every (environment, algorithm) pair, 8 seeds (quick: 8 as well) train in one vmapped
program with the same budget of environment steps. Reported per pair:

- final return: the greedy evaluation return of each seed's final policy (mean and std over
  seeds); on LQR also the gain's relative error ||K - K*|| / ||K*|| against the Riccati gain;
- steps to threshold: the first iteration where the seed-mean of the per-iteration progress
  measure crosses the environment's threshold (the training return, except on LQR where it is
  the gain error, which the return cannot show without the exploration noise), in env steps;
- seconds to threshold: those iterations times the steady seconds per iteration of the
  8-seed program (wall, on this machine), and compile time apart;
- a plot of the seed-mean progress measure against env steps (benchmarks/results/algorithms.png).

Thresholds: CartPole a training return of 475; LQR a gain within 5% of K*; SearchRanking a
training reward halfway from the zero action's mean reward to the expert template's (both
measured on the same catalog, in this run).

Each algorithm keeps its own documented defaults where they fit the budget; the per-env
settings below are the ones the tests and the other benchmarks use, listed in the JSON.

    python -m benchmarks.algorithms --quick     # ~3 min on a 2-core CPU
    python -m benchmarks.algorithms             # larger budgets
"""

import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

import envs
import jaxpg
from benchmarks import common
from envs import lqr

ALGORITHMS = ("reinforce", "ppo", "grpo")
SEEDS = 8


def cartpole(quick: bool) -> dict:
    budget = 320_000 if quick else 1_600_000
    return {
        "env_id": "CartPole-v1", "env_kwargs": {}, "budget": budget, "threshold": 475.0,
        "measure": "training return",
        "configs": {
            "reinforce": dict(num_envs=8, lr=3e-3, baseline="value"),
            "ppo": dict(),
            "grpo": dict(),
        },
    }


def lqr_1d(quick: bool) -> dict:
    # The textbook's 1-D system, horizon 50, a linear policy with a fixed exploration std of
    # 0.5 (the settings tests/test_lqr_learning.py converges with, at a constant lr).
    budget = 50 * 64 * (60 if quick else 300)
    linear = dict(policy="linear", distribution="fixed_std_gaussian", init_std=0.5)
    return {
        "env_id": "LQR-v0", "env_kwargs": {"horizon": 50}, "budget": budget, "threshold": 0.05,
        "measure": "gain error ||K - K*|| / ||K*||",
        "configs": {
            "reinforce": dict(num_envs=64, lr=2e-2, baseline="mean", normalize_returns=False,
                              **linear),
            "ppo": dict(num_envs=64, num_steps=50, num_minibatches=4, lr=3e-3, gae_lambda=0.9,
                        clip_value_loss=False, normalize_rewards=True, **linear),
            "grpo": dict(num_groups=8, group_size=8, lr=2e-2, **linear),
        },
    }


def search(quick: bool) -> dict:
    # One-step episodes (one session): 64 episodes per iteration for every algorithm.
    budget = 64 * (100 if quick else 300)
    kwargs = {"n_products": 1000 if quick else 10_000}
    return {
        "env_id": "SearchRanking-v0", "env_kwargs": kwargs, "budget": budget,
        "threshold": None,  # set from the zero action and the expert in `search_threshold`
        "measure": "training reward",
        "configs": {
            "reinforce": dict(num_envs=64, lr=3e-3, baseline="moving_average",
                              normalize_returns=False, gamma=1.0),
            "ppo": dict(num_envs=64, num_steps=1, num_minibatches=4, lr=3e-3, lr_schedule="constant",
                        gamma=1.0, ent_coef=0.0),
            "grpo": dict(num_groups=16, group_size=4, lr=3e-3),
        },
    }


def search_threshold(env, env_params, key, episodes: int = 4096) -> tuple[float, dict]:
    """Halfway from the zero action's mean reward to the expert template's, on this catalog."""
    from envs.search_ranking import expert_action

    obs, state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(key, episodes), env_params)
    step = jax.vmap(env.step, in_axes=(0, 0, 0, None))
    keys = jax.random.split(jax.random.fold_in(key, 1), episodes)
    zero = jnp.zeros((episodes,) + env.action_space(env_params).shape)
    expert = jax.vmap(lambda o: expert_action(o, env))(obs)
    rewards = {name: float(step(keys, state, action, env_params)[2].mean())
               for name, action in (("zero", zero), ("expert", expert))}
    return rewards["zero"] + 0.5 * (rewards["expert"] - rewards["zero"]), rewards


def gain_error(env_params):
    """The relative gain error of a TrainState's linear policy (K = kernel transposed)."""
    k_star = jnp.asarray(lqr.optimal_gain(env_params))

    def error(state):
        K = state.params["policy"]["params"]["gain"]["kernel"].T
        return jnp.linalg.norm(K - k_star) / jnp.linalg.norm(k_star)

    return error


def make_program(trainer, probe):
    """`keys -> (final states, (returns, probes))`, all seeds in one vmapped program.

    The loop is the trainer's own step scanned as `train` does, with one extra per-iteration
    output (`probe(state)`, e.g. the LQR gain error).
    """

    def one_seed(key):
        state = trainer.init(key)

        def body(state, _):
            state, metrics = trainer.step(state)
            return state, (metrics["episode_return"], probe(state))

        return jax.lax.scan(body, state, None, length=trainer.total_iterations)

    return jax.jit(jax.vmap(one_seed))


def run_pair(spec, algo, key, eval_episodes):
    env, env_params = envs.make(spec["env_id"], **spec["env_kwargs"])
    config = dict(spec["configs"][algo])
    probe_kind = "gain" if spec["env_id"] == "LQR-v0" else "return"
    # Every algorithm gets the same number of env steps: its iterations are the budget over
    # the steps one of its iterations takes.
    probe_trainer = jaxpg.make_trainer(algo, env, env_params, **config)
    iterations = max(1, spec["budget"] // probe_trainer.steps_per_iteration)
    trainer = jaxpg.make_trainer(
        algo, env, env_params, **config,
        total_timesteps=iterations * probe_trainer.steps_per_iteration)
    probe = gain_error(env_params) if probe_kind == "gain" else (lambda s: jnp.zeros(()))
    program = make_program(trainer, probe)
    keys = jax.random.split(key, SEEDS)
    (states, (returns, probes)), compile_s, run_s = common.compile_and_run(program, keys)

    returns, probes = np.asarray(returns), np.asarray(probes)
    curve = probes.mean(axis=0) if probe_kind == "gain" else np.nanmean(returns, axis=0)
    hit = common.first_crossing(curve, spec["threshold"], below=probe_kind == "gain")
    steps_per_iteration = trainer.steps_per_iteration
    final = common.evaluate_seeds(trainer, states, jax.random.fold_in(key, 7), eval_episodes)
    row = {
        "env": spec["env_id"], "algo": algo, "config": config, "iterations": iterations,
        "steps_per_iteration": steps_per_iteration, "env_steps": iterations * steps_per_iteration,
        "compile_s": compile_s, "run_s": run_s,
        "seconds_per_iteration": run_s / iterations,
        "final_eval_return": final,
        "curve": curve, "curve_env_steps": steps_per_iteration * np.arange(1, iterations + 1),
        "iteration_to_threshold": hit,
        "steps_to_threshold": None if hit is None else (hit + 1) * steps_per_iteration,
        "seconds_to_threshold": None if hit is None else (hit + 1) * run_s / iterations,
    }
    if probe_kind == "gain":
        row["final_gain_error"] = probes[:, -1]
    return row


def plot(rows, specs, path):
    plt = common.pyplot()
    fig, axes = plt.subplots(1, len(specs), figsize=(5 * len(specs), 3.8))
    for ax, spec in zip(np.atleast_1d(axes), specs):
        for row in (r for r in rows if r["env"] == spec["env_id"]):
            ax.plot(row["curve_env_steps"], row["curve"], label=row["algo"])
        ax.axhline(spec["threshold"], color="grey", lw=0.8, ls="--", label="threshold")
        ax.set_title(spec["env_id"])
        ax.set_xlabel("env steps (per seed)")
        ax.set_ylabel(spec["measure"] + f" (mean of {SEEDS} seeds)")
        if spec["env_id"] == "LQR-v0":
            ax.set_yscale("log")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    parser = common.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--envs", nargs="+", default=["cartpole", "lqr", "search"],
                        choices=["cartpole", "lqr", "search"])
    parser.add_argument("--algos", nargs="+", default=list(ALGORITHMS), choices=ALGORITHMS)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    info = common.announce()
    makers = {"cartpole": cartpole, "lqr": lqr_1d, "search": search}
    specs = [makers[name](args.quick) for name in args.envs]
    eval_episodes = 32 if args.quick else 100
    key = jax.random.key(args.seed)
    rows, references = [], {}
    for spec in specs:
        if spec["env_id"] == "SearchRanking-v0":
            env, env_params = envs.make(spec["env_id"], **spec["env_kwargs"])
            spec["threshold"], references[spec["env_id"]] = search_threshold(env, env_params, key)
        for algo in args.algos:
            print(f"  {spec['env_id']} / {algo}", flush=True)
            row = run_pair(spec, algo, key, eval_episodes)
            rows.append(row)
            print(f"    compile {row['compile_s']:.1f} s, run {row['run_s']:.1f} s, final "
                  f"{np.mean(row['final_eval_return']):.2f}, to threshold "
                  f"{row['steps_to_threshold']}", flush=True)

    table_rows = []
    for row in rows:
        final = row["final_eval_return"]
        cell = f"{np.mean(final):.2f} ± {np.std(final):.2f}"
        if "final_gain_error" in row:
            cell += f" (gain error {np.mean(row['final_gain_error']):.3f})"
        table_rows.append([
            row["env"], row["algo"], f"{row['env_steps']:,}", cell,
            common.fmt(row["steps_to_threshold"], ","), common.fmt(row["seconds_to_threshold"], ".1f"),
            f"{row['compile_s']:.1f}", f"{row['run_s']:.1f}",
        ])
    table = common.markdown_table(
        ["env", "algorithm", "env steps per seed", f"final eval return (mean ± std, {SEEDS} seeds)",
         "env steps to threshold", "s to threshold (run)", "compile (s)", f"run, {SEEDS} seeds (s)"],
        table_rows)
    thresholds = "; ".join(f"{s['env_id']}: {s['measure']} "
                           f"{'<=' if s['env_id'] == 'LQR-v0' else '>='} {s['threshold']:.3g}"
                           for s in specs)
    caption = (f"{SEEDS} vmapped seeds per row; thresholds {thresholds}; "
               f"{common.device_label(info)}; load average at start {info['load_average']}")
    print()
    print(table)
    print()
    print(caption)
    name = "algorithms_quick" if args.quick else "algorithms"
    png = common.RESULTS_DIR / f"{name}.png"
    plot(rows, specs, png)
    elapsed = time.perf_counter() - started
    payload = {
        "benchmark": "algorithms", "machine": info, "quick": args.quick, "seeds": SEEDS,
        "specs": specs, "references": references, "rows": rows, "table": table,
        "caption": caption, "plot": str(png.name), "total_s": elapsed,
    }
    path = common.write_results(name, payload, args.out)
    print(f"total {elapsed:.0f} s; wrote {path} and {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
