"""RLHF on SearchRanking-v0 (the textbook's Lab 8.4): SFT, a reward model, then KL-regularised RL.

Every phase trains all seeds in one vmapped program on one catalog (`catalog_seed` 0):

1. SFT: the expert template policy (`envs.search_ranking.expert_action`) acts with Gaussian
   noise (std `demo_noise`) in `demos` fresh episodes; a Gaussian MLP policy (the trainers'
   own network) is behaviour-cloned on those (observation, action) pairs by NLL.
2. Reward model: `pairs` preference pairs (two actions in the same state, each an
   expert-plus-noise action or a uniform one), labelled by the true reward (the mean of
   `rater_samples` sessions each, common random numbers; noise-free rater unless
   `--temperature`), train an MLP r_phi(obs, action) with the Bradley-Terry loss; accuracy is
   on held-out pairs, ties excluded.
3. RL fine-tuning from the SFT policy on the learned reward (`envs.wrappers.LearnedReward`),
   with a KL penalty to the SFT policy of weight beta: GRPO (k3 KL in the loss) and REINFORCE
   (k1 penalty in the reward), every seed and beta of one algorithm in one vmapped program.

Every policy is then scored on the same `eval` fresh episodes (common random numbers; actions
sampled from the policy): true reward, learned reward (each seed's own reward model; its
scale is arbitrary, so compare it within a column only) and the exact KL to the seed's SFT
policy, averaged over states. Tables give the mean over seeds and a 95% t-interval.

    python -m benchmarks.search_rlhf --quick     # 5 seeds, 3 betas, 150 iterations
    python -m benchmarks.search_rlhf             # 8 seeds, 5 betas, 300 iterations
"""

import json
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import envs
import jaxpg
from benchmarks import common
from envs.search_ranking import expert_action
from envs.wrappers import LearnedReward
from jaxpg.algos import rlhf

QUICK = dict(seeds=5, betas=(0.0, 0.1, 1.0), iterations=150)
FULL = dict(seeds=8, betas=(0.0, 0.01, 0.1, 0.3, 1.0), iterations=300)
CONFIG = dict(
    n_products=1000, observation="rich", hidden_sizes=(64, 64),
    demos=4096, demo_noise=1.0, sft_updates=1000, sft_lr=3e-3, batch_size=256,
    pairs=8192, held_out_pairs=2048, rater_samples=4, pair_noise=1.5, rm_hidden=(64, 64),
    rm_updates=2000, rm_lr=1e-3,
    grpo=dict(num_groups=16, group_size=8, lr=3e-4),
    # With normalize_returns (the default) a scalar baseline is refused: standardising removes it.
    reinforce=dict(num_envs=128, baseline="none", lr=3e-4),
    eval_episodes=8192, table_beta=0.1,
)


# Student t 0.975 quantiles for 1..12 degrees of freedom (no scipy dependency); 1.96 beyond.
T_975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179)


def interval(values) -> tuple[float, float]:
    """Mean and the half-width of its 95% t-interval over the leading (seed) axis."""
    values = np.asarray(values, np.float64)
    n = values.shape[0]
    t = T_975[n - 2] if 2 <= n <= len(T_975) + 1 else 1.96
    half = t * values.std(ddof=1) / np.sqrt(n) if n > 1 else float("nan")
    return float(values.mean()), float(half)


def fmt(values, digits=2) -> str:
    mean, half = interval(values)
    return f"{mean:.{digits}f} ± {half:.{digits}f}"


def build(config, temperature):
    env, env_params = envs.make("SearchRanking-v0", n_products=config["n_products"],
                                observation=config["observation"])
    concrete_params = env_params
    a_max = float(env_params.a_max)
    expert = lambda obs: expert_action(obs, env)
    base = jaxpg.make_trainer("grpo", env, env_params, hidden_sizes=config["hidden_sizes"])
    model = rlhf.RewardModel(config["rm_hidden"], action_scale=a_max)

    def sampler(key, obs):
        """Half the actions near the expert's, half uniform: the RM must rank both kinds."""
        k_noise, k_uniform, k_pick = jax.random.split(key, 3)
        shape = (obs.shape[0], 10)
        near = jnp.clip(expert(obs) + config["pair_noise"] * jax.random.normal(k_noise, shape), -a_max, a_max)
        uniform = jax.random.uniform(k_uniform, shape, minval=-a_max, maxval=a_max)
        return jnp.where(jax.random.bernoulli(k_pick, 0.5, (obs.shape[0], 1)), near, uniform)

    def sft_phase(key, env_params):
        k_demo, k_bc = jax.random.split(key)
        demos = rlhf.collect_demonstrations(k_demo, env, env_params, expert, config["demos"],
                                            noise_std=config["demo_noise"])
        initial = rlhf.policy_nll(base.policy_net.init(k_bc, demos.obs[:1]), base, demos)
        sft, nll = rlhf.behaviour_cloning(k_bc, base, demos, config["sft_updates"], config["batch_size"],
                                          config["sft_lr"])
        return sft, {"nll_initial": initial, "nll_final": rlhf.policy_nll(sft, base, demos), "nll_curve": nll}

    def reference_rewards(key, rm, env_params):
        """Mean true and learned reward of the zero action and the noise-free expert on the
        evaluation episodes (both rules stepped in one vmapped call: one copy of the env)."""
        reset_key, step_key = jax.random.split(key)
        n = config["eval_episodes"]
        obs, state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(reset_key, n), env_params)
        actions = jnp.stack([jnp.zeros((n, 10)), expert(obs)])
        keys = jax.random.split(step_key, n)
        step = jax.vmap(jax.vmap(env.step, in_axes=(0, 0, 0, None)), in_axes=(None, None, 0, None))
        true = step(keys, state, actions, env_params)[2].mean(axis=1)
        learned = jax.vmap(lambda a: model.apply(rm, obs, a))(actions).mean(axis=1)
        names = ("zero", "expert")
        return {name: {"true_reward": true[i], "learned_reward": learned[i]} for i, name in enumerate(names)}

    def rm_phase(key, sft, env_params, eval_key):
        k_pairs, k_label, k_fit = jax.random.split(key, 3)
        # One collection, split into training and held-out pairs; the held-out labels are the
        # noise-free rater's, the training labels are redrawn at the chosen temperature.
        pairs = rlhf.collect_preferences(k_pairs, env, env_params, sampler, config["pairs"] + config["held_out_pairs"],
                                         config["rater_samples"], 0.0)
        train = jax.tree.map(lambda x: x[: config["pairs"]], pairs)
        test = jax.tree.map(lambda x: x[config["pairs"]:], pairs)
        train = train._replace(label=rlhf.rater_labels(k_label, train.reward_a, train.reward_b, temperature))
        rm, losses = rlhf.train_reward_model(k_fit, model, train, config["rm_updates"], config["batch_size"],
                                             config["rm_lr"])
        wrapped = LearnedReward(env, rlhf.reward_function(model, rm))
        # The trainer is only a holder of the policy network here; its (concrete) env_params are
        # the same catalog as the traced argument that the evaluation uses.
        with jax.ensure_compile_time_eval():
            scorer = jaxpg.make_trainer("grpo", wrapped, concrete_params, hidden_sizes=config["hidden_sizes"])
        sft_report = rlhf.policy_rewards(scorer, sft, eval_key, config["eval_episodes"], reference_params=sft,
                                         env_params=env_params)
        refs = reference_rewards(eval_key, rm, env_params)
        return rm, {
            "accuracy_held_out": rlhf.pairwise_accuracy(rm, model, test),
            "accuracy_train": rlhf.pairwise_accuracy(rm, model, train),
            "tie_fraction_held_out": jnp.mean(test.label == 0.5),
            "loss_curve": losses,
            "sft": jax.tree.map(jnp.mean, sft_report),
            **refs,
        }

    def rl_phase(algo, iterations, key, sft, rm, beta, eval_key):
        wrapped = LearnedReward(env, rlhf.reward_function(model, rm))
        options = dict(config[algo])
        per_iteration = (options["num_groups"] * options["group_size"] if algo == "grpo" else options["num_envs"])
        # Built inside the vmapped program (one SFT policy and reward model per seed): under
        # ensure_compile_time_eval the action bounds the trainer reads from env_params stay
        # concrete instead of becoming tracers of this trace.
        with jax.ensure_compile_time_eval():
            trainer = jaxpg.make_trainer(algo, wrapped, env_params, policy_params=sft,
                                         hidden_sizes=config["hidden_sizes"],
                                         total_timesteps=per_iteration * iterations, **options)
        state, metrics = trainer.train(key, {"beta": beta})
        report = rlhf.policy_rewards(trainer, state, eval_key, config["eval_episodes"], reference_params=sft)
        curves = {name: metrics[name] for name in ("episode_return", "kl_to_reference")}
        return {**jax.tree.map(jnp.mean, report), "curves": curves}

    return env, env_params, sft_phase, rm_phase, rl_phase


def main(argv=None) -> int:
    parser = common.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, help="seeds (default 8; quick 5)")
    parser.add_argument("--iterations", type=int, help="RL iterations (default 300; quick 150)")
    parser.add_argument("--temperature", type=float, default=0.0,
                        help="rater temperature for the training labels (0: noise-free)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", default=None, help="plot path (default benchmarks/results/search_rlhf.png)")
    parser.add_argument("--render", metavar="JSON", default=None,
                        help="re-render tables and plot from a results JSON's raw numbers, without training")
    args = parser.parse_args(argv)
    if args.render:
        payload = json.loads(Path(args.render).read_text())
        render(payload, Path(args.plot or payload["plot"]))
        common.write_results("unused", payload, args.render)
        return 0
    sizes = dict(QUICK if args.quick else FULL)
    seeds = args.seeds or sizes["seeds"]
    iterations = args.iterations or sizes["iterations"]
    betas = sizes["betas"]
    started = time.perf_counter()
    info = common.announce()

    env, env_params, sft_phase, rm_phase, rl_phase = build(CONFIG, args.temperature)
    root = jax.random.key(args.seed)
    sft_keys, rm_keys, rl_keys = (jax.random.split(k, seeds) for k in jax.random.split(root, 3))
    eval_key = jax.random.key(args.seed + 10_000)  # shared: every policy meets the same users
    timings = {}

    def timed(name, fn, *args):
        out, compile_s, run_s = common.compile_and_run(fn, *args)
        timings[name] = {"compile_s": compile_s, "run_s": run_s}
        print(f"  {name}: compile {compile_s:.1f} s, run {run_s:.1f} s", flush=True)
        return out

    sft, sft_stats = timed("sft", jax.jit(jax.vmap(sft_phase, in_axes=(0, None))), sft_keys, env_params)
    rm, rm_stats = timed("reward_model", jax.jit(jax.vmap(rm_phase, in_axes=(0, 0, None, None))),
                         rm_keys, sft, env_params, eval_key)
    beta_array = jnp.asarray(betas, jnp.float32)
    rl = {}
    for algo in ("grpo", "reinforce"):
        run = lambda k, s, r, b, algo=algo: rl_phase(algo, iterations, k, s, r, b, eval_key)
        over_betas = jax.vmap(run, in_axes=(None, None, None, 0))
        rl[algo] = timed(algo, jax.jit(jax.vmap(over_betas, in_axes=(0, 0, 0, None))), rl_keys, sft, rm, beta_array)

    to_np = lambda tree: jax.tree.map(np.asarray, tree)
    sft_stats, rm_stats, rl = to_np(sft_stats), to_np(rm_stats), to_np(rl)
    default_plot = common.RESULTS_DIR / ("search_rlhf_quick.png" if args.quick else "search_rlhf.png")
    plot_path = Path(args.plot) if args.plot else default_plot
    payload = {
        "benchmark": "search_rlhf", "machine": info,
        "config": {**CONFIG, "seeds": seeds, "iterations": iterations, "betas": betas, "quick": args.quick,
                   "seed": args.seed, "temperature": args.temperature, "catalog_seed": 0},
        "timings_s": timings, "sft": sft_stats, "reward_model": rm_stats, "rl": rl,
        "plot": str(plot_path), "total_s": time.perf_counter() - started,
    }
    render(payload, plot_path)
    print(f"total {payload['total_s']:.0f} s")
    path = common.write_results("search_rlhf_quick" if args.quick else "search_rlhf", payload, args.out)
    print(f"wrote {path} and {plot_path}")
    return 0


def render(payload: dict, plot_path: Path) -> None:
    """Adds tables, the beta = 0 drift and a caption to `payload` (raw numbers from a run or its
    JSON), prints them and draws the plot."""
    to_np = lambda tree: jax.tree.map(np.asarray, tree, is_leaf=lambda x: isinstance(x, list))
    sft_stats, rm_stats, rl = (to_np(payload[k]) for k in ("sft", "reward_model", "rl"))
    config, info, betas = payload["config"], payload["machine"], payload["config"]["betas"]
    sft_true, sft_learned = rm_stats["sft"]["true_reward"], rm_stats["sft"]["learned_reward"]
    sft_table = common.markdown_table(
        ["policy", "NLL before", "NLL after", "true reward", "learned reward", "KL to SFT"],
        [["zero action", "", "", fmt(rm_stats["zero"]["true_reward"]), fmt(rm_stats["zero"]["learned_reward"]), ""],
         ["expert (noise-free)", "", "", fmt(rm_stats["expert"]["true_reward"]),
          fmt(rm_stats["expert"]["learned_reward"]), ""],
         ["SFT (sampled)", fmt(sft_stats["nll_initial"]), fmt(sft_stats["nll_final"]),
          fmt(sft_true), fmt(sft_learned), "0"]])
    rm_table = common.markdown_table(
        ["held-out pairwise accuracy", "train accuracy", "held-out ties (excluded)", "BT loss start -> end"],
        [[fmt(rm_stats["accuracy_held_out"], 3), fmt(rm_stats["accuracy_train"], 3),
          fmt(rm_stats["tie_fraction_held_out"], 3),
          f"{rm_stats['loss_curve'][:, :50].mean():.3f} -> {rm_stats['loss_curve'][:, -50:].mean():.3f}"]])
    rl_rows = [["SFT (start)", "", fmt(sft_true), "", fmt(sft_learned), "", "0"]]
    for algo in ("grpo", "reinforce"):
        r = rl[algo]
        for b, beta in enumerate(betas):
            rl_rows.append([{"grpo": "GRPO", "reinforce": "KL-REINFORCE"}[algo], f"{beta:g}",
                            fmt(r["true_reward"][:, b]), fmt(r["true_reward"][:, b] - sft_true),
                            fmt(r["learned_reward"][:, b]), fmt(r["learned_reward"][:, b] - sft_learned),
                            fmt(r["kl"][:, b])])
    rl_table = common.markdown_table(
        ["algorithm", "beta", "true reward", "true − SFT (paired)", "learned reward", "learned − SFT (paired)",
         "KL to SFT"], rl_rows)
    drift = {algo: {"true_gain_over_sft": interval(rl[algo]["true_reward"][:, 0] - sft_true),
                    "learned_gain_over_sft": interval(rl[algo]["learned_reward"][:, 0] - sft_learned)}
             for algo in ("grpo", "reinforce")}
    caption = (f"{config['seeds']} seeds vmapped per phase; {config['iterations']} RL iterations; catalog 0 with "
               f"{config['n_products']} products; every policy scored on the same {config['eval_episodes']} "
               f"evaluation episodes (so the zero action and the expert have no spread over seeds); mean ± 95% "
               f"t-interval over seeds; learned rewards are each seed's own reward model (arbitrary offset: "
               f"compare the paired columns); {common.device_label(info)}; load average at start "
               f"{[round(x, 1) for x in info['load_average']]}")
    print()
    print("SFT\n\n" + sft_table + "\n\nReward model\n\n" + rm_table
          + "\n\nRL fine-tuning from SFT on the learned reward\n\n" + rl_table)
    print()
    for algo, d in drift.items():
        print(f"{algo} beta=0: true reward {d['true_gain_over_sft'][0]:+.2f} ± {d['true_gain_over_sft'][1]:.2f} "
              f"over SFT, learned reward {d['learned_gain_over_sft'][0]:+.2f} ± {d['learned_gain_over_sft'][1]:.2f}")
    print(caption)
    plot(plot_path, betas, rm_stats, rl)
    payload.update(drift_beta0=drift, tables={"sft": sft_table, "reward_model": rm_table, "rl": rl_table},
                   caption=caption)


def plot(path, betas, rm_stats, rl):
    """True reward (left axis) and learned reward (right axis) gained over the SFT policy
    (paired per seed: each seed's reward model has its own offset) against KL to SFT, one point
    per beta (mean over seeds, 95% bars) plus SFT at the origin; one panel per algorithm."""
    plt = common.pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, algo in zip(axes, ("grpo", "reinforce")):
        r = rl[algo]
        kl = np.array([0.0] + [interval(r["kl"][:, b])[0] for b in range(len(betas))])
        order = np.argsort(kl)
        labels = ["SFT"] + [f"β={b:g}" for b in betas]
        twin = ax.twinx()
        for axis, name, color in ((ax, "true_reward", "C0"), (twin, "learned_reward", "C3")):
            sft = rm_stats["sft"][name]
            points = np.array([(0.0, 0.0)] + [interval(r[name][:, b] - sft) for b in range(len(betas))])
            axis.errorbar(kl[order], points[order, 0], yerr=points[order, 1], marker="o", color=color, capsize=3)
            axis.set_ylabel(f"{name.replace('_', ' ')} − SFT", color=color)
            if name == "true_reward":
                for x, y, label in zip(kl, points[:, 0], labels):
                    ax.annotate(label, (x, y), textcoords="offset points", xytext=(4, -12), fontsize=8)
        ax.axhline(0.0, color="0.7", lw=0.8)
        ax.set_xlabel("KL(π || π_SFT), mean over states")
        ax.set_title({"grpo": "GRPO (k3 KL in the loss)", "reinforce": "REINFORCE (KL penalty in the reward)"}[algo])
    fig.suptitle("SearchRanking RLHF: gain in true (blue) and learned (red) reward over SFT against KL to SFT")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
