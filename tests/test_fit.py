"""The run driver: chunks compose bit for bit, resume equals the uninterrupted run, checkpoints
fall back past a corrupt one, changed configs are refused, and a NaN stops a run cleanly."""

import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gymnax.environments import environment
from users_emitter import compile_as_users_do

import envs
import jaxpg
from jaxpg.run.checkpoint import keys_to_data
from jaxpg.run.fit import choose_chunk_size

SMALL = {
    "ppo": dict(num_envs=4, num_steps=16, total_timesteps=4 * 16 * 8, hidden_sizes=(16,)),
    "reinforce": dict(num_envs=4, num_steps=40, total_timesteps=4 * 40 * 8, hidden_sizes=(16,)),
    "grpo": dict(num_groups=2, group_size=2, max_steps=40, total_timesteps=4 * 40 * 8, hidden_sizes=(16,)),
}


def bitwise_equal(a, b) -> bool:
    leaves_a, leaves_b = jax.tree.leaves(keys_to_data(a)), jax.tree.leaves(keys_to_data(b))
    return len(leaves_a) == len(leaves_b) and all(
        np.array_equal(np.asarray(x), np.asarray(y), equal_nan=True) for x, y in zip(leaves_a, leaves_b)
    )


@pytest.fixture(scope="module")
def trainers():
    env, params = envs.make("CartPole-v1")
    return {algo: jaxpg.make_trainer(algo, env, params, **config) for algo, config in SMALL.items()}


# The unit tier checks chunking on programs other tests compile anyway
# (tests/test_trainer_api.py::test_iterate_is_steps_bit_for_bit); this, with `train`, under -m integration.
@pytest.mark.integration
@pytest.mark.parametrize("algo", list(SMALL))
def test_chunks_compose_bit_for_bit(algo, trainers):
    assert_train_is_two_chunks(trainers[algo], jax.random.key(1))


def assert_train_is_two_chunks(trainer, key):
    """`train` (init, then one scan) equals init and two `iterate`s of half the run, state and
    metrics to the bit (tests/test_recurrent.py asks the same of recurrent trainers)."""
    whole, whole_metrics = compile_as_users_do(trainer.train, key)(key)
    start = compile_as_users_do(trainer.init, key)(key)
    iterate = compile_as_users_do(trainer.iterate, start, trainer.total_iterations // 2, static_argnums=1)
    first, first_metrics = iterate(start)
    second, second_metrics = iterate(first)
    assert bitwise_equal(whole, second)
    for name in whole_metrics:
        joined = np.concatenate([first_metrics[name], second_metrics[name]])
        assert np.array_equal(np.asarray(whole_metrics[name]), joined, equal_nan=True), name


@pytest.mark.integration
def test_fit_matches_vmapped_training_and_keeps_metrics_in_memory(trainers):
    trainer = trainers["ppo"]
    keys = jax.random.split(jax.random.key(2), 3)
    state, metrics = jaxpg.fit(trainer, keys, chunk_size=4, progress=False)
    reference_state, reference_metrics = jax.jit(jax.vmap(trainer.train))(keys)
    assert metrics["episode_return"].shape == (3, 8)
    np.testing.assert_array_equal(metrics["iteration"][0], np.arange(8))
    # Runs of one vmapped program; equal to vmap(train) up to float rounding (XLA batches and
    # fuses the two programs differently).
    for x, y in zip(jax.tree.leaves(state.params), jax.tree.leaves(reference_state.params)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(metrics["episode_length"], np.asarray(reference_metrics["episode_length"]))


# The unit tier's resume test is PPO's with a GRU (tests/test_recurrent.py), the same checkpoint
# path with a carry besides; these run under -m integration.
@pytest.mark.integration
@pytest.mark.parametrize("algo", ["ppo", "grpo"])
def test_resume_after_a_stop_equals_the_uninterrupted_run(algo, trainers, tmp_path):
    trainer = trainers[algo]
    # Three runs in chunks of 4, as in the test above, so PPO's programs are compiled once for both.
    keys = jax.random.split(jax.random.key(3), 3)
    whole_dir, parts_dir = str(tmp_path / "whole"), str(tmp_path / "parts")
    whole, whole_metrics = jaxpg.fit(trainer, keys, out=whole_dir, chunk_size=4, checkpoint_every=4, progress=False)
    jaxpg.fit(trainer, keys, out=parts_dir, chunk_size=4, checkpoint_every=4, progress=False)
    # Roll the second run back to its checkpoint at iteration 4, as if killed after it, with
    # metrics rows written past it that the resume must drop.
    shutil.rmtree(os.path.join(parts_dir, "checkpoints", "8"))
    fitted = jaxpg.fit(trainer, keys, out=parts_dir, chunk_size=4, checkpoint_every=4, progress=False, resume=True)
    resumed, resumed_metrics = fitted
    assert fitted.report["resumed_from"] == 4
    assert bitwise_equal(whole, resumed)
    for name in whole_metrics:
        assert np.array_equal(whole_metrics[name], resumed_metrics[name], equal_nan=True), name
    for name in ("metrics.csv",):
        assert open(os.path.join(whole_dir, name)).read() == open(os.path.join(parts_dir, name)).read()


@pytest.mark.integration
def test_corrupt_latest_checkpoint_falls_back_and_changed_config_is_refused(trainers, tmp_path):
    trainer = trainers["ppo"]
    keys = jax.random.split(jax.random.key(4), 2)
    out = str(tmp_path / "run")
    whole, _ = jaxpg.fit(trainer, keys, out=out, chunk_size=4, checkpoint_every=4, progress=False)
    latest = os.path.join(out, "checkpoints", "8")
    for root, _, files in os.walk(latest):
        for name in files:  # truncate every data file of the newest checkpoint
            with open(os.path.join(root, name), "r+b") as f:
                f.truncate(max(0, os.path.getsize(os.path.join(root, name)) // 3))
    with pytest.warns(RuntimeWarning, match=r"checkpoint .*checkpoints/8 could not be restored"):
        fitted = jaxpg.fit(trainer, keys, out=out, chunk_size=4, checkpoint_every=4, progress=False, resume=True)
    state, _ = fitted
    assert fitted.report["resumed_from"] == 4
    assert bitwise_equal(whole, state)
    longer = jaxpg.make_trainer("ppo", trainer.env, trainer.env_params, **{**SMALL["ppo"], "lr": 1e-3})
    with pytest.raises(ValueError, match=r"differs from the checkpoint in .*lr"):
        jaxpg.fit(longer, keys, out=out, chunk_size=4, checkpoint_every=4, progress=False, resume=True)
    with pytest.raises(ValueError, match="already holds checkpoints"):
        jaxpg.fit(trainer, keys, out=out, progress=False)


class NaNAfterCartPole(envs.cartpole.CartPole):
    """CartPole whose reward turns NaN from the 100th step of an episode on."""

    def step_env(self, key, state, action, params):
        obs, new_state, reward, terminated, info = super().step_env(key, state, action, params)
        return obs, new_state, jnp.where(state.time >= 100, jnp.nan, reward), terminated, info

    @property
    def name(self):
        return "NaNAfterCartPole"


@pytest.mark.integration
def test_on_nonfinite_stop_keeps_the_last_finite_state(tmp_path):
    env = NaNAfterCartPole()
    env.step = lambda key, state, action, params=None: environment.Environment.step(env, key, state, action, params)
    trainer = jaxpg.make_trainer("ppo", env, env.default_params, num_envs=4, num_steps=64,
                                 total_timesteps=4 * 64 * 12, hidden_sizes=(16,), lr=1e-2)
    keys = jax.random.split(jax.random.key(5), 2)
    out = str(tmp_path / "nan")
    with pytest.raises(jaxpg.NonFiniteUpdate, match="non-finite update at run") as stopped:
        jaxpg.fit(trainer, keys, out=out, chunk_size=4, on_nonfinite="stop", progress=False)
    error = stopped.value
    assert error.iteration > 0
    assert all(bool(jnp.isfinite(x).all()) for x in jax.tree.leaves(error.state.params))
    assert int(error.state.iteration[0]) == error.iteration
    assert error.metrics["episode_return"].shape == (2, error.iteration)
    assert not error.metrics["nonfinite"].any()
    assert os.path.isdir(error.checkpoint)


def test_chunk_size_choice():
    assert choose_chunk_size(976) == 16  # a divisor of the run near total / 50
    assert choose_chunk_size(976, 100) == 20  # a divisor of checkpoint_every
    assert choose_chunk_size(7) == 1
    with pytest.raises(ValueError, match="chunk_size=3 must divide checkpoint_every=4"):
        env, params = envs.make("CartPole-v1")
        trainer = jaxpg.make_trainer("ppo", env, params, **SMALL["ppo"])
        jaxpg.fit(trainer, jax.random.split(jax.random.key(0), 1), out="/tmp/never", chunk_size=3,
                  checkpoint_every=4, progress=False)


@pytest.mark.integration
def test_environment_parameters_vmap_one_run_per_setting():
    env, params = envs.make("CartPole-v1")
    trainer = jaxpg.make_trainer("ppo", env, params, **SMALL["ppo"])
    lengths = jnp.array([0.3, 0.5, 1.0])  # pole half-lengths, one run each
    batch = jax.tree.map(lambda x: jnp.stack([jnp.asarray(x)] * 3), params).replace(length=lengths)
    key = jax.random.key(6)
    _, metrics = jax.jit(jax.vmap(lambda p: trainer.train(key, env_params=p)))(batch)
    _, fitted = jaxpg.fit(trainer, jnp.stack([key] * 3), env_params=batch, progress=False)
    for i, length in enumerate([0.3, 0.5, 1.0]):
        _, alone = trainer.train(key, env_params=params.replace(length=length))
        np.testing.assert_allclose(metrics["episode_length"][i], alone["episode_length"], rtol=1e-5)
        np.testing.assert_allclose(fitted["episode_length"][i], alone["episode_length"], rtol=1e-5)
    assert not np.allclose(metrics["episode_length"][0], metrics["episode_length"][2])


@pytest.mark.integration
def test_resumed_longer_run_follows_the_longer_runs_schedule_from_the_update_reached(tmp_path):
    """A run resumed with a larger total_timesteps keeps the learning rates it used up to the
    checkpoint (the shorter run's schedule) and from there on uses exactly the rates of a run
    planned that long from the start; Adam's own update count carries on unchanged."""
    env, params = envs.make("CartPole-v1")
    options = dict(num_envs=4, num_steps=8, hidden_sizes=(8,), lr_schedule="linear", lr=1e-3, lr_end=0.0,
                   update_epochs=1, num_minibatches=2)
    short = jaxpg.make_trainer("ppo", env, params, **options, total_timesteps=4 * 8 * 2)
    longer = jaxpg.make_trainer("ppo", env, params, **options, total_timesteps=4 * 8 * 4)
    keys = jax.random.split(jax.random.key(7), 2)
    out = str(tmp_path / "run")
    jaxpg.fit(short, keys, out=out, chunk_size=2, progress=False)
    state, metrics = jaxpg.fit(longer, keys, out=out, chunk_size=2, progress=False, resume=True,
                               allow_changes=("total_timesteps",))
    per_iteration = longer.config.updates_per_iteration
    assert short.total_updates == 2 * per_iteration and longer.total_updates == 4 * per_iteration
    counts = np.arange(4) * per_iteration
    before = [float(short.learning_rate(short.hparams)(c)) for c in counts[:2]]
    after = [float(longer.learning_rate(longer.hparams)(c)) for c in counts[2:]]
    np.testing.assert_allclose(metrics["learning_rate"], np.broadcast_to(before + after, (2, 4)), rtol=1e-6)
    assert before == pytest.approx([1e-3, 5e-4]) and after == pytest.approx([5e-4, 2.5e-4])
    # Adam applies the schedule at its own update count, which is the update reached.
    adam_counts = [np.asarray(x) for x in jax.tree.leaves(state.opt_state) if np.asarray(x).dtype == np.int32]
    assert adam_counts and all((c == 4 * per_iteration).all() for c in adam_counts)


def test_a_state_with_zero_size_arrays_is_checkpointed_and_restored(tmp_path):
    """Orbax refuses arrays without elements; MuJoCo Playground's states hold some (`data.act`)."""
    from flax import struct

    from jaxpg.run.checkpoint import Checkpoints

    @struct.dataclass
    class Inner:
        act: jax.Array
        qpos: jax.Array

    state = {"inner": Inner(act=jnp.zeros((3, 0)), qpos=jnp.arange(6.0).reshape(3, 2)),
             "key": jax.random.split(jax.random.key(1), 3)}
    checkpoints = Checkpoints(str(tmp_path))
    checkpoints.save(4, state, {"iteration": 4})
    like = jax.eval_shape(lambda: state)
    step, restored, record = checkpoints.restore_latest(like, jax.random.key_impl(state["key"]))
    checkpoints.close()
    assert step == 4 and record == {"iteration": 4}
    assert restored["inner"].act.shape == (3, 0) and np.array_equal(restored["inner"].qpos, state["inner"].qpos)
    assert np.array_equal(jax.random.key_data(restored["key"]), jax.random.key_data(state["key"]))
