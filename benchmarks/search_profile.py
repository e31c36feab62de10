"""Where one SearchRanking-v0 step spends its time: the pieces of `env.step`, timed one by one.

Each piece is one jitted program that vmaps the env's own function over N envs on inputs made
beforehand (uniforms, contexts, scores), so a piece's time is its own work and nothing upstream.
A whole `env.step` (auto-reset included) is timed the same way, and the table gives both per env
step in microseconds. Every program runs its piece `--steps` times in a `lax.scan`, as training
does, on `POOL` input sets in turn, so output buffers are reused rather than freshly allocated
per call (a lone call of a catalog-sized piece spent as long in page faults as in arithmetic).
Pieces run as separate programs, so their sum exceeds the step, where XLA fuses across them;
the shares still say where the step's time goes.

With `--baseline DIR` (an older copy of `envs/search_ranking`, as for `benchmarks.env_throughput`) every
piece is timed for both packages in one process, alternating A B A B, which is how the table of
`benchmarks/README.md` compares the code before and after a change:

    git archive 1cb8a9d envs/search_ranking | tar -x -C /tmp/sr_old
    mv /tmp/sr_old/envs/search_ranking /tmp/sr_old/search_ranking_old
    python -m benchmarks.search_profile --baseline /tmp/sr_old/search_ranking_old
    python -m benchmarks.search_profile --quick      # 1,000 products, 256 envs
"""

import sys

import jax
import jax.numpy as jnp

from benchmarks import common
from envs import search_ranking

POOL = 4  # input sets per piece; call t of a program reads set t % POOL


def repeated(fn, steps: int):
    """`fn(*args[t % POOL])` for t < `steps`, in one jitted `lax.scan`: `steps` calls' worth.

    Each call reads another input set, indexed by the loop counter, so that XLA cannot hoist the
    piece out of the loop as loop-invariant (with one fixed input set it did, at least in part:
    the whole step then ran ten times faster than in any rollout). The loop carries the piece's
    output, so every call stores it, into the same buffers.
    """
    @jax.jit
    def run(*pool):
        def body(out, t):
            return fn(*jax.tree.map(lambda x: x[t % POOL], pool)), None

        first = fn(*jax.tree.map(lambda x: x[0], pool))
        return jax.lax.scan(body, first, jnp.arange(1, steps))[0]

    return run


def pieces(pkg, n_products: int, num_envs: int, key, steps: int) -> dict:
    """`{piece: zero-argument callable}` for one package; inputs are built here, untimed."""
    env, params = pkg.make(n_products=n_products)
    world, ranking = pkg.world, pkg.ranking
    catalog, k, n = params.catalog, env.top_k, env.n_products
    keys = jax.random.split(key, (POOL, num_envs))
    vmap = lambda f: jax.jit(jax.vmap(jax.vmap(f)))  # noqa: E731 (over the pool, then the envs)

    step_draws = {"rank_noise": (n,), "session": (4, k)}
    reset_draws = {**world.CONTEXT_DRAWS, "obs_noise": (n,)}
    u_step = vmap(lambda kk: world.uniform_draws(kk, **step_draws))(keys)
    u_reset = vmap(lambda kk: world.uniform_draws(kk, **reset_draws))(keys)
    ctx = vmap(world.context_from_uniforms)(u_reset)
    noise = vmap(world.normal)(u_step["rank_noise"])
    actions = jax.random.uniform(key, (POOL, num_envs, 10), minval=-1.0, maxval=1.0)
    base = vmap(lambda c, z: ranking.base_scores(catalog, c, z))(ctx, noise)
    ranked = vmap(lambda c, a, z: ranking.rank(catalog, c, a, z, k))(ctx, actions, noise)
    _, state = vmap(lambda kk: env.reset(kk, params))(keys)
    jax.block_until_ready((u_step, u_reset, ctx, base, ranked, state))

    programs = {  # piece: (its function of one env, then its input pools)
        "draws: step (n + 4k uniforms)": (lambda kk: world.uniform_draws(kk, **step_draws), keys),
        "draws: reset (context + n uniforms)": (
            lambda kk: world.uniform_draws(kk, **reset_draws), keys),
        "normal quantile of n uniforms": (world.normal, u_step["rank_noise"]),
        "new user and query (Dirichlet)": (world.context_from_uniforms, u_reset),
        "base scores (n x 20 product + noise)": (
            lambda c, z: ranking.base_scores(catalog, c, z), ctx, noise),
        "rank: base + boost scores, top k": (
            lambda c, a, z: ranking.rank(catalog, c, a, z, k), ctx, actions, noise),
        "rich observation: top k of base, aggregates": (
            lambda b: ranking.rich_aggregates(catalog, b, k), base),
        "cascade user over the top k": (
            lambda c, r, u: ranking.simulate_session(catalog, params.pos_bias, c, r, u),
            ctx, ranked, u_step["session"]),
        "whole env.step (auto-reset included)": (
            lambda kk, s, a: env.step(kk, s, a, params), keys, state, actions),
    }
    return {name: (lambda fn=repeated(jax.vmap(fn), steps), args=args: fn(*args))
            for name, (fn, *args) in programs.items()}


def main(argv=None) -> int:
    parser = common.base_parser(__doc__)
    parser.add_argument("--baseline", metavar="DIR", help="an older copy of envs/search_ranking")
    parser.add_argument("--num-envs", type=int, help="parallel envs (default 1,024; quick 256)")
    parser.add_argument("--n-products", type=int, help="catalog size (default 10,000; quick 1,000)")
    parser.add_argument("--repeats", type=int, default=5, help="alternated timed rounds per piece")
    parser.add_argument("--steps", type=int, default=8, help="calls of the piece per timed program")
    args = parser.parse_args(argv)
    num_envs = args.num_envs or (256 if args.quick else 1024)
    n_products = args.n_products or (1000 if args.quick else 10_000)
    key = jax.random.key(0)
    contenders = {"ours": pieces(search_ranking, n_products, num_envs, key, args.steps)}
    if args.baseline:
        contenders["baseline"] = pieces(common.load_package(args.baseline), n_products, num_envs, key, args.steps)

    results, rows = {}, []
    for name in contenders["ours"]:
        timing = common.alternate({who: c[name] for who, c in contenders.items()}, args.repeats)
        results[name] = timing
        us = {who: 1e6 * t / (num_envs * args.steps) for who, t in timing["median"].items()}
        row = [name] + ([f"{us['baseline']:.1f}"] if args.baseline else []) + [f"{us['ours']:.1f}"]
        if args.baseline:
            row.append(f"{timing['ratio']['baseline']:.2f}x")
        rows.append(row)
        print(f"{name}: " + ", ".join(f"{who} {v:.1f} us" for who, v in us.items()), flush=True)

    info = common.machine_info()
    headers = (["piece (one call of N envs)"] + (["before (µs / env)"] if args.baseline else [])
               + ["µs / env step"] + (["before / after"] if args.baseline else []))
    payload = {"machine": info, "num_envs": num_envs, "n_products": n_products, "steps": args.steps,
               "baseline": args.baseline, "pieces": results}
    path = common.write_results("search_profile_quick" if args.quick else "search_profile", payload, args.out)
    print()
    print(common.markdown_table(headers, rows))
    print(f"\n{num_envs:,} envs, {n_products:,} products, medians of {args.repeats} alternated rounds; "
          f"{common.device_label(info)}; load average at start {info['load_average']}; wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
