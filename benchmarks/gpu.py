"""The GPU suite in one command: env throughput, PPO up to 2,048 agents, SearchRanking, REINFORCE and GRPO.

On one GPU the full suite is sized to finish in under 8 minutes; `--quick` shrinks every section
so that the whole suite runs on a 2-core CPU in under 2 minutes (a check that it runs, not a speed
figure). Sections (`--only` picks a subset):

- `cartpole_env`: raw CartPole-v1 env steps/s, ours against gymnax's, alternated A B A B in one
  process (`env_throughput.bench_size`), at N = 2^10, 2^12, ..., 2^20 parallel envs plus N = 2,000,
  the size of gymnax's published figure (0.05 s per 1M steps on an A100, i.e. 20 M steps/s).
  Quick: N = 2^10 and 2^12.
- `ppo`: jaxpg PPO against rejax on PureJaxRL's CartPole config (`ppo_cartpole.jaxpg_config` and
  `ppo_cartpole.make_rejax`: 4 envs x 128 steps, 976 iterations = 499,712 env steps per agent) at 1,
  64 and 2,048 vmapped seeds; compile (`lower().compile()`, no run spent on it) apart from the
  steady run, alternated (`common.compile_then_alternate`); the greedy evaluation return of
  every final policy and jaxpg's final training return. The 2,048-seed rows carry PureJaxRL's
  published time (2,048 agents in about 98 s on an A100) and the goal (under 40 s on an
  H100/H200). Quick: 1 and 4 seeds, 16 iterations.
- `search_ranking`: SearchRanking-v0 env steps/s (10,000-product catalog) at 1,024 to 65,536
  envs. Quick: 1,000 products, 256 envs.
- `reinforce_grpo`: jaxpg REINFORCE and GRPO on CartPole-v1 with their `jaxpg.presets` settings at
  2,048 vmapped seeds, each seed given PPO's 500k env steps (the presets' own runs are 1M and
  3.2M steps; their time is extrapolated from the measured seconds per iteration). Compile and run
  apart, env steps/s (masked steps after an episode's end included, as the trainers count them).
  Quick: 4 seeds, 32,000 steps each.
- `recurrent`: jaxpg's GRU PPO on PureJaxRL's recurrent CartPole config (`benchmarks/memory.py`)
  at 1 and 256 vmapped seeds x 131k env steps, compile apart from the steady run; PureJaxRL's own
  `ppo_rnn.py` alternated beside it when `$PUREJAXRL` names a checkout of it (the changes
  `benchmarks/memory.py` makes to it for today's flax and gymnax are printed). Quick: 1 seed, 8
  iterations.
- `tokens`: GRPO on Addition-v0 with its preset's causal transformer: generated tokens/s at 4,096
  groups of 8 completions (quick: 16 groups).
- `locomotion`: jaxpg's PPO against brax's own (`brax.training.agents.ppo`) on brax's `ant`
  (`spring`), alternated in one process with the same settings (`benchmarks/suites.py`'s `ANT`:
  brax's PPO settings for ant, (64, 64) networks): 4,096 envs x 2M env steps, compile apart from
  the steady rate. Needs the `brax` extra (skipped with a note without it). Quick: 64 envs, 960
  steps.

Writes `benchmarks/results/gpu.json` (`gpu_quick.json`; or `--out`) with the machine, versions,
config and every raw timing, and the Markdown tables next to it (`gpu.md`, `gpu_quick.md`).
Timings on a CPU answer "does it run"; quote only GPU runs, with the device named.

    python -m benchmarks.gpu                       # one GPU, under 8 minutes
    python -m benchmarks.gpu --quick               # 2-core CPU, under 2 minutes
    python -m benchmarks.gpu --only ppo reinforce_grpo
"""

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

import jax
import numpy as np

import envs
import jaxpg
from benchmarks import common, env_throughput, memory, ppo_cartpole

SECTIONS = ("cartpole_env", "ppo", "search_ranking", "reinforce_grpo", "recurrent", "tokens", "locomotion")

# Published figures, quoted with their device.
PUREJAXRL_2048_AGENTS_S = 98.0  # PureJaxRL: 2,048 CartPole PPO agents x 500k steps, A100
GYMNAX_S_PER_1M_STEPS = 0.05  # gymnax README: CartPole, 2,000 envs, A100
GYMNAX_REFERENCE_ENVS = 2_000
GOAL_2048_AGENTS_S = 40.0  # ours, on an H100/H200
GOAL_SUITE_S = {"full": 8 * 60, "quick": 2 * 60}

# SearchRanking scores the whole catalog for every env at every step, so its temporaries grow as
# N x n_products: at 65,536 envs x 10,000 products one float per product is 2.6 GB, and XLA keeps
# about 10-14 of them (0.4-0.57 MB per env measured on the CPU; the JSON records what the GPU
# needs). The scan reuses its body's buffers, so the number of steps per call sets the time, not
# the memory. A size whose estimate with this margin passes 80% of the device's memory is skipped
# with a note instead of running out of memory.
SEARCH_FLOATS_PER_PRODUCT = 16


@dataclasses.dataclass(frozen=True)
class Sizes:
    """Every size knob of the suite; `FULL` (one GPU), `QUICK` (2-core CPU), `SMOKE` (tests)."""

    cartpole_envs: tuple[int, ...]
    cartpole_budget: int  # env steps per timed call: the scan shortens at large N to fit it
    cartpole_max_steps: int
    cartpole_repeats: int
    ppo_seeds: tuple[int, ...]
    ppo_iterations: int
    ppo_rounds: tuple[int, ...]  # alternated rounds, one per entry of ppo_seeds
    eval_episodes: int
    search_envs: tuple[int, ...]
    search_products: int
    search_budget: int
    search_max_steps: int
    search_repeats: int
    pg_seeds: int
    pg_timesteps: int  # env steps per seed for REINFORCE and GRPO
    token_groups: int  # GRPO groups per iteration on Addition-v0 (8 completions each)
    token_iterations: int
    gru_seeds: tuple[int, ...] = (1,)
    gru_iterations: int = 2  # of 512 env steps per seed (PureJaxRL's recurrent config)
    ant_envs: int = 64  # brax's ant (benchmarks/suites.py's ANT settings at this many envs)
    ant_timesteps: int = 3 * 64 * 5  # env steps per run, rounded up to brax's three epochs
    ant_seeds: int = 1


# CartPole at 2^20 envs: 64 steps per call (2^26 budget); the per-step key and action pools
# (env_throughput.POOL = 64 entries) take 64 x 2^20 x (8 + 4) bytes = 0.8 GB, the state 24 MB.
FULL = Sizes(
    cartpole_envs=(2**10, GYMNAX_REFERENCE_ENVS, 2**12, 2**14, 2**16, 2**18, 2**20),
    cartpole_budget=1 << 26, cartpole_max_steps=1000, cartpole_repeats=9,
    ppo_seeds=(1, 64, 2048), ppo_iterations=ppo_cartpole.FULL_ITERS, ppo_rounds=(3, 2, 1),
    eval_episodes=32,
    # 2^18 steps per call: 256 steps at 1,024 envs, 4 at 65,536.
    search_envs=(1024, 4096, 16384, 65536), search_products=10_000, search_budget=1 << 18,
    search_max_steps=256, search_repeats=5,
    pg_seeds=2048, pg_timesteps=500_000,
    token_groups=4096, token_iterations=16,
    gru_seeds=(1, 256), gru_iterations=256,
    ant_envs=4096, ant_timesteps=2_000_000, ant_seeds=1,
)
QUICK = Sizes(
    cartpole_envs=(2**10, 2**12), cartpole_budget=1 << 21, cartpole_max_steps=200, cartpole_repeats=5,
    # Compiling is most of a quick run (8-25 s per program on 2 cores), so one size per section
    # beyond CartPole's and few seeds.
    ppo_seeds=(1, 4), ppo_iterations=16, ppo_rounds=(3, 1), eval_episodes=8,
    search_envs=(256,), search_products=1000, search_budget=1 << 12, search_max_steps=64,
    search_repeats=3,
    pg_seeds=4, pg_timesteps=32_000,
    token_groups=16, token_iterations=4,
    gru_seeds=(1,), gru_iterations=8,
)
SMOKE = Sizes(
    cartpole_envs=(64,), cartpole_budget=64 * 20, cartpole_max_steps=20, cartpole_repeats=2,
    ppo_seeds=(1, 2), ppo_iterations=2, ppo_rounds=(1, 1), eval_episodes=2,
    search_envs=(8,), search_products=100, search_budget=8 * 4, search_max_steps=4, search_repeats=2,
    pg_seeds=2, pg_timesteps=16_000,
    token_groups=2, token_iterations=1,
)


def scan_steps(num_envs: int, budget: int, cap: int) -> int:
    """Steps per timed call: `cap`, or fewer where `num_envs * steps` would pass `budget`."""
    return max(1, min(cap, budget // num_envs))


def device_memory_bytes() -> int | None:
    """The first device's memory limit (GPU: what XLA may allocate), or None where unknown (CPU)."""
    return common.device_memory()["limit"]


def _seconds(x) -> str:
    return common.fmt(x, ".2f" if x is not None and x < 10 else ".1f")


def _mean_std(values) -> str:
    values = np.asarray(values, dtype=float)
    return "—" if values.size == 0 else f"{values.mean():.1f} ± {values.std():.1f}"


# cartpole_env ---------------------------------------------------------------------------------

def cartpole_env(sizes: Sizes, seed: int) -> dict:
    ours, twin = env_throughput.build_env("CartPole-v1")
    results, rows = [], []
    for n in sizes.cartpole_envs:
        steps = scan_steps(n, sizes.cartpole_budget, sizes.cartpole_max_steps)
        r = env_throughput.bench_size(ours, twin, n, steps, sizes.cartpole_repeats, seed)
        rate, twin_rate = r["steps_per_s"]["ours"], r["steps_per_s"]["gymnax"]
        ratio = r["ratio_ours_over_gymnax"]
        r["s_per_1m_steps"] = {name: 1e6 / x for name, x in r["steps_per_s"].items()}
        published = n == GYMNAX_REFERENCE_ENVS
        if published:
            r["published_gymnax_a100_s_per_1m_steps"] = GYMNAX_S_PER_1M_STEPS
        results.append(r)
        rows.append([
            f"{n:,}", f"{steps:,}", common.fmt_rate(rate), common.fmt_rate(twin_rate),
            f"{ratio:.2f}x", f"{r['s_per_1m_steps']['ours']:.4f}", f"{r['s_per_1m_steps']['gymnax']:.4f}",
            f"gymnax {GYMNAX_S_PER_1M_STEPS} s (A100)" if published else "—",
            f"{GYMNAX_S_PER_1M_STEPS / r['s_per_1m_steps']['ours']:.2f}x" if published else "—",
            f"{r['compile_s']['ours']:.2f} / {r['compile_s']['gymnax']:.2f}",
            common.fmt_bytes(r["memory_per_env"]["temp_bytes"]),
        ])
        print(f"  cartpole_env N={n:,}: ours {common.fmt_rate(rate)}steps/s, gymnax "
              f"{common.fmt_rate(twin_rate)}steps/s, ours/gymnax {ratio:.2f}x", flush=True)
    table = common.markdown_table(
        ["N envs", "steps/call", "ours steps/s", "gymnax steps/s", "ours/gymnax", "ours s/1M steps",
         "gymnax s/1M steps", "published", "ours vs published", "compile ours / gymnax (s)",
         "temporaries/env (ours)"], rows)
    caption = (f"Random actions from pools sampled outside the timed region (benchmarks.env_throughput); steps/s from "
               f"the median of {sizes.cartpole_repeats} alternated calls; ours/gymnax = median of the rounds' "
               f"ratios. Published: gymnax's {GYMNAX_S_PER_1M_STEPS} s per 1M steps at "
               f"{GYMNAX_REFERENCE_ENVS:,} envs on an A100 (its loop samples actions inside); "
               "'ours vs published' above 1 is faster.")
    return {"title": "CartPole-v1 env steps/s: ours against gymnax", "results": results,
            "table": table, "caption": caption}


# ppo ------------------------------------------------------------------------------------------

def ppo_rows(runs: list[dict], iterations: int) -> tuple[list[list[str]], dict | None]:
    """Table rows of the PPO runs, and the 2,048-agent goal check (None unless that run was timed).

    The full-length 2,048-seed rows get PureJaxRL's published time (and `published_purejaxrl_a100_s`
    in their run dict); jaxpg's also the goal, under 40 s of steady run.
    """
    rows, goal = [], None
    for run in runs:
        headline = run["seeds"] == 2048 and iterations == ppo_cartpole.FULL_ITERS
        if headline:
            run["published_purejaxrl_a100_s"] = PUREJAXRL_2048_AGENTS_S
        if headline and run["peer"] == "jaxpg":
            goal = {"goal_s": GOAL_2048_AGENTS_S, "run_s": run["run_s"],
                    "run_plus_compile_s": run["run_s"] + run["compile_s"], "met": run["run_s"] < GOAL_2048_AGENTS_S}
        ratio = run.get("jaxpg_over_rejax_steps_per_s")
        train = run.get("final_train_return_per_seed")
        rows.append([
            run["peer"], f"{run['seeds']:,}", f"{run['env_steps']:,}", f"{run['compile_s']:.1f}",
            _seconds(run["run_s"]), common.fmt_rate(run["steps_per_s"]),
            "—" if ratio is None else f"{ratio:.2f}x", _mean_std(run["eval_return_per_seed"]),
            "—" if train is None else f"{np.mean(train):.1f}", common.fmt_bytes(run["temp_bytes"]),
            f"PureJaxRL {PUREJAXRL_2048_AGENTS_S:.0f} s (A100); {PUREJAXRL_2048_AGENTS_S / run['run_s']:.2f}x"
            if headline else "—",
            ("met" if goal["met"] else "not met") + f": {run['run_s']:.1f} s run, "
            f"{goal['run_plus_compile_s']:.1f} s with compile" if headline and run["peer"] == "jaxpg" else "—",
        ])
    return rows, goal


def _rejax_available() -> bool:
    try:
        import rejax  # noqa: F401
    except ImportError:
        return False
    return True


def ppo(sizes: Sizes, seed: int) -> dict:
    iterations = sizes.ppo_iterations
    env, env_params = envs.make("CartPole-v1")
    trainer = jaxpg.make_trainer("ppo", env, env_params, **ppo_cartpole.jaxpg_config(iterations))
    algo = ppo_cartpole.make_rejax(iterations, env, env_params) if _rejax_available() else None
    if algo is None:
        print("  ppo: rejax is not installed (pip install -e '.[bench]'); jaxpg alone", flush=True)

    runs, finals = [], {"jaxpg": [], "rejax": []}
    for num_seeds, rounds in zip(sizes.ppo_seeds, sizes.ppo_rounds):
        print(f"  ppo: {num_seeds} seed(s) x {iterations} iterations, {rounds} round(s)", flush=True)
        vmapped = (lambda f: jax.jit(f)) if num_seeds == 1 else (lambda f: jax.jit(jax.vmap(f)))
        contenders = {"jaxpg": vmapped(trainer.train)}
        if algo is not None:
            contenders["rejax"] = vmapped(algo.train)
        keys = common.seed_keys(seed, num_seeds)
        t = common.compile_then_alternate(contenders, keys, rounds)
        steps = num_seeds * iterations * ppo_cartpole.BATCH
        add_seed_axis = (lambda x: x) if num_seeds > 1 else common.add_seed_axis
        state, metrics = t["last"]["jaxpg"]
        finals["jaxpg"].append(add_seed_axis(state))
        if algo is not None:
            finals["rejax"].append(add_seed_axis(t["last"]["rejax"][0].actor_ts.params))
        train_returns = np.asarray(metrics["episode_return"]).reshape(num_seeds, -1)[:, -1]
        for name in contenders:
            run = {
                "peer": name, "seeds": num_seeds, "iterations": iterations, "env_steps": steps,
                "compile_s": t["compile_s"][name], "run_s": t["steady_s"][name], "times_s": t["times_s"][name],
                "steps_per_s": steps / t["steady_s"][name], "temp_bytes": common.temp_bytes(t["compiled"][name]),
            }
            if name == "jaxpg":
                run["final_train_return_per_seed"] = train_returns
                if algo is not None:
                    run["jaxpg_over_rejax_steps_per_s"] = t["ratio"]["rejax"]
            runs.append(run)
            print(f"    {name} {num_seeds} seed(s): compile {run['compile_s']:.1f} s, run {run['run_s']:.2f} s, "
                  f"{common.fmt_rate(run['steps_per_s'])}steps/s", flush=True)

    # Greedy evaluation of every final policy, each peer in one batch (one compile), the same
    # episode loop and keys for both (as in benchmarks.ppo_cartpole).
    episodes, eval_key = sizes.eval_episodes, jax.random.key(seed + 1000)
    returns = {"jaxpg": common.evaluate_seeds(trainer, common.concat_seeds(finals["jaxpg"]), eval_key, episodes)}
    if algo is not None:
        returns["rejax"] = ppo_cartpole.rejax_returns(
            algo, env, env_params, common.concat_seeds(finals["rejax"]), eval_key, episodes)
    pieces = {peer: dict(zip(sizes.ppo_seeds, common.split_seeds(r, sizes.ppo_seeds))) for peer, r in returns.items()}
    for run in runs:
        run["eval_return_per_seed"] = pieces[run["peer"]][run["seeds"]]

    rows, goal = ppo_rows(runs, iterations)
    table = common.markdown_table(
        ["peer", "seeds", "env steps", "compile (s)", "run (s)", "env steps/s", "jaxpg/rejax steps/s",
         f"eval return ({episodes} ep., mean ± std over seeds)", "final train return", "XLA temporaries",
         "published (vs ours)",
         f"goal: 2,048 agents < {GOAL_2048_AGENTS_S:.0f} s"], rows)
    caption = (f"PureJaxRL's CartPole PPO config, {iterations} iterations of {ppo_cartpole.BATCH} steps per agent; "
               "compile = lower().compile() wall time, run = median steady call on fresh keys, jaxpg and rejax "
               f"alternated ({', '.join(f'{n} seed(s): {r}' for n, r in zip(sizes.ppo_seeds, sizes.ppo_rounds))} "
               "round(s)). Published: PureJaxRL's 2,048 agents x 500k steps in about "
               f"{PUREJAXRL_2048_AGENTS_S:.0f} s on an A100; 'vs ours' above 1 is faster. rejax differs where its API "
               "allows no choice (see ppo_cartpole.py).")
    return {"title": "PPO on CartPole-v1: jaxpg against rejax, 1 to 2,048 vmapped agents", "results": runs,
            "goal_2048_agents": goal, "table": table, "caption": caption}


# search_ranking -------------------------------------------------------------------------------

def search_ranking(sizes: Sizes, seed: int) -> dict:
    ours = envs.make("SearchRanking-v0", n_products=sizes.search_products)
    limit = device_memory_bytes()
    results, rows = [], []
    for n in sizes.search_envs:
        steps = scan_steps(n, sizes.search_budget, sizes.search_max_steps)
        estimate = n * sizes.search_products * 4 * SEARCH_FLOATS_PER_PRODUCT
        if limit is not None and estimate > 0.8 * limit:
            note = f"skipped: about {estimate / 2**30:.0f} GiB of temporaries, device has {limit / 2**30:.0f} GiB"
            results.append({"num_envs": n, "skipped": note})
            rows.append([f"{n:,}", f"{sizes.search_products:,}", f"{steps:,}", "—", "—", "—", "—", note])
            print(f"  search_ranking N={n:,}: {note}", flush=True)
            continue
        r = env_throughput.bench_size(ours, None, n, steps, sizes.search_repeats, seed)
        r["n_products"] = sizes.search_products
        results.append(r)
        mem = r["memory_per_env"]
        total = None if mem["temp_bytes"] is None else mem["temp_bytes"] * n
        rows.append([
            f"{n:,}", f"{sizes.search_products:,}", f"{steps:,}", common.fmt_rate(r["steps_per_s"]["ours"]),
            f"{r['compile_s']['ours']:.2f}", common.fmt_bytes(mem["state_bytes"]),
            common.fmt_bytes(mem["temp_bytes"]), common.fmt_bytes(total),
        ])
        print(f"  search_ranking N={n:,}: {common.fmt_rate(r['steps_per_s']['ours'])}steps/s, "
              f"temporaries {common.fmt_bytes(total)}", flush=True)
    table = common.markdown_table(
        ["N envs", "products", "steps/call", "env steps/s", "compile (s)", "state/env", "temporaries/env",
         "temporaries in all"], rows)
    caption = (f"Every step scores the whole catalog for each env; steps/s from the median of "
               f"{sizes.search_repeats} calls; temporaries = XLA's memory analysis of the timed program "
               "(the catalog, once in EnvParams, not counted). No published peer figure.")
    return {"title": "SearchRanking-v0 env steps/s", "results": results, "table": table, "caption": caption}


# reinforce_grpo -------------------------------------------------------------------------------

def reinforce_grpo(sizes: Sizes, seed: int) -> dict:
    env, env_params = envs.make("CartPole-v1")
    num_seeds = sizes.pg_seeds
    runs, rows = [], []
    for algo in ("reinforce", "grpo"):
        preset = jaxpg.presets.get("CartPole-v1", algo)
        trainer = jaxpg.make_trainer(algo, env, env_params, preset=preset, total_timesteps=sizes.pg_timesteps)
        iterations, per_iteration = trainer.total_iterations, trainer.steps_per_iteration
        print(f"  reinforce_grpo: {algo}, {num_seeds} seeds x {iterations} iterations of {per_iteration:,} steps",
              flush=True)
        keys = jax.random.split(jax.random.key(seed), num_seeds)
        program = jax.jit(jax.vmap(trainer.train))
        t = common.compile_then_alternate({algo: program}, keys, 1)
        _, metrics = t["last"][algo]
        steps = num_seeds * iterations * per_iteration
        run_s = t["steady_s"][algo]
        preset_iterations = max(1, preset.options.get("total_timesteps", 1) // per_iteration)
        run = {
            "algo": algo, "seeds": num_seeds, "iterations": iterations, "steps_per_iteration": per_iteration,
            "env_steps": steps, "compile_s": t["compile_s"][algo], "run_s": run_s, "times_s": t["times_s"][algo],
            "steps_per_s": steps / run_s, "temp_bytes": common.temp_bytes(t["compiled"][algo]),
            "preset": dict(preset.options),
            "preset_iterations": preset_iterations,
            "preset_run_s_extrapolated": run_s / iterations * preset_iterations,
            "final_train_return_per_seed": np.asarray(metrics["episode_return"]).reshape(num_seeds, -1)[:, -1],
        }
        runs.append(run)
        rows.append([
            algo, f"{num_seeds:,}", f"{iterations} x {per_iteration:,}", f"{steps:,}", f"{run['compile_s']:.1f}",
            _seconds(run_s), common.fmt_rate(run["steps_per_s"]),
            f"{_seconds(run['preset_run_s_extrapolated'])} ({preset_iterations} it.)",
            f"{np.mean(run['final_train_return_per_seed']):.1f}", common.fmt_bytes(run["temp_bytes"]),
        ])
        print(f"    {algo}: compile {run['compile_s']:.1f} s, run {run_s:.2f} s, "
              f"{common.fmt_rate(run['steps_per_s'])}steps/s", flush=True)
    table = common.markdown_table(
        ["algo", "seeds", "iterations x steps", "env steps", "compile (s)", "run (s)", "env steps/s",
         "preset's full run, extrapolated (s)", "final train return (mean over seeds)", "XLA temporaries"], rows)
    caption = (f"jaxpg.presets CartPole-v1 settings with total_timesteps = {sizes.pg_timesteps:,} per seed (the "
               "learning-rate schedule spans this shorter run, so the return is not the preset's); every episode is "
               "rolled to the 500-step limit, masked steps counted; one timed call after the compile. No published "
               "peer figure.")
    return {"title": "REINFORCE and GRPO on CartPole-v1, vmapped seeds", "results": runs, "table": table,
            "caption": caption}


# tokens ---------------------------------------------------------------------------------------

def tokens(sizes: Sizes, seed: int) -> dict:
    """GRPO with the `Addition-v0-2digits` preset's causal transformer: generated tokens/s.

    Speed only, so the policy starts from its initialisation rather than from SFT (the same
    program either way); every member generates the task's full completion length, the steps
    after its EOS masked but computed, and those count as generated, as `benchmarks.tokens`
    counts them.
    """
    preset = jaxpg.presets.get("Addition-v0-2digits", "grpo")
    env, env_params = envs.make("Addition-v0", **preset.env_options)
    group_size = preset.options["group_size"]
    trainer = jaxpg.make_trainer(
        "grpo", env, env_params, preset=preset, num_groups=sizes.token_groups,
        total_timesteps=sizes.token_groups * group_size * env_params.max_steps_in_episode * sizes.token_iterations,
    )
    iterations, per_iteration = trainer.total_iterations, trainer.steps_per_iteration
    print(f"  tokens: GRPO on Addition-v0, {sizes.token_groups:,} groups x {group_size}, {iterations} iterations "
          f"of {per_iteration:,} tokens", flush=True)
    program = jax.jit(trainer.train)
    key = jax.random.key(seed)
    t = common.compile_then_alternate({"grpo": program}, key, 1)
    tokens_generated = iterations * per_iteration
    run_s = t["steady_s"]["grpo"]
    run = {
        "task": "Addition-v0", "env_options": dict(preset.env_options), "groups": sizes.token_groups,
        "group_size": group_size, "iterations": iterations, "tokens_per_iteration": per_iteration,
        "tokens": tokens_generated, "compile_s": t["compile_s"]["grpo"], "run_s": run_s,
        "times_s": t["times_s"]["grpo"], "tokens_per_s": tokens_generated / run_s,
        "temp_bytes": common.temp_bytes(t["compiled"]["grpo"]),
        "network": {k: preset.options[k] for k in ("transformer_dim", "transformer_layers", "transformer_heads")},
    }
    print(f"    grpo: compile {run['compile_s']:.1f} s, run {run_s:.2f} s, "
          f"{common.fmt_rate(run['tokens_per_s'])}tokens/s", flush=True)
    net = run["network"]
    rows = [[
        "Addition-v0 (2 digits)", f"{sizes.token_groups:,} x {group_size}", f"{iterations} x {per_iteration:,}",
        f"{net['transformer_layers']} layers, dim {net['transformer_dim']}, {net['transformer_heads']} heads",
        f"{run['compile_s']:.1f}", _seconds(run_s), common.fmt_rate(run["tokens_per_s"]),
        common.fmt_bytes(run["temp_bytes"]),
    ]]
    table = common.markdown_table(
        ["task", "groups x members", "iterations x tokens", "policy", "compile (s)", "run (s)", "tokens/s",
         "XLA temporaries"], rows)
    caption = ("GRPO with the Addition-v0-2digits preset's settings (no SFT stage: speed only); tokens = every "
               "member's full completion length per iteration, the masked steps after its EOS included, rollout "
               "and update together; one timed call after the compile. No published peer figure.")
    return {"title": "GRPO on a token task: generated tokens/s", "results": [run], "table": table,
            "caption": caption}


# main -----------------------------------------------------------------------------------------

def recurrent(sizes: Sizes, seed: int) -> dict:
    checkout = os.environ.get("PUREJAXRL")
    checkout = Path(checkout).expanduser() if checkout and Path(checkout).exists() else None
    rows = memory.compare(sizes.gru_seeds, sizes.gru_iterations, 1, checkout)
    caption = ("PureJaxRL's recurrent CartPole config (4 envs x 128 steps, 128-unit GRU; benchmarks/memory.py), "
               "compile apart from one steady call; "
               + ("PureJaxRL's ppo_rnn.py from $PUREJAXRL alternated beside it, with the in-memory changes "
                  "benchmarks/memory.py prints." if checkout else "no PureJaxRL checkout given ($PUREJAXRL): "
                  "jaxpg only."))
    return {"title": "GRU PPO on CartPole-v1, vmapped seeds", "results": rows, "table": memory.table(rows),
            "caption": caption}


def locomotion(sizes: Sizes, seed: int) -> dict:
    """jaxpg's PPO and brax's own on brax's ant, alternated (`benchmarks/suites.py`)."""
    import importlib.util

    if importlib.util.find_spec("brax") is None:
        note = "brax is not installed (pip install 'jaxpg[brax]'): skipped."
        return {"title": "PPO on brax's ant", "results": [], "table": note, "caption": note}
    from benchmarks import suites

    settings = dataclasses.replace(suites.ANT, num_envs=sizes.ant_envs,
                                   num_minibatches=min(suites.ANT.num_minibatches, sizes.ant_envs))
    total = suites.brax_epochs_steps(settings, sizes.ant_timesteps)
    runs = suites.alternate_seeds(settings, total, sizes.ant_seeds)
    table, ratios = suites.summary(settings, runs)
    caption = (f"brax's ant on the {settings.backend} backend, {settings.num_envs} envs x {settings.num_steps} steps, "
               f"{total:,} env steps per run, brax's PPO settings for ant with (64, 64) networks for both "
               f"(benchmarks/suites.py `ANT`; brax's ant marks no time limit, so brax's PPO does not bootstrap it "
               f"where jaxpg's does); compile apart; brax's steady rate is its third epoch's. "
               f"jaxpg / brax steady env steps/s per seed: {', '.join(f'{r:.2f}x' for r in ratios)}.")
    return {"title": "PPO on brax's ant: jaxpg against brax's own trainer", "results": runs, "ratios": ratios,
            "table": table, "caption": caption}


RUNNERS = {"cartpole_env": cartpole_env, "ppo": ppo, "search_ranking": search_ranking,
           "reinforce_grpo": reinforce_grpo, "recurrent": recurrent, "tokens": tokens, "locomotion": locomotion}


def main(argv=None) -> int:
    parser = common.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=SECTIONS, metavar="SECTION",
                        help=f"run these sections only ({', '.join(SECTIONS)})")
    parser.add_argument("--seed", type=int, default=0)
    # Tiny sizes for the test suite: seconds, not a benchmark.
    parser.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    sizes = {"smoke": SMOKE, "quick": QUICK, "full": FULL}[mode]
    sections = [s for s in SECTIONS if s in (args.only or SECTIONS)]

    started = time.perf_counter()
    info = common.machine_info()
    label = common.device_label(info)
    versions = info["versions"]
    print(f"device: {label}; jax {versions['jax']}, gymnax {versions['gymnax']}, rejax {versions['rejax']}; "
          f"load average {info['load_average']}; mode {mode}; sections {', '.join(sections)}", flush=True)
    if mode == "full" and info["backend"] == "cpu":
        print("warning: full sizes on a CPU take far longer than the GPU's 8 minutes; --quick is the CPU check",
              file=sys.stderr, flush=True)

    done = {}
    for name in sections:
        print(f"{name}:", flush=True)
        section_start = time.perf_counter()
        done[name] = RUNNERS[name](sizes, args.seed)
        done[name]["wall_s"] = time.perf_counter() - section_start
        done[name]["peak_device_bytes"] = common.device_memory()["peak"]
        print(f"  {name}: {done[name]['wall_s']:.0f} s", flush=True)
    elapsed = time.perf_counter() - started

    budget = GOAL_SUITE_S.get(mode)
    budget_line = f"suite wall time {elapsed:.0f} s"
    if budget is not None:
        where = "on one GPU" if mode == "full" else "on a 2-core CPU"
        subset = "" if len(sections) == len(SECTIONS) else ", subset only"
        budget_line += f" (budget {budget // 60} min {where}: {'met' if elapsed < budget else 'not met'}{subset})"
    goal = done.get("ppo", {}).get("goal_2048_agents")
    if goal is not None:
        budget_line += (f"; 2,048-agent PPO run {goal['run_s']:.1f} s (goal under {goal['goal_s']:.0f} s: "
                        f"{'met' if goal['met'] else 'not met'}; {goal['run_plus_compile_s']:.1f} s with compile)")
    load = "n/a" if info["load_average"] is None else ", ".join(f"{x:.1f}" for x in info["load_average"])
    command = " ".join(["python -m benchmarks.gpu"] + [f"--{mode}"] * (mode != "full")
                       + (["--only", *sections] if args.only else []))
    header = (f"# GPU suite: `{command}`\n\n"
              f"{label}; jax {versions['jax']}, gymnax {versions['gymnax']}, rejax {versions['rejax']}; "
              f"load average at start {load}; {budget_line}."
              + ("\n\nA CPU run checks that the suite runs; its timings are not GPU figures."
                 if info["backend"] == "cpu" else ""))
    parts = [header] + [f"## {s['title']}\n\n{s['table']}\n\n{s['caption']}" for s in done.values()]
    markdown = "\n\n".join(parts) + "\n"

    payload = {
        "benchmark": "gpu",
        "machine": info,
        "versions": versions,
        "config": {"mode": mode, "sections": sections, "seed": args.seed, "sizes": dataclasses.asdict(sizes),
                   "search_floats_per_product_estimate": SEARCH_FLOATS_PER_PRODUCT,
                   "published": {"purejaxrl_2048_agents_a100_s": PUREJAXRL_2048_AGENTS_S,
                                 "gymnax_a100_s_per_1m_steps_at_2000_envs": GYMNAX_S_PER_1M_STEPS},
                   "goals": {"ppo_2048_agents_run_s": GOAL_2048_AGENTS_S, "suite_s": GOAL_SUITE_S}},
        "sections": done,
        "total_s": elapsed,
        "within_budget": None if budget is None else elapsed < budget,
        "markdown": markdown,
    }
    path = common.write_results({"smoke": "gpu_smoke", "quick": "gpu_quick", "full": "gpu"}[mode], payload, args.out)
    md_path = path.with_suffix(".md")
    md_path.write_text(markdown)
    print()
    print(markdown)
    print(f"wrote {path} and {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
