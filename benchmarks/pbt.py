"""Population-based training against random search with the same population, the same initial
settings and the same env steps, on three tasks.

For each task, `--seeds` independent populations of `--population` members train as one program:
`jaxpg.pbt` (exploit and explore every `ready_every` iterations) and `jaxpg.fit` with each member
held at its initial draw (random search). Both start from the same keys and the same draws
(`jaxpg.run.pbt.initial_values`). Every member is then evaluated (deterministic actions, the
episodes of `jaxpg train`'s protocol); a population's result is its best member's evaluation
return. The table gives the mean and spread over populations for both, and the exploit/explore
steps' share of PBT's run time (goal: under 2%).

Tasks: CartPole-v1 PPO whose learning rate is drawn from a range mostly too low or too high
(1e-5 to 1e-1, log); LQR-v0 PPO (the preset's linear-Gaussian policy, a shorter budget) over the
same range; Addition-v0 (2 digits) GRPO from a partly right SFT policy (tokens.py's recipe),
learning rate 1e-5 to 1e-2, log.

    python -m benchmarks.pbt --quick     # 4 populations of 8, short budgets
    python -m benchmarks.pbt             # 4 populations of 16, longer budgets

Writes benchmarks/results/pbt[_quick].json.
"""

import time

import jax
import numpy as np

import envs
import jaxpg
from benchmarks import common
from jaxpg.algos import sft
from jaxpg.run import pbt as pbt_module
from jaxpg.run.fit import evaluate_runs

TOKEN_NET = dict(policy="transformer", transformer_dim=32, transformer_layers=2, transformer_heads=2)


def cartpole(quick):
    env, params = envs.make("CartPole-v1")
    trainer = jaxpg.make_trainer("ppo", env, params, preset="CartPole-v1",
                                 total_timesteps=65_536 if quick else 262_144)
    # Every member starts with a learning rate too low to solve in this budget; PBT may leave it.
    return trainer, {"lr": (1e-5, 1e-1, "log")}, {"lr": (1e-5, 1e-4, "log")}


def lqr(quick):
    env, params = envs.make("LQR-v0")
    trainer = jaxpg.make_trainer("ppo", env, params, preset="LQR-v0", num_envs=16,
                                 total_timesteps=16 * 128 * (40 if quick else 160))
    return trainer, {"lr": (1e-5, 1e-1, "log")}, None


def addition(quick):
    env, params = envs.make("Addition-v0", num_digits=2)
    base = jaxpg.make_trainer("grpo", env, params, **TOKEN_NET)
    # Teacher forcing short of convergence (tokens.py's Addition recipe): a partly right start.
    policy, _ = jax.jit(lambda k: sft.fit_demonstrations(k, base, 2048, 1000, 64, 3e-3))(jax.random.key(0))
    trainer = jaxpg.make_trainer("grpo", env, params, **TOKEN_NET, num_groups=16, group_size=8, beta=0.04,
                                 policy_params=policy,
                                 total_timesteps=16 * 8 * params.max_steps_in_episode * (30 if quick else 80))
    return trainer, {"lr": (1e-5, 1e-2, "log")}, None


TASKS = {"CartPole-v1 / ppo": cartpole, "LQR-v0 / ppo": lqr, "Addition-v0 / grpo": addition}


def run_task(name, build, seeds, population, eval_episodes, quick, log):
    started = time.perf_counter()
    trainer, explore, start = build(quick)
    ready_every = max(1, trainer.total_iterations // 10)
    num_runs = seeds * population
    keys = jax.random.split(jax.random.key(0), num_runs)
    explore = pbt_module.check_explore(trainer, explore)
    # The initial settings, drawn from the explored ranges or from a narrower start range.
    initial = pbt_module.initial_values(pbt_module.check_explore(trainer, start or explore), num_runs, seed=0)
    result = jaxpg.pbt(trainer, keys, explore, ready_every, populations=seeds, seed=0, hparams=initial,
                       progress=False)
    searched = jaxpg.fit(trainer, keys, hparams=initial, progress=False)
    rows = {}
    for method, state, report in (("pbt", result[0], result.report), ("random search", searched[0], searched.report)):
        returns = evaluate_runs(trainer, state, 0, num_runs, eval_episodes).mean(axis=1)
        best = returns.reshape(seeds, population).max(axis=1)
        mean = returns.reshape(seeds, population).mean(axis=1)
        rows[method] = {"best_per_population": best.tolist(), "mean_per_population": mean.tolist(),
                        "eval_per_member": returns.tolist(),
                        "compile_seconds": report["compile_seconds"], "run_seconds": report["run_seconds"]}
        log(f"  {name} {method:13s}: best member per population {[round(float(x), 3) for x in best]}, "
            f"members' mean {[round(float(x), 3) for x in mean]} (run {report['run_seconds']:.1f} s)")
    lineage = result[1]
    share = result.report["exploit_seconds"] / result.report["run_seconds"]
    rows["pbt"].update(exploit_seconds=result.report["exploit_seconds"], exploit_share=share,
                       exploit_compile_seconds=result.report["exploit_compile_seconds"],
                       final_values={n: lineage[n][-1].tolist() for n in explore})
    log(f"  exploit/explore: {result.report['exploit_seconds']:.2f} s, {100 * share:.2f}% of PBT's run "
        f"({time.perf_counter() - started:.0f} s for the task)")
    return {"explore": {n: list(r) for n, r in explore.items()}, "start": start or "the explored ranges",
            "initial": {n: v.tolist() for n, v in initial.items()},
            "ready_every": ready_every, "iterations": trainer.total_iterations,
            "env_steps_per_member": trainer.total_iterations * trainer.steps_per_iteration, "rows": rows}


def table(results) -> str:
    rows = []
    for name, r in results["tasks"].items():
        p, s = (np.asarray(r["rows"][m]["best_per_population"]) for m in ("pbt", "random search"))
        pm, sm = (np.asarray(r["rows"][m]["mean_per_population"]) for m in ("pbt", "random search"))
        rows.append([name, f"{r['env_steps_per_member']:,}", f"{p.mean():.4g} ± {p.std():.2g}",
                     f"{s.mean():.4g} ± {s.std():.2g}", f"{int((p >= s).sum())} of {len(p)}",
                     f"{pm.mean():.4g} / {sm.mean():.4g}", f"{100 * r['rows']['pbt']['exploit_share']:.2f}%"])
    return common.markdown_table(
        ["task", "env steps per member", "PBT: best member (mean ± std over populations)", "random search: best member",
         "populations where PBT >= random", "members' mean, PBT / random", "exploit/explore share of PBT's run"], rows)


def main(argv=None) -> int:
    parser = common.base_parser(__doc__, quick=False)
    parser.add_argument("--quick", action="store_true",
                        help="populations of 8, short budgets (about 15 minutes on 2 cores)")
    parser.add_argument("--tasks", nargs="+", choices=list(TASKS), help="default: all three")
    parser.add_argument("--seeds", type=int, default=4, help="independent populations (population seeds)")
    parser.add_argument("--population", type=int, help="members per population (default 8 quick, 16 full)")
    parser.add_argument("--eval-episodes", type=int, default=32, help="evaluation episodes per member")
    args = parser.parse_args(argv)
    population = args.population or (8 if args.quick else 16)
    info = common.announce(f"pbt: {args.seeds} populations x {population} members")
    results = {"machine": info, "seeds": args.seeds, "population": population, "quick": args.quick,
               "eval_episodes": args.eval_episodes, "tasks": {}}
    for name in args.tasks or list(TASKS):
        results["tasks"][name] = run_task(name, TASKS[name], args.seeds, population, args.eval_episodes,
                                          args.quick, print)
        common.write_results("pbt_quick" if args.quick else "pbt", results, args.out)
    print()
    print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
