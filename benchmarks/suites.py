"""jaxpg's PPO against brax's own PPO (`brax.training.agents.ppo`) on a brax task, in one process.

Both train `inverted_pendulum` on brax's `spring` backend (`Settings`; the GPU suite's `ant` row
uses `ANT`) with the same settings: environments,
steps per environment per iteration, minibatches, epochs, learning rate, entropy cost, discount,
GAE lambda, clipping (of the policy ratio only), observation normalisation, (64, 64) tanh
networks for policy and value, a tanh-squashed Gaussian policy, bootstrapping at the 1,000-step
time limit, and the same number of env steps. Each reports env steps/s of a steady call (compile
excluded), the compile, and the return of greedy evaluation episodes at the end, seed by seed.

What cannot be made the same: brax's policy network emits a state-dependent std (jaxpg learns a
state-independent log_std); brax's minibatches are whole unrolls of `batch_size` environments
(jaxpg's shuffle single steps); brax times its epochs with their compiles in them, so it runs
three (see `EPOCHS`).

brax 0.14 calls `jax.device_put_replicated`, which JAX 0.10 removed; the stand-in below
(`replicate`) stacks each leaf once per device and shards that axis over the devices.

    python -m benchmarks.suites            # 2 seeds x 500k env steps each
    python -m benchmarks.suites --quick    # 1 seed x 65k env steps: a check that it runs
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

import envs
import jaxpg
from benchmarks import common


@dataclasses.dataclass(frozen=True)
class Settings:
    env_name: str = "inverted_pendulum"  # a brax environment
    backend: str = "spring"
    num_envs: int = 64
    num_steps: int = 16  # brax's unroll_length
    num_minibatches: int = 4
    update_epochs: int = 4  # brax's num_updates_per_batch
    lr: float = 3e-4
    ent_coef: float = 1e-2
    gamma: float = 0.97
    gae_lambda: float = 0.95
    clip_eps: float = 0.3
    max_grad_norm: float = 1.0
    hidden: tuple = (64, 64)
    episode_length: int = 1000
    eval_episodes: int = 16
    # brax's PPO bootstraps a time limit only where the environment marks it (`info["time_out"]`,
    # which inverted_pendulum sets and ant does not); jaxpg always bootstraps it.
    bootstrap_on_timeout: bool = True


# The GPU suite's locomotion row (benchmarks/gpu.py): brax's ant with brax's own PPO settings for
# it (4,096 envs, unrolls of 5, 32 minibatches, 4 epochs, lr 3e-4, entropy 0.01, gamma 0.97), the
# networks kept at (64, 64) for both peers.
ANT = Settings(env_name="ant", backend="spring", num_envs=4096, num_steps=5, num_minibatches=32,
               bootstrap_on_timeout=False)


# brax's PPO compiles its training epoch on the first call and again on the second (whose inputs
# are the first's outputs, laid out by pmap); the third runs compiled. Its steady rate is the
# third epoch's, and its compile the three epochs' time less three steady epochs.
EPOCHS = 3


def brax_epochs_steps(settings: Settings, total: int) -> int:
    """The env steps brax's PPO runs for `total` in `EPOCHS` epochs (its iterations rounded up)."""
    per_iteration = settings.num_envs * settings.num_steps
    return EPOCHS * int(np.ceil(total / (EPOCHS * per_iteration))) * per_iteration


def replicate(tree, devices):
    """`jax.device_put_replicated`: each leaf stacked once per device, that axis sharded over them
    (the layout `pmap` keeps its outputs in, so brax's `pmap`ped steps do not compile again)."""
    mesh = jax.sharding.Mesh(np.asarray(devices), ("devices",))
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("devices"))
    return jax.tree.map(lambda x: jax.device_put(jnp.stack([x] * len(devices)), sharding), tree)


def run_brax(settings: Settings, total: int, seed: int) -> dict:
    import flax.linen as nn
    from brax import envs as brax_envs
    from brax.training.agents.ppo import networks as brax_networks
    from brax.training.agents.ppo import train as brax_ppo

    if not hasattr(jax, "device_put_replicated"):  # see the module docstring
        jax.device_put_replicated = replicate
    epochs = []
    brax_ppo.train(
        environment=brax_envs.get_environment(settings.env_name, backend=settings.backend),
        num_timesteps=total, episode_length=settings.episode_length, num_envs=settings.num_envs,
        unroll_length=settings.num_steps, batch_size=settings.num_envs // settings.num_minibatches,
        num_minibatches=settings.num_minibatches, num_updates_per_batch=settings.update_epochs,
        learning_rate=settings.lr, entropy_cost=settings.ent_coef, discounting=settings.gamma,
        gae_lambda=settings.gae_lambda, clipping_epsilon=settings.clip_eps, max_grad_norm=settings.max_grad_norm,
        normalize_observations=True, reward_scaling=1.0, bootstrap_on_timeout=settings.bootstrap_on_timeout,
        network_factory=functools.partial(brax_networks.make_ppo_networks, policy_hidden_layer_sizes=settings.hidden,
                                          value_hidden_layer_sizes=settings.hidden, activation=nn.tanh),
        num_evals=EPOCHS + 1, num_eval_envs=settings.eval_episodes, deterministic_eval=True, seed=seed,
        progress_fn=lambda step, metrics: epochs.append((step, dict(metrics))),
    )
    # epochs[0] is the evaluation before training; then one entry per epoch, each with brax's own
    # `training/sps` of that epoch and the cumulative `training/walltime`.
    steps, last = epochs[-1]
    steady_s = (steps / EPOCHS) / last["training/sps"]
    scalars = lambda metrics: {k: float(v) for k, v in metrics.items() if np.ndim(v) == 0}
    return {"peer": "brax", "seed": seed, "env_steps": int(steps), "steps_per_s": float(last["training/sps"]),
            "compile_s": float(last["training/walltime"]) - EPOCHS * steady_s,
            "eval_return": float(last["eval/episode_reward"]),
            "brax_epochs": [scalars(metrics) for _, metrics in epochs]}


def run_jaxpg(settings: Settings, total: int, seed: int) -> dict:
    env, env_params = envs.make(f"brax:{settings.env_name}", backend=settings.backend,
                                max_steps_in_episode=settings.episode_length)
    trainer = jaxpg.make_trainer(
        "ppo", env, env_params, num_envs=settings.num_envs, num_steps=settings.num_steps,
        num_minibatches=settings.num_minibatches, update_epochs=settings.update_epochs, lr=settings.lr,
        ent_coef=settings.ent_coef, gamma=settings.gamma, gae_lambda=settings.gae_lambda, clip_eps=settings.clip_eps,
        max_grad_norm=settings.max_grad_norm, hidden_sizes=settings.hidden, activation="tanh",
        distribution="squashed_gaussian", normalize_observations=True, clip_value_loss=False, total_timesteps=total,
    )
    key = jax.random.key(seed)
    compiled, compile_s = common.compile_ahead(trainer._train_jit, key, trainer.hparams, env_params)
    (state, _), run_s = common.timed(compiled, key, trainer.hparams, env_params)
    returns = jaxpg.evaluate(trainer, state, jax.random.key(seed + 1000), settings.eval_episodes,
                             max_steps=settings.episode_length)
    steps = trainer.total_iterations * trainer.steps_per_iteration
    return {"peer": "jaxpg", "seed": seed, "env_steps": steps, "steps_per_s": steps / run_s, "compile_s": compile_s,
            "run_s": run_s, "eval_return": float(np.mean(np.asarray(returns)))}


def main(argv=None) -> int:
    parser = common.base_parser(__doc__)
    parser.add_argument("--seeds", type=int, default=None, help="seeds per peer (default 2; --quick 1)")
    parser.add_argument("--timesteps", type=int, default=None, help="env steps per run (default 500k; --quick 65k)")
    args = parser.parse_args(argv)
    info = common.announce()
    settings = Settings()
    total = brax_epochs_steps(settings, args.timesteps or (65_536 if args.quick else 500_000))
    runs = alternate_seeds(settings, total, args.seeds or (1 if args.quick else 2))
    table, ratios = summary(settings, runs)
    print(table)
    print(f"jaxpg / brax steady steps/s, per seed: {', '.join(f'{r:.2f}x' for r in ratios)}")
    path = common.write_results("suites_quick" if args.quick else "suites", {
        "machine": info, "settings": dataclasses.asdict(settings), "env_steps": total, "runs": runs,
        "jaxpg_over_brax_steps_per_s": ratios, "table": table}, args.out)
    print(f"wrote {path}")
    return 0


def alternate_seeds(settings: Settings, total: int, seeds: int) -> list[dict]:
    """jaxpg's and brax's runs, alternated seed by seed."""
    runs = []
    for seed in range(seeds):
        for run in (run_jaxpg, run_brax):
            result = run(settings, total, seed)
            runs.append(result)
            print(f"  {result['peer']} seed {seed}: {common.fmt_rate(result['steps_per_s'])} steps/s, compile "
                  f"{result['compile_s']:.1f} s, eval return {result['eval_return']:.1f}", flush=True)
    return runs


def summary(settings: Settings, runs: list[dict]) -> tuple[str, list[float]]:
    """The markdown table of `alternate_seeds`' runs and jaxpg / brax steady steps/s per seed."""
    rows = []
    for peer in ("jaxpg", "brax"):
        mine = [r for r in runs if r["peer"] == peer]
        rate = float(np.median([r["steps_per_s"] for r in mine]))
        returns = [r["eval_return"] for r in mine]
        compile_s = float(np.median([r["compile_s"] for r in mine]))
        rows.append([peer, len(mine), f"{mine[0]['env_steps']:,}", common.fmt(compile_s), common.fmt_rate(rate),
                     f"{np.mean(returns):.1f} ({', '.join(f'{x:.0f}' for x in returns)})"])
    ratios = [a["steps_per_s"] / b["steps_per_s"] for a, b in zip(runs[::2], runs[1::2])]
    table = common.markdown_table(
        ["peer", "seeds", "env steps per seed", "compile (s, median)", "steady env steps/s (median)",
         f"greedy eval return, {settings.eval_episodes} episodes (mean; per seed)"], rows)
    return table, ratios


if __name__ == "__main__":
    raise SystemExit(main())
