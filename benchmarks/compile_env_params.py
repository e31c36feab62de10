"""Compile time of one training iteration with the environment parameters closed over (the old
way: XLA sees them as constants and may fold products of them at compile time) against passed as
an argument (how `trainer.iterate` and `jaxpg.fit` take them now), for each environment.

    python -m benchmarks.compile_env_params
"""

import sys

import jax

import envs
import jaxpg
from benchmarks import common


def main(argv=None) -> int:
    args = common.base_parser(__doc__, quick=False).parse_args(argv)
    info = common.announce()
    rows = []
    for env_id, algo, options in [("SearchRanking-v0", "reinforce", dict(num_envs=64, gamma=1.0)),
                                  ("CartPole-v1", "ppo", {}), ("LQR-v0", "ppo", {})]:
        env, env_params = envs.make(env_id)
        trainer = jaxpg.make_trainer(algo, env, env_params, **options)
        state = trainer.init(jax.random.key(0))
        # Fresh lambdas each time, so neither compile is served by the other's cache entry.
        closed = common.compile_ahead(lambda s: trainer._iterate(s, env_params, 1), state)[1]
        passed = common.compile_ahead(lambda s, p: trainer._iterate(s, p, 1), state, env_params)[1]
        rows.append({"env": env_id, "algo": algo, "closed_over_s": closed, "argument_s": passed})
        print(f"| {env_id} | {algo} | {closed:.2f} | {passed:.2f} | {closed / passed:.2f}x |")
    print(f"wrote {common.write_results('compile_env_params', {'machine': info, 'rows': rows}, args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
