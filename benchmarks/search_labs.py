"""The textbook's Chapter 8 labs on SearchRanking-v0, each as a table over vmapped seeds.

- Lab 8.1: REINFORCE on the 'rich' observation; entropy coefficient 0.01 against 0, and a
  learning-rate sweep {1e-5, 1e-4, 3e-4, 1e-3, 3e-3}: every learning rate, entropy setting and
  seed is one run of ONE compiled program (`jax.vmap` over the runs' keys and hparams).
- Lab 8.1b: vanilla REINFORCE (the `moving_average` scalar baseline) against REINFORCE with a
  learned value baseline, with the measured total variance of the per-episode gradient.
- Lab 8.3: Gaussian, Beta, squashed Gaussian and fixed-std Gaussian policies.
- Multi-session (the retention MDP): PPO against REINFORCE at the same simulated env steps.
- Fixed-action references on the same catalog: a = 0, a ~ U[-a_max, a_max]^10, and the best
  constant action of a simple search (the 21 axis actions 0 and +-a_max e_i plus random
  constants, each scored on separate search episodes; the winner is then scored afresh).

REINFORCE here is the lab's vanilla estimator: undiscounted returns (gamma 1 in the one-step
labs), no return normalisation (which would re-centre every scalar baseline on the batch mean),
Adam with global-norm clipping at 1. Every run of a lab trains on one catalog (`catalog_seed`)
with its own seed; then its mean action (the deterministic policy) is scored on the same
`--eval-episodes` fresh episodes as every reference: same users, queries and simulator noise
(common random numbers), so the differences to the references are paired. Tables give the
mean, std and range over seeds of that evaluation reward, the paired differences to each
reference, and the training return (sampled actions) over the last 10% of iterations.

Programs are compiled with XLA's backend optimisation level 1 (`--opt-level`): on a 2-core CPU
that compiles these programs about 2-3x faster than the default (3) for about 30% slower
steps, and gives the same numbers. Compile and run seconds are reported apart.

    python -m benchmarks.search_labs --quick     # 1,000 products, 8 seeds, 100 iterations
    python -m benchmarks.search_labs             # 10,000 products (the spec's), 300 iterations

Nine programs compile, 9 to 16 s each on a 2-core CPU: `--quick` took 166 s in all there
(load average about 2), 70% of it compiling. The full size simulates 10x the catalog per step
and 3x the iterations.
"""

import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

import envs
import jaxpg
from benchmarks import common

LRS = (1e-5, 1e-4, 3e-4, 1e-3, 3e-3)
DEFAULT_LR = 1e-3
ENT_COEFS = (0.0, 0.01)
DISTRIBUTIONS = ("gaussian", "beta", "squashed_gaussian", "fixed_std_gaussian")
NUM_ENVS = 64  # episodes per REINFORCE iteration
MULTI_MAX_SESSIONS = 8  # episodes average ~1.6 sessions; fewer than 1% reach 8
TEXTBOOK = {"random": 8.7, "reinforce": 11.56, "baseline": 13.19}
EVAL_SEED, SEARCH_SEED = 10_000, 20_000


def compile_and_run(fn, args, opt_level: int):
    """`(numpy outputs, compile_s, run_s)` of `fn(*args)` compiled at XLA backend `opt_level`."""
    out, compile_s, run_s = common.compile_and_run(fn, *args, xla_backend_optimization_level=opt_level)
    return jax.tree.map(np.asarray, out), compile_s, run_s


class Lab:
    """The environment, evaluation episodes and budgets shared by one family of runs."""

    def __init__(self, args, multi_session: bool):
        self.args, self.multi_session = args, multi_session
        options = dict(n_products=args.n_products, catalog_seed=args.catalog_seed)
        if multi_session:
            options.update(multi_session=True, max_sessions=MULTI_MAX_SESSIONS)
        self.env, self.env_params = envs.make("SearchRanking-v0", **options)
        self.horizon = int(self.env_params.max_steps_in_episode)
        self.eval_key = jax.random.key(EVAL_SEED + args.catalog_seed)
        self.a_max = float(self.env_params.a_max)

    def returns(self, policy, key, num_episodes=None):
        """Per-episode returns of `policy`; `key` is a traced argument of the program (a
        constant key would let XLA constant-fold the evaluation at compile time)."""
        return jaxpg.episode_returns(self.env, self.env_params, policy, key,
                               num_episodes or self.args.eval_episodes, self.horizon)

    def train(self, name, algo, seeds, hparams=None, **config):
        """Trains `seeds` runs (times the batched `hparams`) in one program, then scores each.

        `hparams` maps names to `(R,)` arrays; run r x seed s uses entry r and key s.

        Returns:
          dict of numpy arrays with leading axes `(R, seeds)` (R = 1 without `hparams`):
          `eval` (R, S, E) per-episode evaluation returns, `curve` (R, S, iterations) training
          returns, and `grad_variance` where recorded; plus timings and the trainer's config.
        """
        trainer = jaxpg.make_trainer(algo, self.env, self.env_params, **config)
        hparams = hparams or {}
        num_runs = len(next(iter(hparams.values()))) if hparams else 1
        keys = jax.random.split(jax.random.key(self.args.seed), seeds)
        batched = {k: jnp.asarray(v, jnp.float32) for k, v in hparams.items()}

        def one(key, hp, eval_key):
            state, metrics = trainer.train(key, hp)
            act = lambda obs, _: trainer.act(state, obs, deterministic=True)
            out = {"eval": self.returns(act, eval_key), "curve": metrics["episode_return"]}
            if "grad_variance" in metrics:
                out["grad_variance"] = metrics["grad_variance"]
            return out

        over_seeds = jax.vmap(one, in_axes=(0, None, None))
        fn = jax.vmap(over_seeds, in_axes=(None, 0, None)) if hparams else (
            lambda k, _, e: jax.tree.map(lambda x: x[None], over_seeds(k, {}, e)))
        out, compile_s, run_s = compile_and_run(fn, (keys, batched, self.eval_key), self.args.opt_level)
        steps = num_runs * seeds * trainer.total_iterations * trainer.steps_per_iteration
        print(f"  {name}: {num_runs} x {seeds} runs, {trainer.total_iterations} iterations, "
              f"compile {compile_s:.1f} s, run {run_s:.1f} s ({steps / run_s:,.0f} env steps/s)",
              flush=True)
        return {
            **out, "compile_s": compile_s, "run_s": run_s, "env_steps_simulated": steps,
            "iterations": trainer.total_iterations, "steps_per_iteration": trainer.steps_per_iteration,
            "config": {k: v for k, v in trainer.config.as_dict().items() if k != "progress"},
            "hparams": {k: float(v) for k, v in trainer.hparams.items()},
            "batched_hparams": {k: list(map(float, v)) for k, v in hparams.items()},
        }

    def references(self):
        """a = 0, uniform random and the best constant of a simple search, on the eval episodes."""
        args, a_max = self.args, self.a_max
        axis = np.concatenate([np.zeros((1, 10)), a_max * np.eye(10), -a_max * np.eye(10)])
        rng = np.random.default_rng(args.seed)
        candidates = np.concatenate(
            [axis, rng.uniform(-a_max, a_max, (args.search_candidates, 10))]).astype(np.float32)
        search_key = jax.random.key(SEARCH_SEED + args.catalog_seed)

        def constant(a):
            return lambda obs, _: jnp.broadcast_to(a, (obs.shape[0], 10))

        def uniform(obs, key):
            return jax.random.uniform(key, (obs.shape[0], 10), minval=-a_max, maxval=a_max)

        def fn(candidates, eval_key, search_key):
            scores = jax.vmap(lambda a: self.returns(constant(a), search_key,
                                                     args.search_episodes).mean())(candidates)
            best = candidates[jnp.argmax(scores)]
            return {
                "search_scores": scores, "best_action": best,
                "zero": self.returns(constant(jnp.zeros(10)), eval_key),
                "random": self.returns(uniform, eval_key),
                "best_constant": self.returns(constant(best), eval_key),
            }

        out, compile_s, run_s = compile_and_run(
            fn, (jnp.asarray(candidates), self.eval_key, search_key), args.opt_level)
        print(f"  references: {len(candidates)} candidates x {args.search_episodes} search "
              f"episodes, compile {compile_s:.1f} s, run {run_s:.1f} s", flush=True)
        order = np.argsort(-out["search_scores"])[:5]
        return {
            **out, "compile_s": compile_s, "run_s": run_s, "num_candidates": len(candidates),
            "top_candidates": [{"action": candidates[i], "search_mean": out["search_scores"][i]}
                               for i in order],
        }


REFERENCES = (("zero", "a = 0"), ("random", "uniform random"), ("best_constant", "best constant"))


def summarise(eval_returns, curves, refs, tail_fraction=0.1):
    """Per-run statistics: eval mean per seed, paired differences to each reference, train tail."""
    per_seed = eval_returns.mean(axis=-1)
    tail = max(1, int(round(curves.shape[-1] * tail_fraction)))
    return {
        "eval_per_seed": per_seed,
        "eval_mean": float(per_seed.mean()), "eval_std": float(per_seed.std()),
        "eval_min": float(per_seed.min()), "eval_max": float(per_seed.max()),
        # Standard error of one seed's mean over its evaluation episodes (averaged over seeds).
        "eval_episode_se": float(np.mean(eval_returns.std(axis=-1) / np.sqrt(eval_returns.shape[-1]))),
        "minus": {name: float((eval_returns - refs[name]).mean()) for name, _ in REFERENCES},
        "train_tail_mean": float(np.nanmean(curves[..., -tail:])),
        "curve_mean": np.nanmean(curves, axis=0), "curve_std": np.nanstd(curves, axis=0),
    }


def result_row(label, s, extra=()):
    return [
        label, f"{s['eval_mean']:.2f} ± {s['eval_std']:.2f}", f"{s['eval_min']:.2f} – {s['eval_max']:.2f}",
        *[f"{s['minus'][name]:+.2f}" for name, _ in REFERENCES],
        f"{s['train_tail_mean']:.2f}", *extra,
    ]


RESULT_HEADERS = ["policy", "eval reward (mean ± std over seeds)", "seed range",
                  "− a = 0", "− random", "− best constant", "train return (last 10%)"]


def reference_table(refs, label):
    rows = []
    for name, text in REFERENCES:
        r = refs[name]
        rows.append([f"{text} ({label})", f"{r.mean():.2f}", f"± {r.std() / np.sqrt(r.size):.2f} (SE over episodes)"])
    return common.markdown_table(["reference", "eval reward", "spread"], rows)


def plot(path, panels):
    """One subplot per lab: mean training return over seeds (± 1 std) against env steps."""
    plt = common.pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), squeeze=False)
    for ax, (title, curves, refs) in zip(axes[0], panels):
        for label, (steps, mean, std) in curves.items():
            line, = ax.plot(steps, mean, label=label)
            ax.fill_between(steps, mean - std, mean + std, color=line.get_color(), alpha=0.15)
        for (name, text), style in zip(REFERENCES, (":", "--", "-.")):
            ax.axhline(float(refs[name].mean()), color="gray", linestyle=style, label=text)
        ax.set_title(title)
        ax.set_xlabel("env steps simulated per run")
        ax.set_ylabel("training return (sampled actions)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    parser = common.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--n-products", type=int, help="catalog size (default 10,000; quick 1,000)")
    parser.add_argument("--iterations", type=int, help="REINFORCE iterations (default 300; quick 100)")
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--catalog-seed", type=int, default=0)
    parser.add_argument("--eval-episodes", type=int, help="per seed (default 4,096; quick 1,024)")
    parser.add_argument("--search-candidates", type=int, help="random constants (default 256; quick 64)")
    parser.add_argument("--search-episodes", type=int, help="per candidate (default 1,024; quick 512)")
    parser.add_argument("--opt-level", type=int, default=1, choices=(0, 1, 2, 3),
                        help="XLA backend optimisation level (default 1; XLA's own default is 3)")
    args = parser.parse_args(argv)
    quick = args.quick
    args.n_products = args.n_products or (1_000 if quick else 10_000)
    iterations = args.iterations or (100 if quick else 300)
    args.eval_episodes = args.eval_episodes or (1_024 if quick else 4_096)
    args.search_candidates = args.search_candidates or (64 if quick else 256)
    args.search_episodes = args.search_episodes or (512 if quick else 1_024)
    seeds = args.seeds
    started = time.perf_counter()
    info = common.announce(f"{args.n_products:,} products, {seeds} seeds, {iterations} iterations")

    single = Lab(args, multi_session=False)
    refs = single.references()
    reinforce = dict(num_envs=NUM_ENVS, total_timesteps=iterations * NUM_ENVS, normalize_returns=False,
                     gamma=1.0)

    # Lab 8.1 (and the vanilla / Gaussian rows of 8.1b and 8.3): one program for every run.
    sweep_lrs = list(LRS) + [DEFAULT_LR]
    sweep_ents = [0.0] * len(LRS) + [0.01]
    lab81 = single.train("lab 8.1 (lr x entropy, vanilla REINFORCE)", "reinforce", seeds,
                         {"lr": sweep_lrs, "ent_coef": sweep_ents}, baseline="moving_average",
                         record_grad_variance=True, **reinforce)
    value = single.train("lab 8.1b (value baseline)", "reinforce", seeds, {"lr": [DEFAULT_LR]},
                         baseline="value", record_grad_variance=True, **reinforce)
    dists = {}
    for dist in DISTRIBUTIONS[1:]:
        dists[dist] = single.train(f"lab 8.3 ({dist})", "reinforce", seeds, {"lr": [DEFAULT_LR]},
                                   baseline="moving_average", distribution=dist, **reinforce)

    def pick(run, r):
        return {k: run[k][r] for k in ("eval", "curve", "grad_variance") if k in run}

    runs = {f"lr {lr:g}": pick(lab81, i) for i, lr in enumerate(LRS)}
    runs["lr 0.001, ent 0.01"] = pick(lab81, len(LRS))
    stats = {name: summarise(r["eval"], r["curve"], refs) for name, r in runs.items()}
    vanilla = runs[f"lr {DEFAULT_LR:g}"]
    stats["value baseline"] = summarise(value["eval"][0], value["curve"][0], refs)
    for dist in DISTRIBUTIONS[1:]:
        stats[dist] = summarise(dists[dist]["eval"][0], dists[dist]["curve"][0], refs)

    # Multi-session: PPO against REINFORCE at the same simulated env steps per run.
    multi = Lab(args, multi_session=True)
    multi_refs = multi.references()
    multi_steps = iterations * NUM_ENVS * MULTI_MAX_SESSIONS // 2
    ppo_steps = 16
    ppo = multi.train("multi-session PPO", "ppo", seeds, num_envs=NUM_ENVS, num_steps=ppo_steps,
                      total_timesteps=multi_steps, normalize_rewards=True, lr=3e-4)
    rf_multi = multi.train("multi-session REINFORCE", "reinforce", seeds, {"lr": [DEFAULT_LR]},
                           baseline="moving_average", num_envs=NUM_ENVS,
                           total_timesteps=multi_steps, normalize_returns=False, gamma=0.99)
    multi_stats = {
        "PPO": summarise(ppo["eval"][0], ppo["curve"][0], multi_refs),
        "REINFORCE (moving average)": summarise(rf_multi["eval"][0], rf_multi["curve"][0], multi_refs),
    }

    # Tables.
    grad_var = lambda g: f"{np.mean(g):.3g}"
    early = lambda g: f"{np.mean(g[..., :10]):.3g}"
    t81_lr = common.markdown_table(RESULT_HEADERS, [
        result_row(f"REINFORCE lr {lr:g}", stats[f"lr {lr:g}"]) for lr in LRS])
    t81_ent = common.markdown_table(RESULT_HEADERS, [
        result_row("ent_coef 0", stats[f"lr {DEFAULT_LR:g}"]),
        result_row("ent_coef 0.01", stats["lr 0.001, ent 0.01"])])
    t81b = common.markdown_table(
        RESULT_HEADERS + ["grad variance, first 10 iterations", "grad variance, all iterations",
                          "textbook"], [
            result_row("vanilla (moving-average baseline)", stats[f"lr {DEFAULT_LR:g}"],
                       [early(vanilla["grad_variance"]), grad_var(vanilla["grad_variance"]),
                        f"{TEXTBOOK['reinforce']} (not reproducible; see spec)"]),
            result_row("learned value baseline", stats["value baseline"],
                       [early(value["grad_variance"]), grad_var(value["grad_variance"]),
                        f"{TEXTBOOK['baseline']} (not reproducible; see spec)"]),
        ])
    t83 = common.markdown_table(RESULT_HEADERS, [
        result_row(dist, stats[f"lr {DEFAULT_LR:g}"] if dist == "gaussian" else stats[dist])
        for dist in DISTRIBUTIONS])
    tmulti = common.markdown_table(RESULT_HEADERS, [
        result_row(name, s) for name, s in multi_stats.items()])
    tables = {
        "references": reference_table(refs, "one session"),
        "lab_8_1_lr": t81_lr, "lab_8_1_entropy": t81_ent, "lab_8_1b": t81b, "lab_8_3": t83,
        "multi_session_references": reference_table(multi_refs, f"multi-session, <= {MULTI_MAX_SESSIONS}"),
        "multi_session": tmulti,
    }
    caption = (
        f"{args.n_products:,} products, catalog_seed {args.catalog_seed}, {seeds} seeds vmapped per "
        f"program; REINFORCE {NUM_ENVS} episodes x {iterations} iterations, lr {DEFAULT_LR:g} unless "
        f"swept; eval = mean action on {args.eval_episodes:,} fresh episodes per seed, the same "
        f"episodes as the references (differences are paired); multi-session: "
        f"{multi_steps:,} simulated env steps per run for both; best constant "
        f"[{', '.join(f'{x:.2f}' for x in refs['best_action'])}]; textbook random {TEXTBOOK['random']} "
        f"(ours {refs['random'].mean():.2f}); {common.device_label(info)}; load average at start "
        f"{info['load_average']}")
    for name, table in tables.items():
        print(f"\n### {name}\n\n{table}")
    print(f"\n{caption}")

    # Plots: learning curves against env steps simulated per run.
    def curve(run_stats, steps_per_iteration):
        n = run_stats["curve_mean"].shape[-1]
        return (np.arange(1, n + 1) * steps_per_iteration, run_stats["curve_mean"], run_stats["curve_std"])

    spi = lab81["steps_per_iteration"]
    suffix = "_quick" if quick else ""
    png = common.RESULTS_DIR / f"search_labs{suffix}.png"
    plot(png, [
        ("Lab 8.1: learning rate (ent 0)", {f"lr {lr:g}": curve(stats[f"lr {lr:g}"], spi) for lr in LRS}, refs),
        ("Lab 8.1: entropy bonus", {"ent 0": curve(stats[f"lr {DEFAULT_LR:g}"], spi),
                                    "ent 0.01": curve(stats["lr 0.001, ent 0.01"], spi)}, refs),
        ("Lab 8.1b: baseline", {"moving average": curve(stats[f"lr {DEFAULT_LR:g}"], spi),
                                "value": curve(stats["value baseline"], spi)}, refs),
        ("Lab 8.3: distribution", {d: curve(stats[f"lr {DEFAULT_LR:g}"] if d == "gaussian" else stats[d], spi)
                                   for d in DISTRIBUTIONS}, refs),
        ("Multi-session: PPO vs REINFORCE", {
            "PPO": curve(multi_stats["PPO"], ppo["steps_per_iteration"]),
            "REINFORCE": curve(multi_stats["REINFORCE (moving average)"], rf_multi["steps_per_iteration"]),
        }, multi_refs),
    ])
    elapsed = time.perf_counter() - started
    print(f"wrote {png}\ntotal {elapsed:.0f} s")

    strip = lambda run: {k: v for k, v in run.items() if k not in ("eval", "curve")}
    payload = {
        "benchmark": "search_labs",
        "machine": info,
        "config": {
            "quick": quick, "n_products": args.n_products, "catalog_seed": args.catalog_seed,
            "seeds": seeds, "seed": args.seed, "iterations": iterations, "num_envs": NUM_ENVS,
            "eval_episodes": args.eval_episodes, "search_candidates": args.search_candidates,
            "search_episodes": args.search_episodes, "opt_level": args.opt_level,
            "lrs": LRS, "default_lr": DEFAULT_LR, "ent_coefs": ENT_COEFS,
            "multi_session": {"max_sessions": MULTI_MAX_SESSIONS, "env_steps_per_run": multi_steps,
                              "ppo_num_steps": ppo_steps},
            "textbook": TEXTBOOK,
        },
        "references": {
            "one_session": {k: float(np.mean(refs[k])) for k, _ in REFERENCES},
            "multi_session": {k: float(np.mean(multi_refs[k])) for k, _ in REFERENCES},
            "best_action": refs["best_action"], "multi_best_action": multi_refs["best_action"],
            "top_candidates": refs["top_candidates"], "multi_top_candidates": multi_refs["top_candidates"],
            "timings": {"compile_s": [refs["compile_s"], multi_refs["compile_s"]],
                        "run_s": [refs["run_s"], multi_refs["run_s"]]},
        },
        "stats": stats,
        "multi_session_stats": multi_stats,
        "runs": {"lab_8_1": strip(lab81), "value_baseline": strip(value),
                 **{f"dist_{d}": strip(r) for d, r in dists.items()},
                 "multi_ppo": strip(ppo), "multi_reinforce": strip(rf_multi)},
        "tables": tables,
        "caption": caption,
        "total_s": elapsed,
    }
    path = common.write_results(f"search_labs{suffix}", payload, args.out)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
