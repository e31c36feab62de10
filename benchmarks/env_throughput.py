"""Raw environment steps per second against the number of parallel environments.

For each environment id and each N, one jitted program resets N environments and runs
`lax.scan` over a fixed number of steps of `jax.vmap(env.step)` (gymnax's auto-reset
included); the timing waits for its outputs with `block_until_ready`. The scan length is 1000
(quick: 200), shortened at large N to keep one call near 2^24 environment steps, or `--steps`.
Where gymnax has the same id (CartPole-v1), our environment and gymnax's run in the same process,
alternating A B A B, and the table reports the median of the pairwise ratios ours/gymnax in steps
per second. `--baseline DIR` replaces gymnax by an older copy of an environment's package (for
instance `envs/search_ranking` copied before a change, to time the change A/B in one process):
DIR is the package folder, whose `make()` builds the baseline environment.

The step keys and random actions come from pools of `POOL` per-step arrays sampled once, outside
the timed region, from our action space (`space.sample`); step t uses pool entry t % POOL. Both
contenders read the same pools with the same ops, so the timed difference is the environment step.

    python -m benchmarks.env_throughput --quick
    python -m benchmarks.env_throughput                      # CartPole-v1, N up to 65,536
    python -m benchmarks.env_throughput --env LQR-v0 SearchRanking-v0 --sizes 1 64 1024
    python -m benchmarks.env_throughput --env SearchRanking-v0 --baseline /tmp/sr_old/search_ranking_old
"""

import sys
from typing import NamedTuple

import gymnax
import jax
import jax.numpy as jnp

import envs
from benchmarks import common

POOL = 64


class Plan(NamedTuple):
    """Default sizes and per-call work for one environment (full and `--quick`)."""

    sizes: tuple[int, ...]
    quick_sizes: tuple[int, ...]
    budget: int  # environment steps per timed call; the scan is shortened at large N to fit
    quick_budget: int


PLANS = {
    "CartPole-v1": Plan((1, 64, 1024, 4096, 65536), (1, 64, 1024, 4096), 1 << 24, 1 << 21),
    "LQR-v0": Plan((1, 64, 1024, 4096, 65536), (1, 64, 1024, 4096), 1 << 24, 1 << 21),
    # Every step scores the whole 10,000-product catalog per env (and compiles for ~20 s on a
    # 2-core CPU), so far fewer steps per call.
    "SearchRanking-v0": Plan((1, 64, 1024, 4096, 16384), (1, 64, 1024), 1 << 14, 1 << 10),
}
MAX_STEPS, QUICK_MAX_STEPS = 1000, 200


def default_steps(env_id: str, num_envs: int, quick: bool) -> int:
    """Scan length: 1000 steps (quick: 200), or fewer where N * steps would pass the env's
    per-call budget, so that large N stays affordable and gives more alternated rounds."""
    plan = PLANS.get(env_id, PLANS["CartPole-v1"])
    cap, budget = (QUICK_MAX_STEPS, plan.quick_budget) if quick else (MAX_STEPS, plan.budget)
    return max(1, min(cap, budget // num_envs))


def make_rollout(env, params, num_envs: int, num_steps: int):
    """Builds the timed program for one environment at one size.

    Returns:
      a jitted `rollout(key, key_pool, action_pool) -> (obs, state, returns, dones)`:
      `key` seeds the N resets; `key_pool` holds `POOL` x N step keys and `action_pool`
      `POOL` x N actions; `returns` (N,) sums rewards and `dones` (N,) counts episode ends,
      so nothing the step computes is dead code.
    """
    reset = jax.vmap(env.reset, in_axes=(0, None))
    step = jax.vmap(env.step, in_axes=(0, 0, 0, None))

    @jax.jit
    def rollout(key, key_pool, action_pool):
        obs, state = reset(jax.random.split(key, num_envs), params)
        pool_size = key_pool.shape[0]

        def body(carry, t):
            obs, state, returns, dones = carry
            i = t % pool_size
            obs, state, reward, terminated, truncated, _ = step(
                key_pool[i], state, action_pool[i], params
            )
            done = jnp.logical_or(terminated, truncated)
            return (obs, state, returns + reward, dones + done.astype(jnp.int32)), None

        init = (
            obs,
            state,
            jnp.zeros((num_envs,), jnp.float32),
            jnp.zeros((num_envs,), jnp.int32),
        )
        carry, _ = jax.lax.scan(body, init, jnp.arange(num_steps))
        return carry

    return rollout


def make_pools(env, params, num_envs: int, key):
    """Samples `POOL` x N step keys and `POOL` x N actions from `env`'s action space."""
    step_key, action_key = jax.random.split(key)
    key_pool = jax.random.split(step_key, (POOL, num_envs))
    space = env.action_space(params)
    action_keys = jax.random.split(action_key, (POOL, num_envs))
    action_pool = jax.jit(jax.vmap(jax.vmap(space.sample)))(action_keys)
    return jax.block_until_ready((key_pool, action_pool))


def build_env(env_id: str):
    """Returns `(ours, twin)`, each `(env, params)`; twin is gymnax's same id, or None."""
    try:
        ours = envs.make(env_id)
    except ModuleNotFoundError as err:
        if err.name and err.name.startswith("envs."):
            return None, None
        raise
    twin = None
    if env_id in envs.ENV_IDS and env_id in gymnax.registered_envs:
        twin = gymnax.make(env_id)
    return ours, twin


def memory_per_env(env, params, compiled, num_envs: int) -> dict:
    """Bytes per parallel env: its state, and the timed program's temporaries.

    `state_bytes` sums the leaves of one `EnvState` and its observation. `temp_bytes` is XLA's
    memory analysis of the compiled rollout (the executable the timing ran): its scratch buffers
    (the scan's carries, per-step draws and scores) divided by N. Shared parameters
    (SearchRanking's catalog) are constants of the program and not counted; `params_bytes` gives
    their size once.
    """
    obs, state = jax.eval_shape(env.reset, jax.random.key(0), params)
    temp = common.temp_bytes(compiled)
    return {
        "state_bytes": common.tree_bytes(state) + common.tree_bytes(obs),
        "temp_bytes": None if temp is None else temp / num_envs,
        "params_bytes": common.tree_bytes(params),
    }


def bench_size(ours, twin, num_envs: int, num_steps: int, repeats: int, seed: int,
               twin_name: str = "gymnax") -> dict:
    """Times ours (and the twin: gymnax's, or a baseline) at one N; returns compile, steady and
    alternated timings, the twin's under `twin_name`."""
    key = jax.random.key(seed)
    pool_key, reset_key = jax.random.split(key)
    key_pool, action_pool = make_pools(*ours, num_envs, pool_key)
    contenders = {"ours": ours} if twin is None else {"ours": ours, twin_name: twin}

    result = {"num_envs": num_envs, "num_steps": num_steps, "compile_s": {}, "steady_run_s": {}}
    calls, last = {}, {}
    for name, (env, params) in contenders.items():
        rollout, result["compile_s"][name] = common.compile_ahead(
            make_rollout(env, params, num_envs, num_steps), reset_key, key_pool, action_pool)
        _, result["steady_run_s"][name] = common.timed(
            rollout, jax.random.fold_in(reset_key, 1), key_pool, action_pool)
        if name == "ours":
            result["memory_per_env"] = memory_per_env(env, params, rollout, num_envs)

        def call(name=name, rollout=rollout):
            last[name] = rollout(reset_key, key_pool, action_pool)
            return last[name]

        calls[name] = call

    timing = common.alternate(calls, repeats, warmup=0)
    # Sanity check that both run the same task: a uniformly random CartPole policy ends an
    # episode every ~22 steps.
    result["mean_episode_length"] = {
        name: num_envs * num_steps / max(int(out[3].sum()), 1) for name, out in last.items()
    }
    steps = num_envs * num_steps
    result["times_s"] = timing["times"]
    result["median_s"] = timing["median"]
    result["steps_per_s"] = {name: steps / t for name, t in timing["median"].items()}
    if twin is not None:
        # times[twin] / times[ours] per round = (ours steps/s) / (twin steps/s).
        result[f"ratio_ours_over_{twin_name}"] = timing["ratio"][twin_name]
    return result


def main(argv=None) -> int:
    parser = common.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--env", nargs="+", default=["CartPole-v1"], help="environment ids")
    parser.add_argument("--sizes", nargs="+", type=int, help="numbers of parallel envs")
    parser.add_argument("--steps", type=int,
                        help="scan length at every N (default: 1000, quick 200, fewer at large N)")
    parser.add_argument("--repeats", type=int,
                        help="timed rounds (default 9 against gymnax, 5 alone; quick 7 and 3)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--baseline", metavar="DIR",
                        help="package folder of an older copy of the (single) --env to time "
                             "against instead of gymnax")
    args = parser.parse_args(argv)
    if args.baseline and len(args.env) != 1:
        parser.error("--baseline times one environment: pass a single --env")
    twin_name = "baseline" if args.baseline else "gymnax"

    info = common.announce()

    results, skipped, rows = [], [], []
    for env_id in args.env:
        ours, twin = build_env(env_id)
        if args.baseline:
            twin = common.load_package(args.baseline).make()
        if ours is None:
            print(f"skipping {env_id}: its module is not available yet", file=sys.stderr)
            skipped.append(env_id)
            continue
        plan = PLANS.get(env_id, PLANS["CartPole-v1"])
        sizes = args.sizes or (plan.quick_sizes if args.quick else plan.sizes)
        # Alternation needs rounds; a lone environment needs only a stable median.
        repeats = args.repeats or ((7 if args.quick else 9) if twin else (3 if args.quick else 5))
        for n in sizes:
            num_steps = args.steps or default_steps(env_id, n, args.quick)
            r = bench_size(ours, twin, n, num_steps, repeats, args.seed, twin_name)
            r["env"] = env_id
            r["repeats"] = repeats
            # Other work on a shared machine slows every contender; the load says how much.
            r["load_average_1min"] = common.machine_info()["load_average"][0]
            results.append(r)
            ratio = r.get(f"ratio_ours_over_{twin_name}")
            rows.append([
                env_id,
                f"{n:,}",
                f"{num_steps:,}",
                common.fmt_rate(r["steps_per_s"]["ours"]),
                common.fmt_rate(r["steps_per_s"].get(twin_name)),
                "—" if ratio is None else f"{ratio:.2f}x",
                f"{r['compile_s']['ours']:.2f}",
                "—" if twin is None else f"{r['compile_s'][twin_name]:.2f}",
                common.fmt_bytes(r["memory_per_env"]["state_bytes"]),
                common.fmt_bytes(r["memory_per_env"]["temp_bytes"]),
                f"{r['load_average_1min']:.1f}",
            ])
            print(f"  {env_id} N={n}: ours {common.fmt_rate(r['steps_per_s']['ours'])}steps/s"
                  + ("" if ratio is None else f", ours/{twin_name} {ratio:.2f}x"), flush=True)

    if not results:
        print("nothing to benchmark", file=sys.stderr)
        return 1
    table = common.markdown_table(
        ["env", "N envs", "steps", "ours steps/s", f"{twin_name} steps/s", f"ours/{twin_name}",
         "compile ours (s)", f"compile {twin_name} (s)", "state / env", "temporaries / env",
         "load"],
        rows,
    )
    caption = (f"steps = scan length per call; steps/s from the median call; ours/{twin_name} = "
               "median of the alternated rounds' ratios; memory per env (ours): its EnvState and "
               "observation, and XLA's temporary buffers of the timed program / N (shared "
               "parameters not counted); load = 1-minute load average after the size's timings; "
               + (f"baseline = {args.baseline}; " if args.baseline else "")
               + common.device_label(info))
    print()
    print(table)
    print()
    print(caption)

    payload = {
        "benchmark": "env_throughput",
        "machine": info,
        "config": {
            "envs": args.env,
            "skipped": skipped,
            "sizes": args.sizes,
            "num_steps": args.steps or "default_steps(N)",
            "repeats": args.repeats or "9 against gymnax, 5 alone (quick: 7, 3)",
            "pool": POOL,
            "quick": args.quick,
            "seed": args.seed,
            "baseline": args.baseline,
            "order": f"ours, {twin_name} alternated per round",
        },
        "results": results,
        "table": table,
        "caption": caption,
    }
    path = common.write_results("env_throughput_quick" if args.quick else "env_throughput",
                                payload, args.out)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
