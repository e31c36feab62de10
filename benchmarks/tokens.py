"""SFT then RL on the token tasks: GRPO's loss types, RLOO, PPO with a critic and REINFORCE from
the same SFT policy, at equal token budgets, seeds vmapped.

For each task a causal transformer is fitted by teacher forcing to demonstrations
(`jaxpg.algos.sft.fit_demonstrations`, deliberately short so the SFT policy is only partly right),
then every contender trains from it for the same number of iterations of the same number of
generated tokens (num_members x max_steps; GRPO's masked steps after an EOS count as generated).
GRPO-family contenders and REINFORCE keep the SFT policy as the KL reference (beta); PPO's
critic starts from scratch. After training, every seed's policy is scored on the same fresh
prompts (common random numbers): exact-match accuracy (sampled), mean completion length (EOS
included) and the exact per-token KL(pi || pi_SFT) on its own samples. Each contender's training
program is compiled ahead of time (`lower().compile()`, timed) and then run once.

    python -m benchmarks.tokens --quick          # Addition-v0 and DropZeros-v0, 2 seeds, short
    python -m benchmarks.tokens                  # all tasks, 8 seeds

Writes benchmarks/results/tokens[_quick].json and one plot per task (accuracy against tokens).
"""

import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

import envs
import jaxpg
from benchmarks import common
from jaxpg.algos import sft
from jaxpg.core.losses import LOSS_TYPES

TASKS = {
    "Copy-v0": dict(num_digits=3, reverse=True),
    "Addition-v0": dict(num_digits=2),
    "DropZeros-v0": dict(num_digits=6, zero_prob=0.5),
}
# Teacher-forcing updates per task: short enough to leave the SFT policy partly wrong.
SFT_UPDATES = {"Copy-v0": 600, "Addition-v0": 1000, "DropZeros-v0": 300}
NET = dict(policy="transformer", transformer_dim=32, transformer_layers=2, transformer_heads=2)
GROUPS, GROUP_SIZE = 16, 8
MEMBERS = GROUPS * GROUP_SIZE
LR, BETA = 5e-4, 0.04


def contenders(T):
    """name -> (algo, options); every one generates MEMBERS * T tokens per iteration."""
    grpo = dict(num_groups=GROUPS, group_size=GROUP_SIZE, lr=LR, beta=BETA)
    stream = dict(num_envs=MEMBERS, num_steps=T, lr=LR, gamma=1.0)
    return {
        **{f"grpo/{loss}": ("grpo", {**grpo, "loss_type": loss}) for loss in LOSS_TYPES},
        "rloo": ("grpo", {**grpo, "advantage": "rloo", "scale_rewards": "none"}),
        "ppo": ("ppo", {**stream, "num_minibatches": 4, "update_epochs": 2, "ent_coef": 0.0, "gae_lambda": 1.0}),
        "reinforce": ("reinforce", {**stream, "beta": BETA}),
    }


def score(trainer, policy_params, reference, key, num_episodes):
    """`(accuracy, mean completion length, mean per-token KL to reference)` on fresh prompts."""
    env, head, net = trainer.env, trainer.head, trainer.policy_net
    params = trainer.env_params.replace(reward="exact")
    T = params.max_steps_in_episode
    reset_key, rollout_key = jax.random.split(key)
    obs, state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(reset_key, num_episodes), params)
    step = jax.vmap(env.step, in_axes=(0, 0, 0, None))

    def one(carry, k):
        state, obs, running = carry
        logits, log_std = net.apply(policy_params, obs)
        ref_logits, _ = net.apply(reference, obs)
        action, _ = head.sample(logits, log_std, k)
        kl = jnp.sum(jax.nn.softmax(logits) * (jax.nn.log_softmax(logits) - jax.nn.log_softmax(ref_logits)), -1)
        obs, state, reward, terminated, truncated, _ = step(
            jax.random.split(k, num_episodes), state, head.to_env(action), params)
        out = (running * reward, running, running * kl)
        return (state, obs, running * (1.0 - (terminated | truncated))), out

    _, (reward, steps, kl) = jax.lax.scan(one, (state, obs, jnp.ones(num_episodes)), jax.random.split(rollout_key, T))
    return reward.sum(0).mean(), steps.sum(0).mean(), kl.sum() / steps.sum()


def run_task(task, seeds, iterations, sft_updates, eval_episodes, log):
    env, params = envs.make(task, **TASKS[task])
    T = params.max_steps_in_episode
    base = jaxpg.make_trainer("grpo", env, params, **NET)
    start = time.perf_counter()
    sft_params, nll = jax.jit(lambda k: sft.fit_demonstrations(k, base, 2048, sft_updates, 64, 3e-3))(jax.random.key(0))
    eval_key = jax.random.key(99)
    scorer = jax.jit(lambda p: score(base, p, sft_params, eval_key, eval_episodes))
    sft_acc, sft_len, _ = (float(x) for x in scorer(sft_params))
    log(f"{task}: SFT {sft_updates} updates, NLL {float(nll[-50:].mean()):.3f}, accuracy {sft_acc:.3f}, "
        f"length {sft_len:.2f} ({time.perf_counter() - start:.0f} s)")
    rows = {}
    for name, (algo, options) in contenders(T).items():
        trainer = jaxpg.make_trainer(algo, env, params, **NET, **options, policy_params=sft_params,
                                     total_timesteps=MEMBERS * T * iterations)
        train = jax.vmap(trainer.train)
        (state, metrics), compile_s, run_s = common.compile_and_run(train, jax.random.split(jax.random.key(1), seeds))
        acc, length, kl = (np.asarray(x) for x in jax.jit(jax.vmap(scorer))(state.params["policy"]))
        tokens = seeds * trainer.total_iterations * trainer.steps_per_iteration
        rows[name] = {
            "accuracy": acc.tolist(), "length": length.tolist(), "kl": kl.tolist(),
            "train_curve": np.asarray(metrics["episode_return"]).mean(0).tolist(),
            "tokens": np.asarray(metrics["env_steps"])[0].tolist(),
            "compile_s": compile_s, "run_s": run_s, "tokens_per_s": tokens / run_s,
        }
        log(f"  {name:14s} accuracy {acc.mean():.3f} (min {acc.min():.3f}), length {length.mean():.2f}, "
            f"KL {kl.mean():.3f}, {tokens / run_s:,.0f} tokens/s, compile {rows[name]['compile_s']:.1f} s")
    answer_len = float(np.mean([len(env.answer(env_prompt(env, params, k))) + 1 for k in range(256)]))
    return {"options": TASKS[task], "max_steps": T, "sft_updates": sft_updates, "sft_accuracy": sft_acc,
            "sft_length": sft_len, "correct_length": answer_len, "iterations": iterations, "rows": rows}


def env_prompt(env, params, seed):
    """The prompt string of the reset from `jax.random.key(seed)`."""
    from envs.tokens import SEP, decode

    _, state = env.reset(jax.random.key(seed), params)
    tokens = np.asarray(state.tokens)
    return decode(tokens[: int(np.argmax(tokens == SEP))])


def table(results, device):
    lines = [f"Device: {device}", "",
             "| task | contender | accuracy (mean, min over seeds) | SFT accuracy | length | KL to SFT | tokens/s "
             "| compile s |",
             "|---|---|---|---|---|---|---|---|"]
    for task, r in results.items():
        for name, row in r["rows"].items():
            lines.append(
                f"| {task} | {name} | {statistics.mean(row['accuracy']):.3f}, {min(row['accuracy']):.3f} | "
                f"{r['sft_accuracy']:.3f} | {statistics.mean(row['length']):.2f} | {statistics.mean(row['kl']):.3f} | "
                f"{row['tokens_per_s']:,.0f} | {row['compile_s']:.1f} |")
    if "DropZeros-v0" in results:
        r = results["DropZeros-v0"]
        g, d = (statistics.mean(r["rows"][f"grpo/{k}"]["length"]) for k in ("grpo", "dr_grpo"))
        lines += ["", f"DropZeros-v0 completion length: grpo {g:.2f}, dr_grpo {d:.2f}, SFT {r['sft_length']:.2f}, "
                      f"correct answers {r['correct_length']:.2f} (EOS included)"]
    return "\n".join(lines)


def plot(results, suffix):
    plt = common.pyplot()
    paths = []
    for task, r in results.items():
        fig, ax = plt.subplots(figsize=(6, 4))
        for name, row in r["rows"].items():
            ax.plot(row["tokens"], row["train_curve"], label=name)
        ax.axhline(r["sft_accuracy"], color="k", ls=":", label="SFT (eval)")
        ax.set(xlabel="tokens generated (per seed)", ylabel="exact match (training samples)", title=task)
        ax.legend(fontsize=7)
        path = common.RESULTS_DIR / f"tokens_{task.split('-')[0].lower()}{suffix}.png"
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(str(path))
    return paths


def main(argv=None) -> int:
    parser = common.base_parser(__doc__)
    parser.add_argument("--tasks", nargs="+", choices=list(TASKS), help="default: all (quick: Addition, DropZeros)")
    parser.add_argument("--seeds", type=int, help="vmapped seeds (default 8; quick 2)")
    parser.add_argument("--iterations", type=int, help="RL iterations (default 100; quick 20)")
    parser.add_argument("--sft-updates", type=int, help="teacher-forcing updates (default per task: SFT_UPDATES)")
    parser.add_argument("--eval-episodes", type=int, default=2048)
    args = parser.parse_args(argv)
    tasks = args.tasks or (["Addition-v0", "DropZeros-v0"] if args.quick else list(TASKS))
    seeds = args.seeds or (2 if args.quick else 8)
    iterations = args.iterations or (20 if args.quick else 100)
    info = common.announce()
    results = {}
    for task in tasks:
        updates = args.sft_updates or SFT_UPDATES[task]
        results[task] = run_task(task, seeds, iterations, updates, args.eval_episodes, print)
    suffix = "_quick" if args.quick else ""
    payload = {"machine": info, "seeds": seeds, "lr": LR, "beta": BETA, "members": MEMBERS, "network": NET,
               "tasks": results, "plots": plot(results, suffix)}
    path = common.write_results("tokens" + suffix, payload, args.out)
    print(table(results, common.device_label(info)))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
