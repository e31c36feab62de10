"""Checks of `jaxpg.fit` on 8 fake CPU devices, run by tests/test_sharding.py in a subprocess (so the
rest of the suite keeps one device). Prints one JSON line of findings."""

import os

# Eight devices, beside any flag the parent set; tests/test_sharding.py already asks for them, a
# standalone run does not.
if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=8".strip()

import json  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402

import envs  # noqa: E402
import jaxpg  # noqa: E402
from jaxpg.run.checkpoint import keys_to_data  # noqa: E402

env, env_params = envs.make("CartPole-v1")
# A constant learning rate: the half-length run below must take the same updates as the whole one.
small = dict(num_envs=8, num_steps=16, num_minibatches=2, update_epochs=2, lr_schedule="constant")
trainer = jaxpg.make_trainer("ppo", env, env_params, total_timesteps=8 * 16 * 8, **small)
keys = jax.random.split(jax.random.key(0), 8)
one_device = jax.devices()[:1]


def fit(trainer, keys, **kwargs):
    fitted = jaxpg.fit(trainer, keys, progress=False, chunk_size=2, **kwargs)
    return type(fitted)(jax.device_get(keys_to_data(fitted[0])), fitted[1], fitted.report)


def same_bits(a, b):
    return all(np.array_equal(x, y, equal_nan=True) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def largest_relative_gap(a, b):
    gaps = [np.nanmax(np.abs(x - y) / (np.abs(y) + 1e-3)) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))
            if np.issubdtype(np.asarray(x).dtype, np.floating)]
    return float(max(gaps))


found = {"devices": jax.device_count()}
if "--recurrent" in sys.argv:
    # A recurrent policy (the unit tier's check, tests/test_recurrent.py): its carries lie with the
    # runs (shard="runs") or with the environments (shard="envs"), and both layouts match one device.
    gru = jaxpg.make_trainer("ppo", env, env_params, total_timesteps=8 * 16 * 4, policy="gru", hidden_sizes=(16,),
                             rnn_hidden_size=8, rnn_head_sizes=(), **small)
    gru_one, gru_metrics_one = fit(gru, keys, devices=one_device)
    gru_eight, gru_metrics_eight = fit(gru, keys)
    found["gru_runs_gap_state"] = largest_relative_gap(gru_eight, gru_one)
    found["gru_runs_returns_equal"] = bool(np.array_equal(gru_metrics_eight["episode_return"],
                                                          gru_metrics_one["episode_return"], equal_nan=True))
    gru_envs, gru_metrics_envs = fit(gru, keys[:2], shard="envs")
    found["gru_envs_gap_metrics"] = largest_relative_gap(
        {k: v for k, v in gru_metrics_envs.items() if k != "approx_kl"},
        {k: v[:2] for k, v in gru_metrics_one.items() if k != "approx_kl"})
    found["gru_carry_moved"] = bool(np.asarray(jax.tree.leaves(gru_envs.carry)[0]).any())
    print("FOUND " + json.dumps(found))
    sys.exit(0)
on_one, metrics_one = fit(trainer, keys, devices=one_device)
fitted = fit(trainer, keys)
on_eight, metrics_eight = fitted
found["runs_report"] = {k: fitted.report[k] for k in ("shard", "num_devices", "padded_runs")}
found["runs_gap_state"] = largest_relative_gap(on_eight, on_one)
found["runs_gap_metrics"] = largest_relative_gap(metrics_eight, metrics_one)
found["runs_returns_equal"] = bool(np.array_equal(metrics_eight["episode_return"], metrics_one["episode_return"],
                                                  equal_nan=True))

# 6 runs on 8 devices: padded to 8, the padding dropped; the same runs as in the 8-run program.
fitted = fit(trainer, keys[:6])
padded, metrics_padded = fitted
found["padded_report"] = {k: fitted.report[k] for k in ("num_devices", "padded_runs")}
found["padded_shape"] = list(np.shape(metrics_padded["loss"]))
found["padded_equal"] = same_bits(padded, jax.tree.map(lambda x: x[:6], on_eight)) and same_bits(
    metrics_padded, {k: v[:6] for k, v in metrics_eight.items()})

# A sharded run resumed from its checkpoint equals the uninterrupted one.
with tempfile.TemporaryDirectory() as tmp:
    whole, whole_metrics = fit(trainer, keys, out=f"{tmp}/whole", checkpoint_every=4)
    half = jaxpg.make_trainer("ppo", env, env_params, total_timesteps=8 * 16 * 4, **small)
    fit(half, keys, out=f"{tmp}/resumed", checkpoint_every=4)
    fitted = fit(trainer, keys, out=f"{tmp}/resumed", checkpoint_every=4, resume=True,
                 allow_changes=("total_timesteps",))
    resumed, resumed_metrics = fitted
    found["resume_from"] = fitted.report["resumed_from"]
    found["resume_equal"] = same_bits(whole, resumed) and same_bits(whole_metrics, resumed_metrics)

# One run's environments over the 8 devices.
fitted = fit(trainer, keys[:2], shard="envs")
by_envs, metrics_envs = fitted
found["envs_report"] = {k: fitted.report[k] for k in ("shard", "num_devices")}
found["envs_gap_metrics"] = largest_relative_gap({k: v for k, v in metrics_envs.items() if k != "approx_kl"},
                                                 {k: v[:2] for k, v in metrics_one.items() if k != "approx_kl"})
try:
    fit(jaxpg.make_trainer("ppo", env, env_params, total_timesteps=12 * 16 * 2, **{**small, "num_envs": 12}),
        keys[:1], shard="envs")
    found["envs_refused"] = None
except ValueError as error:
    found["envs_refused"] = str(error)

# PBT over the 8 devices: 2 populations of 3 members (padded to 8 runs); the padding never
# becomes a parent, and a resume from the checkpoint between exploit steps ends as the whole run.
pbt_options = dict(explore={"lr": (1e-4, 1e-1, "log")}, ready_every=2, populations=2, checkpoint_every=4,
                   chunk_size=2, progress=False, resample_probability=0.5)
with tempfile.TemporaryDirectory() as tmp:
    whole = jaxpg.pbt(trainer, keys[:6], out=f"{tmp}/whole", **pbt_options)
    shutil.copytree(f"{tmp}/whole", f"{tmp}/killed")
    shutil.rmtree(f"{tmp}/killed/checkpoints/8")
    resumed = jaxpg.pbt(trainer, keys[:6], out=f"{tmp}/killed", resume=True, **pbt_options)
    found["pbt_report"] = {k: whole.report[k] for k in ("num_devices", "padded_runs")}
    parents = whole[1]["parent"]
    found["pbt_parents_within_populations"] = bool(((parents // 3) == (np.arange(6) // 3)).all())
    found["pbt_copied"] = int((parents != np.arange(6)).sum())
    found["pbt_resume_equal"] = (resumed.report["resumed_from"] == 4
                                 and same_bits(keys_to_data(whole[0]), keys_to_data(resumed[0]))
                                 and same_bits(whole.metrics, resumed.metrics) and same_bits(whole[1], resumed[1]))

if "--learn" in sys.argv:
    # CartPole learned with each run's 64 environments split over the 8 devices.
    learner = jaxpg.make_trainer("ppo", env, env_params, num_envs=64, num_steps=32, total_timesteps=64 * 32 * 40,
                                 lr=2.5e-3)
    state, metrics = jaxpg.fit(learner, jax.random.split(jax.random.key(1), 2), shard="envs", progress=False)
    found["envs_learned_returns"] = np.asarray(jax.vmap(
        lambda s, k: jaxpg.evaluate(learner, s, k, 8))(state, jax.random.split(jax.random.key(2), 2))).mean(1).tolist()
    # The same 8 runs on 8 devices and on one: float rounding apart over a whole run, the same outcome.
    runs = jaxpg.make_trainer("ppo", env, env_params, num_envs=16, num_steps=32, total_timesteps=16 * 32 * 40,
                              lr=2.5e-3)
    learn_keys, eval_keys = jax.random.split(jax.random.key(3), 8), jax.random.split(jax.random.key(4), 8)
    score = lambda state: np.asarray(jax.vmap(lambda s, k: jaxpg.evaluate(runs, s, k, 8))(
        jax.device_get(state), eval_keys)).mean(1).tolist()
    found["runs_learned_on_eight"] = score(fit(runs, learn_keys)[0])
    found["runs_learned_on_one"] = score(fit(runs, learn_keys, devices=one_device)[0])
print("FOUND " + json.dumps(found))
