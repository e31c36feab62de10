"""Every preset of `jaxpg.presets` trained over 8 vmapped seeds, against its criterion.

For each (task, algorithm) preset: the per-seed result its criterion names (deterministic
evaluation return over 64 episodes, or the linear policy's gain error ||K - K*|| / ||K*||), whether
every seed passes, the late training return (last 10% of iterations), the env steps at which the
seed-mean training return first reaches the threshold, and compile and train seconds of the
8-seed program on this machine.

    python -m benchmarks.presets                 # every preset, 8 seeds
    python -m benchmarks.presets --only LQR-v0   # presets whose names start with these
    python -m benchmarks.presets --only LQR-v0 --exact --algos grpo   # one preset
    python -m benchmarks.presets --quick         # CartPole PPO and SearchRanking GRPO, 2 seeds
    python -m benchmarks.presets --only StatelessCartPole-v1 --without-memory --seeds 4
                                                 # a recurrent preset beside its MLP twin
"""

import dataclasses

import numpy as np

from benchmarks import common
from jaxpg import presets
from jaxpg.presets.check import check_preset


def without_memory(preset) -> list:
    """The feed-forward twin of a recurrent preset (same budget and settings, `policy="mlp"`), or none."""
    if preset.options.get("policy") not in ("gru", "lstm"):
        return []
    options = {k: v for k, v in preset.options.items() if not k.startswith("rnn_")}
    return [dataclasses.replace(preset, name=f"{preset.name} (mlp)", options={**options, "policy": "mlp"})]


def main() -> None:
    parser = common.base_parser(__doc__)
    parser.add_argument("--only", nargs="*", default=None, help="run the presets whose name starts with one of these")
    parser.add_argument("--exact", action="store_true", help="--only names whole preset names, not prefixes")
    parser.add_argument("--algos", nargs="*", default=None, help="only these algorithms")
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--without-memory", action="store_true",
                        help="also train each recurrent preset (policy gru or lstm) with policy='mlp', same budget")
    args = parser.parse_args()
    chosen = list(presets.PRESETS.values())
    seeds = args.seeds
    if args.quick:
        chosen = [presets.get("CartPole-v1", "ppo"), presets.get("SearchRanking-v0", "grpo")]
        seeds = 2
    if args.only:
        chosen = [p for p in chosen if (p.name in args.only if args.exact else p.name.startswith(tuple(args.only)))]
    if args.algos:
        chosen = [p for p in chosen if p.algo in args.algos]
    if args.without_memory:
        chosen = [variant for p in chosen for variant in (p, *without_memory(p))]
    rows, results = [], []
    for preset in chosen:
        print(f"  {preset.describe()}", flush=True)
        result = check_preset(preset, seeds=seeds)
        results.append(result)
        values = np.asarray(result["values"])
        shown = (f"{100 * values.max():.2f}% worst, {100 * values.mean():.2f}% mean" if preset.measure == "gain_error"
                 else f"{values.mean():.1f} ± {values.std():.1f} (min {values.min():.1f})")
        rows.append([
            preset.name, preset.algo, preset.describe().split(": ", 1)[1], shown,
            "yes" if result["passed"] else f"no ({sum(preset.passes(v) for v in values)}/{len(values)})",
            f"{np.mean(result['late_training_return']):.4g}", f"{result['env_steps_per_seed']:,}",
            f"{result['steps_to_threshold']:,}" if result["steps_to_threshold"] else "—",
            f"{result['compile_seconds']:.1f}", f"{result['train_seconds']:.1f}",
        ])
    info = common.machine_info()
    path = common.write_results("presets_quick" if args.quick else "presets",
                                {"machine": info, "seeds": seeds, "results": results}, args.out)
    print()
    print(common.markdown_table(
        ["preset", "algo", "criterion", "result over seeds", "all seeds pass", "late training return",
         "env steps per seed", "steps to threshold (seed mean)", "compile (s)", f"train {seeds} seeds (s)"], rows))
    print(f"\n{common.device_label(info)}; wrote {path}")


if __name__ == "__main__":
    main()
