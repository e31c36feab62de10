"""Training a preset over vmapped seeds and scoring it against its criterion.

Used by `benchmarks/presets.py`, which trains every preset over 8 seeds for the README's table, and by
the slow tier's preset test (tests/test_presets.py).
"""

import time

import jax
import jax.numpy as jnp
import numpy as np

import envs
from jaxpg.core.evaluate import evaluate
from jaxpg.presets.build import make_trainer, trainer_after_sft
from jaxpg.presets.references import references


def check_preset(preset, seeds: int = 8, seed: int = 0, eval_episodes: int = 64) -> dict:
    """Trains `preset` on `seeds` vmapped seeds and measures what its criterion names.

    Returns:
      dict: per-seed `values` (evaluation return, acting as the preset's `eval_deterministic`
      says, or gain error), `passed` (every seed meets the criterion), the late training return
      (mean over the last 10% of iterations per seed), the first env step where the seed-mean
      training return reaches the threshold (returns only), compile and train seconds.
    """
    env, env_params = envs.make(preset.env_id, **preset.env_options)
    if preset.sft:
        trainer, _ = trainer_after_sft(preset.algo, env, env_params, preset, jax.random.key(seed))
    else:
        trainer = make_trainer(preset.algo, env, env_params, preset=preset)
    keys = jax.random.split(jax.random.key(seed), seeds)
    train = jax.jit(jax.vmap(trainer.train))
    started = time.perf_counter()
    compiled = train.lower(keys).compile()
    compile_seconds = time.perf_counter() - started
    started = time.perf_counter()
    state, metrics = jax.block_until_ready(compiled(keys))
    train_seconds = time.perf_counter() - started
    eval_keys = jax.random.split(jax.random.key(seed + 1), seeds)
    deterministic = preset.eval_deterministic
    one = lambda s, k: evaluate(trainer, s, k, eval_episodes, deterministic=deterministic)
    returns = np.asarray(jax.jit(jax.vmap(one))(state, eval_keys))
    if preset.measure == "gain_error":
        values = []
        for i in range(seeds):
            one = jax.tree.map(lambda x, i=i: x[i], state)
            act = lambda obs, one=one: trainer.act(one, obs, deterministic=True)
            values.append(references(env, env_params, act)["values"]["gain_relative_error"])
        values = np.asarray(values)
    else:
        values = returns.mean(axis=1)
    curve = np.asarray(metrics["episode_return"], np.float64)
    late = np.nanmean(curve[:, -max(1, curve.shape[1] // 10):], axis=1)
    steps = np.asarray(metrics["env_steps"])[0]
    reached = None
    if preset.measure == "eval_return":
        above = np.nanmean(curve, axis=0) >= preset.threshold
        reached = int(steps[np.argmax(above)]) if above.any() else None
    return {
        "name": preset.name, "algo": preset.algo, "criterion": preset.describe(), "values": values.tolist(),
        "passed": bool(all(preset.passes(v) for v in values)), "eval_return": returns.mean(axis=1).tolist(),
        "late_training_return": late.tolist(), "env_steps_per_seed": int(steps[-1]),
        "steps_to_threshold": reached, "compile_seconds": compile_seconds, "train_seconds": train_seconds,
        "nonfinite": int(jnp.sum(metrics["nonfinite"])),
    }
