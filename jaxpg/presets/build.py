"""Building a trainer from an algorithm's name, a preset and overrides (`jaxpg.make_trainer`), and
a preset's supervised stage before RL (`trainer_after_sft`)."""

import jax

from jaxpg.algos import algorithm
from jaxpg.algos.sft import exact_match, fit_demonstrations
from jaxpg.presets import apply


def make_trainer(algo: str, env, env_params, preset=None, **options):
    """Builds the trainer for `algo` (one of `jaxpg.ALGORITHMS`) on a gymnax environment.

    `options` are the algorithm's settings and hyperparameters, declared in its `Config`
    (`jaxpg.ALGORITHMS[algo].Config.table()` lists them). `preset` (a name such as
    `"CartPole-v1"` or `"LQR-v0-3x2"`, or a `jaxpg.presets.Preset`) starts from tuned settings,
    which `options` override. Every option is checked here, before anything compiles.
    """
    trainer_class = algorithm(algo)
    return trainer_class(env, env_params, **apply(algo, preset, options))


def trainer_after_sft(algo: str, env, env_params, preset, key, **options):
    """`(trainer, sft_accuracy)`: the trainer of `preset` (a `jaxpg.presets.Preset` with an `sft`
    stage) started from a policy fitted to demonstrations with `key`, which also stays its KL
    reference; `sft_accuracy` is that policy's greedy exact-match accuracy (1,024 fixed prompts).
    Used by `jaxpg train` and `benchmarks/presets.py`, so both run the same two stages."""
    trainer = make_trainer(algo, env, env_params, preset=preset, **options)
    policy_params, _ = jax.jit(lambda k: fit_demonstrations(k, trainer, **preset.sft))(key)
    accuracy = float(exact_match(trainer, policy_params, jax.random.key(2024), 1024, deterministic=True))
    trainer = make_trainer(algo, env, env_params, preset=preset, policy_params=policy_params, **options)
    return trainer, accuracy
