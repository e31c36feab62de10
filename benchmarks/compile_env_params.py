"""Compile time of one training iteration with the environment parameters closed over (the old
way: XLA sees them as constants and may fold products of them at compile time) against passed as
an argument (how `trainer.iterate` and `jaxpg.fit` take them now), for each environment.

    python benchmarks/compile_env_params.py
"""

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax  # noqa: E402

import envs  # noqa: E402
import jaxpg  # noqa: E402
from benchmarks import common  # noqa: E402


def compile_seconds(lowered_fn, *args) -> float:
    started = time.perf_counter()
    lowered_fn.lower(*args).compile()
    return time.perf_counter() - started


def main() -> int:
    info = common.machine_info()
    print(f"device: {common.device_label(info)}; jax {info['versions']['jax']}")
    rows = []
    for env_id, algo, options in [("SearchRanking-v0", "reinforce", dict(num_envs=64, gamma=1.0)),
                                  ("CartPole-v1", "ppo", {}), ("LQR-v0", "ppo", {})]:
        env, env_params = envs.make(env_id)
        trainer = jaxpg.make_trainer(algo, env, env_params, **options)
        state = trainer.init(jax.random.key(0))
        # Fresh lambdas each time, so neither compile is served by the other's cache entry.
        closed = compile_seconds(jax.jit(lambda s: trainer._iterate(s, env_params, 1)), state)
        passed = compile_seconds(jax.jit(lambda s, p: trainer._iterate(s, p, 1)), state, env_params)
        rows.append({"env": env_id, "algo": algo, "closed_over_s": closed, "argument_s": passed})
        print(f"| {env_id} | {algo} | {closed:.2f} | {passed:.2f} | {closed / passed:.2f}x |")
    out = Path(__file__).parent / "results" / "compile_env_params.json"
    out.write_text(json.dumps({"machine": info, "rows": rows}, indent=2, default=str))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
