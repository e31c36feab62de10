"""jaxpg: policy-gradient training as one compiled JAX program.

    env, env_params = envs.make("CartPole-v1")
    trainer = jaxpg.make_trainer("ppo", env, env_params, num_envs=2048, total_timesteps=5_000_000)
    state, metrics = trainer.train(jax.random.key(0))
    returns = jaxpg.evaluate(trainer, state, jax.random.key(1), num_episodes=100)
"""

import importlib
import sys
import types

# Names load on first use (PEP 562): importing jaxpg starts no JAX backend, so a multi-process job
# can still be joined after it (`jaxpg.cli`), and `jaxpg --help` answers at once.
_EXPORTS = {
    "Config": "jaxpg.config", "episode_returns": "jaxpg.evaluate", "evaluate": "jaxpg.evaluate",
    "NonFiniteUpdate": "jaxpg.fit", "fit": "jaxpg.fit", "GRPO": "jaxpg.grpo", "GRPOConfig": "jaxpg.grpo",
    "PPO": "jaxpg.ppo", "PPOConfig": "jaxpg.ppo", "Reinforce": "jaxpg.reinforce",
    "ReinforceConfig": "jaxpg.reinforce", "Transition": "jaxpg.rollout", "rollout": "jaxpg.rollout",
    "Trainer": "jaxpg.trainer", "TrainState": "jaxpg.trainer", "sweep": "jaxpg.sweep",
}


# Functions named like their modules: `import jaxpg.fit` binds the module to the package's name
# `fit`, and the function of that name must stay what `jaxpg.fit` means.
_SHADOWED = ("evaluate", "fit", "rollout", "sweep")


class _Package(types.ModuleType):
    def __setattr__(self, name, value):
        if name in _SHADOWED and isinstance(value, types.ModuleType):
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __getattr__(name):
    if name == "ALGORITHMS":
        return {"reinforce": __getattr__("Reinforce"), "ppo": __getattr__("PPO"), "grpo": __getattr__("GRPO")}
    if name == "presets":
        return importlib.import_module("jaxpg.presets")
    if name not in _EXPORTS:
        raise AttributeError(f"module 'jaxpg' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def make_trainer(algo: str, env, env_params, preset=None, **options) -> "Trainer":  # noqa: F821
    """Builds the trainer for `algo` (one of `ALGORITHMS`) on a gymnax environment.

    `options` are the algorithm's settings and hyperparameters, declared in its `Config`
    (`jaxpg.ALGORITHMS[algo].Config.table()` lists them). `preset` (a name such as
    `"CartPole-v1"` or `"LQR-v0-3x2"`, or a `jaxpg.presets.Preset`) starts from tuned settings,
    which `options` override. Every option is checked here, before anything compiles.
    """
    algorithms = __getattr__("ALGORITHMS")
    if algo not in algorithms:
        raise ValueError(f"unknown algorithm {algo!r}; accepted: {', '.join(algorithms)}")
    from jaxpg import presets

    return algorithms[algo](env, env_params, **presets.apply(algo, preset, options))


__all__ = [
    "ALGORITHMS", "GRPO", "PPO", "Config", "GRPOConfig", "PPOConfig", "Reinforce", "ReinforceConfig", "Trainer",
    "TrainState", "Transition", "NonFiniteUpdate", "episode_returns", "evaluate", "fit", "make_trainer", "presets",
    "rollout", "sweep",
]
