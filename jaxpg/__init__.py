"""jaxpg: policy-gradient training as one compiled JAX program.

    env, env_params = envs.make("CartPole-v1")
    trainer = jaxpg.make_trainer("ppo", env, env_params, num_envs=2048, total_timesteps=5_000_000)
    state, metrics = trainer.train(jax.random.key(0))
    returns = jaxpg.evaluate(trainer, state, jax.random.key(1), num_episodes=100)
"""

from jaxpg import presets
from jaxpg.config import Config
from jaxpg.evaluate import episode_returns, evaluate
from jaxpg.fit import NonFiniteUpdate, fit
from jaxpg.grpo import GRPO, GRPOConfig
from jaxpg.ppo import PPO, PPOConfig
from jaxpg.reinforce import Reinforce, ReinforceConfig
from jaxpg.rollout import Transition, rollout
from jaxpg.trainer import Trainer, TrainState

ALGORITHMS = {"reinforce": Reinforce, "ppo": PPO, "grpo": GRPO}


def make_trainer(algo: str, env, env_params, preset=None, **options) -> Trainer:
    """Builds the trainer for `algo` (one of `ALGORITHMS`) on a gymnax environment.

    `options` are the algorithm's settings and hyperparameters, declared in its `Config`
    (`jaxpg.ALGORITHMS[algo].Config.table()` lists them). `preset` (a name such as
    `"CartPole-v1"` or `"LQR-v0-3x2"`, or a `jaxpg.presets.Preset`) starts from tuned settings,
    which `options` override. Every option is checked here, before anything compiles.
    """
    if algo not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {algo!r}; accepted: {', '.join(ALGORITHMS)}")
    return ALGORITHMS[algo](env, env_params, **presets.apply(algo, preset, options))


__all__ = [
    "ALGORITHMS", "GRPO", "PPO", "Config", "GRPOConfig", "PPOConfig", "Reinforce", "ReinforceConfig", "Trainer",
    "TrainState", "Transition", "NonFiniteUpdate", "episode_returns", "evaluate", "fit", "make_trainer", "presets",
    "rollout",
]
