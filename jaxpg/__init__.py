"""jaxpg: policy-gradient training as one compiled JAX program.

    env, env_params = envs.make("CartPole-v1")
    trainer = jaxpg.make_trainer("ppo", env, env_params, num_envs=2048, total_timesteps=5_000_000)
    state, metrics = trainer.train(jax.random.key(0))
    returns = jaxpg.evaluate(trainer, state, jax.random.key(1), num_episodes=100)

The package is in layers, each using only the ones above it in this list:
- `jaxpg.core`: numerics without a training loop (distributions, networks, advantages, losses,
  running statistics, rollout, evaluation);
- `jaxpg.algos`: the option declaration, the shared train state and update, REINFORCE, PPO, GRPO,
  SFT and RLHF;
- `jaxpg.run`: the run driver (run options, `fit`'s chunks, checkpoints, metric files, sinks,
  sharding, the compile cache, sweeps, population-based training);
- `jaxpg.presets`: settings that solve each shipped task, their checks and references;
- `jaxpg.cli`: the `jaxpg` command.
"""

import importlib

# Names load on first use (PEP 562): importing jaxpg starts no JAX backend, so a multi-process job
# can still be joined after it (`jaxpg.cli`), and `jaxpg --help` answers at once.
_EXPORTS = {
    "Config": "jaxpg.algos.config", "Trainer": "jaxpg.algos.trainer", "TrainState": "jaxpg.algos.trainer",
    "Reinforce": "jaxpg.algos.reinforce", "ReinforceConfig": "jaxpg.algos.reinforce",
    "PPO": "jaxpg.algos.ppo", "PPOConfig": "jaxpg.algos.ppo", "GRPO": "jaxpg.algos.grpo",
    "GRPOConfig": "jaxpg.algos.grpo", "ALGORITHMS": "jaxpg.algos",
    "Transition": "jaxpg.core.rollout", "rollout": "jaxpg.core.rollout",
    "episode_returns": "envs.episodes", "evaluate": "jaxpg.core.evaluate",
    "NonFiniteUpdate": "jaxpg.run.fit", "fit": "jaxpg.run.fit", "RunOptions": "jaxpg.run.options",
    "sweep": "jaxpg.run.sweep", "pbt": "jaxpg.run.pbt", "make_trainer": "jaxpg.presets.build",
}
# Modules reachable as attributes of the package (`jaxpg.presets.PRESETS`, `jaxpg.rlhf.RewardModel`).
_MODULES = {"presets": "jaxpg.presets", "rlhf": "jaxpg.algos.rlhf"}


def __getattr__(name):
    if name in _MODULES:
        return importlib.import_module(_MODULES[name])
    if name not in _EXPORTS:
        raise AttributeError(f"module 'jaxpg' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


__all__ = [*_EXPORTS, *_MODULES]
