"""LQR-v0: gain error against the Riccati (DARE) gain for REINFORCE (each baseline) and PPO.

The textbook's 1-D system s' = s + a, cost s^2 + a^2, gamma 0.99 (K* = -0.6153), episodes of 200
steps, the linear Gaussian policy a = K s + 0.5 eps (fixed std), K = 0 at the start. Every
method gets the same env-step budget per seed; all seeds of a method are one vmapped program.

- REINFORCE, baselines `none`, `mean`, `value`: 16 episodes per iteration, raw returns
  (`normalize_returns=False`, so `none` really has no baseline), Adam with the learning rate
  decayed geometrically from 0.05 to 0.002 through the traced `lr` hyperparameter (REINFORCE
  has no built-in schedule), `record_grad_variance=True`.
- PPO: the settings of tests/test_lqr_learning.py (64 envs x 32 steps, 4 epochs x 4
  minibatches, gae_lambda 0.9, lr 3e-3 annealed to 0, rewards normalised, no value clipping).

Reported: |K - K*| per seed after every iteration (mean, spread over seeds), a plot of it
against env steps (benchmarks/results/lqr_dare.png), and the measured variance of
REINFORCE's per-episode gradient estimate (the trace of its covariance over the batch, the
metric `grad_variance`) per baseline, early (first 10 iterations) and late (last quarter, all
runs near K*). Note REINFORCE's own fixed point for 200-step episodes is 0.0023 from K* (see
`reinforce_target` in tests/test_lqr_learning.py); PPO bootstraps on truncation and targets K*.

    python -m benchmarks.lqr_dare --quick    # 4 seeds, 0.6M env steps each (< 2 min, 2 cores)
    python -m benchmarks.lqr_dare            # 16 seeds, 2.5M env steps each
"""

import time

import jax
import jax.numpy as jnp
import numpy as np

import envs
import jaxpg
from benchmarks import common
from envs import lqr

HORIZON, SIGMA = 200, 0.5
REINFORCE_ENVS, PPO_ENVS, PPO_STEPS = 16, 64, 32
BASELINES = ("none", "mean", "value")
LR_START, LR_END = 0.05, 0.002
FULL_SEEDS, QUICK_SEEDS = 16, 4
FULL_BUDGET, QUICK_BUDGET = 2_457_600, 614_400  # env steps per seed; multiples of both batches


def make_trainers(budget):
    """`{method: trainer}` for the four methods, each with `budget` env steps per seed."""
    env, env_params = envs.make("LQR-v0", horizon=HORIZON)
    common_cfg = dict(policy="linear", distribution="fixed_std_gaussian", init_std=SIGMA)
    trainers = {
        f"reinforce/{b}": jaxpg.make_trainer(
            "reinforce", env, env_params, num_envs=REINFORCE_ENVS, baseline=b,
            normalize_returns=False, record_grad_variance=True, hidden_sizes=(32, 32),
            total_timesteps=budget, **common_cfg)
        for b in BASELINES
    }
    trainers["ppo"] = jaxpg.make_trainer(
        "ppo", env, env_params, num_envs=PPO_ENVS, num_steps=PPO_STEPS, total_timesteps=budget,
        num_minibatches=4, update_epochs=4, gae_lambda=0.9, lr=3e-3, clip_value_loss=False,
        normalize_rewards=True, hidden_sizes=(32, 32), **common_cfg)
    return trainers, env_params


def schedule(trainer):
    """The per-iteration learning rates: geometric decay for REINFORCE, constant for PPO (its
    `lr_schedule="linear"` applies on top)."""
    n = trainer.total_iterations
    if trainer.algo == "ppo":
        return jnp.full((n,), trainer.hparams["lr"])
    return jnp.asarray(LR_START * (LR_END / LR_START) ** np.linspace(0, 1, n), jnp.float32)


def runner(trainer):
    """jit(vmap over keys) of: init, then one `trainer.step` per learning rate. Returns the
    gains (S, I) and the metric `grad_variance` (S, I) or None."""

    def one(key, lrs):
        def body(state, lr):
            state = state.replace(hparams={**state.hparams, "lr": lr})
            state, metrics = trainer.step(state)
            K = state.params["policy"]["params"]["gain"]["kernel"][0, 0]
            return state, (K, metrics.get("grad_variance", jnp.zeros(())))

        return jax.lax.scan(body, trainer.init(key), lrs)[1]

    return jax.jit(jax.vmap(one, in_axes=(0, None)))


def summarise(errors):
    """Mean, std, median, min, max over seeds of `errors` (S,)."""
    return {k: float(f(errors)) for k, f in
            (("mean", np.mean), ("std", np.std), ("median", np.median), ("min", np.min),
             ("max", np.max))}


def plot(curves, steps_per_iteration, path):
    plt = common.pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, errors in curves.items():
        x = (np.arange(errors.shape[1]) + 1) * steps_per_iteration[name]
        mean = errors.mean(0)
        (line,) = ax.plot(x, mean, label=name)
        ax.fill_between(x, errors.min(0), errors.max(0), color=line.get_color(), alpha=0.15)
    ax.set_yscale("log")
    ax.set_xlabel("env steps per seed")
    ax.set_ylabel("|K - K*|")
    ax.set_title("LQR-v0 1-D (K* = -0.6153): mean over seeds, band = min..max")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    parser = common.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, help=f"seeds (default {FULL_SEEDS}; quick {QUICK_SEEDS})")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    num_seeds = args.seeds or (QUICK_SEEDS if args.quick else FULL_SEEDS)
    budget = QUICK_BUDGET if args.quick else FULL_BUDGET
    started = time.perf_counter()
    info = common.announce()

    trainers, env_params = make_trainers(budget)
    K_star = float(lqr.optimal_gain(env_params)[0, 0])
    keys = jax.random.split(jax.random.key(args.seed), num_seeds)
    results, curves = {}, {}
    for name, trainer in trainers.items():
        lrs = schedule(trainer)
        (gains, grad_var), compile_s, run_s = common.compile_and_run(runner(trainer), keys, lrs)
        gains, grad_var = np.asarray(gains, np.float64), np.asarray(grad_var, np.float64)
        errors = np.abs(gains - K_star)
        curves[name] = errors
        iterations = gains.shape[1]
        late = slice(iterations - iterations // 4, None)
        results[name] = {
            "iterations": iterations,
            "steps_per_iteration": trainer.steps_per_iteration,
            "compile_s": compile_s,
            "run_s": run_s,
            "final_error": summarise(errors[:, -1]),
            "final_gain_per_seed": gains[:, -1],
            "error_curve_mean": errors.mean(0),
            "error_curve_min": errors.min(0),
            "error_curve_max": errors.max(0),
            "error_per_seed_every_10": errors[:, ::10],
        }
        if trainer.algo == "reinforce":
            results[name]["grad_variance_early"] = float(grad_var[:, :10].mean())
            results[name]["grad_variance_late"] = float(grad_var[:, late].mean())
            results[name]["grad_variance_curve_mean"] = grad_var.mean(0)
        print(f"  {name}: compile {compile_s:.1f} s, run {run_s:.1f} s, final |K - K*| "
              f"{errors[:, -1].mean():.4f} (max {errors[:, -1].max():.4f})", flush=True)

    png = common.RESULTS_DIR / ("lqr_dare_quick.png" if args.quick else "lqr_dare.png")
    png.parent.mkdir(parents=True, exist_ok=True)
    plot(curves, {n: t.steps_per_iteration for n, t in trainers.items()}, png)

    rows = []
    for name, r in results.items():
        f = r["final_error"]
        rows.append([name, r["iterations"], f"{r['iterations'] * r['steps_per_iteration']:,}",
                     f"{f['mean']:.4f} ± {f['std']:.4f}", f"{f['max']:.4f}",
                     f"{r['compile_s']:.1f}", f"{r['run_s']:.1f}"])
    table = common.markdown_table(
        ["method", "iterations", "env steps / seed", f"final |K - K*| (mean ± std, {num_seeds} seeds)",
         "worst seed", "compile (s)", "run (s)"], rows)
    none_late = results["reinforce/none"]["grad_variance_late"]
    var_rows = [[b, f"{results[f'reinforce/{b}']['grad_variance_early']:.4g}",
                 f"{results[f'reinforce/{b}']['grad_variance_late']:.4g}",
                 f"{results[f'reinforce/{b}']['grad_variance_late'] / none_late:.3f}"]
                for b in BASELINES]
    var_table = common.markdown_table(
        ["baseline", "variance, first 10 iterations", "variance, last quarter",
         "last quarter / none"], var_rows)
    caption = (f"{common.device_label(info)}; load average at start {info['load_average']}; "
               f"total {time.perf_counter() - started:.0f} s")
    print()
    print(table)
    print()
    print(var_table)
    print()
    print(caption)

    payload = {
        "benchmark": "lqr_dare",
        "machine": info,
        "config": {
            "env": "LQR-v0", "state_dim": 1, "action_dim": 1, "horizon": HORIZON, "gamma": 0.99,
            "sigma": SIGMA, "seeds": num_seeds, "seed": args.seed, "budget_env_steps": budget,
            "reinforce": {"num_envs": REINFORCE_ENVS, "normalize_returns": False,
                          "lr_schedule": f"geometric {LR_START} -> {LR_END}"},
            "ppo": {"num_envs": PPO_ENVS, "num_steps": PPO_STEPS, "num_minibatches": 4,
                    "update_epochs": 4, "gae_lambda": 0.9, "lr": 3e-3, "lr_schedule": "linear",
                    "clip_value_loss": False, "normalize_rewards": True},
            "quick": args.quick,
        },
        "K_star": K_star,
        "results": results,
        "table": table,
        "grad_variance_table": var_table,
        "plot": str(png.relative_to(common.RESULTS_DIR.parent.parent)),
        "total_s": time.perf_counter() - started,
    }
    path = common.write_results("lqr_dare_quick" if args.quick else "lqr_dare", payload, args.out)
    print(f"wrote {path} and {png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
