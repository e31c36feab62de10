"""The persistent compilation cache as a user meets it: `jaxpg train CartPole-v1` twice.

Runs the CLI as a subprocess twice with an empty, private cache folder, then once more with the
cache off, and reads each run's compile seconds and cache hits from its summary.json.

    python -m benchmarks.compile_cache            # the default run (PPO, 4 seeds, 500k steps)
    python -m benchmarks.compile_cache --quick    # 100k steps
"""

import json
import os
import subprocess
import sys
import tempfile

from benchmarks import common


def run_cli(out: str, cache: str, extra: list[str], steps: int) -> dict:
    command = [sys.executable, "-m", "jaxpg.cli", "train", "CartPole-v1", "--no-progress", "--out", out,
               "--set", f"total_timesteps={steps}", *extra]
    env = {**os.environ, "JAXPG_COMPILATION_CACHE": cache}
    subprocess.run(command, env=env, check=True, capture_output=True)
    return json.load(open(os.path.join(out, "summary.json")))


def main() -> None:
    args = common.base_parser(__doc__).parse_args()
    steps = 100_000 if args.quick else 500_000
    work = tempfile.mkdtemp()
    cache = os.path.join(work, "cache")
    runs = {
        "first (cold cache)": run_cli(os.path.join(work, "a"), cache, [], steps),
        "second (warm cache)": run_cli(os.path.join(work, "b"), cache, [], steps),
        "cache off": run_cli(os.path.join(work, "c"), cache, ["--no-compile-cache"], steps),
    }
    cold = runs["first (cold cache)"]["compile_seconds"]
    rows = [[name, f"{r['compile_seconds']:.2f}", f"{cold / r['compile_seconds']:.1f}x", r["compile_cache_hits"],
             f"{r['wall_seconds']:.1f}"] for name, r in runs.items()]
    info = common.machine_info()
    path = common.write_results("compile_cache_quick" if args.quick else "compile_cache",
                                {"machine": info, "env_steps": steps, "runs": runs}, args.out)
    print(common.markdown_table(["run", "compile (s)", "cold / this", "cache hits", "fit wall (s)"], rows))
    print(f"\n{common.device_label(info)}; wrote {path}")


if __name__ == "__main__":
    main()
