"""Population-based training: the exploit/explore step on a hand-made population (which members
copy whom, bit for bit, and where explored values land), bad input refused before anything
compiles, and (integration) the whole loop: a population of one equals `fit`, a resume across
exploit steps ends where the uninterrupted run ends, the command line writes its lineage."""

import shutil
import subprocess
import sys
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import struct

import envs
import jaxpg
from jaxpg.algos.trainer import TrainState
from jaxpg.run import pbt as pbt_module

LOW, HIGH = 1e-4, 1e-2


@struct.dataclass
class Extra:
    stats: jax.Array  # learned: travels with the parameters
    counter: jax.Array  # the environments' own: stays


def population(num_padded: int) -> TrainState:
    """A hand-made batched state whose every leaf holds its member's index (so a copy shows)."""
    member = jnp.arange(num_padded, dtype=jnp.float32)
    rows = lambda width: jnp.repeat(member[:, None], width, axis=1)
    return TrainState(
        params={"policy": rows(3), "value": rows(2)}, opt_state=(rows(5), member), obs_stats=rows(4),
        env_state=rows(6), obs=rows(4), key=jax.random.split(jax.random.key(7), num_padded),
        hparams={"lr": jnp.geomspace(2 * LOW, HIGH / 2, num_padded).astype(jnp.float32),
                 "ent_coef": 0.01 * (1 + member)},
        iteration=jnp.full((num_padded,), 40), extra=Extra(stats=rows(2), counter=rows(3)), carry=(),
    )


FAKE = SimpleNamespace(inherited_extra=("stats",))
EXPLORE = {"lr": (LOW, HIGH, "log")}
LEARNED = lambda s: (s.params, s.opt_state, s.obs_stats, s.extra.stats, s.hparams["ent_coef"])
OWN = lambda s: (s.env_state, s.obs, s.key, s.iteration, s.extra.counter)


def same(a, b) -> bool:
    """Bit for bit, typed PRNG keys by their data."""
    data = lambda t: [jax.random.key_data(x) if jnp.issubdtype(x.dtype, jax.dtypes.prng_key) else x
                      for x in jax.tree.leaves(t)]
    return all(np.array_equal(x, y, equal_nan=True) for x, y in zip(data(a), data(b)))


def test_exploit_copies_the_chosen_members_bit_for_bit_and_leaves_the_rest():
    # Two populations of 4 (runs 0-3 and 4-7) and 2 members of padding; truncation 0.25: each
    # population's worst member copies its best. NaN ranks last.
    state = population(10)
    fitness = jnp.array([3.0, 9.0, 1.0, 5.0, jnp.nan, 2.0, 8.0, 4.0])
    new, parents = jax.jit(lambda s, f, k: pbt_module.exploit_and_explore(FAKE, s, f, k, EXPLORE, populations=2))(
        state, fitness, jax.random.key(0))
    assert np.asarray(parents).tolist() == [0, 1, 1, 3, 6, 5, 6, 7, 8, 9]
    pick = lambda s, i: jax.tree.map(lambda x: x[i], s)
    for member, parent in enumerate(np.asarray(parents)):
        assert same(LEARNED(pick(new, member)), LEARNED(pick(state, parent))), member
        assert same(OWN(pick(new, member)), OWN(pick(state, member))), member
        if member == parent:  # untouched, explored values included
            assert same(pick(new, member), pick(state, member)), member
    # The copies explore: lr moves from the parent's by 0.8 or 1.25, or is drawn afresh, in range.
    for member, parent in ((2, 1), (4, 6)):
        lr, before = float(new.hparams["lr"][member]), float(state.hparams["lr"][parent])
        assert LOW <= lr <= HIGH
        assert lr != before


def test_explored_values_stay_in_range_and_follow_the_factors():
    state = population(400)
    # Parents sit at the range's edges, so perturbations must be clipped.
    edges = jnp.where(jnp.arange(400) % 2 == 0, LOW, HIGH).astype(jnp.float32)
    state = state.replace(hparams={**state.hparams, "lr": edges})
    fitness = jnp.arange(400.0)
    new, parents = jax.jit(lambda s, f, k: pbt_module.exploit_and_explore(
        FAKE, s, f, k, EXPLORE, truncation=0.5, resample_probability=0.3))(state, fitness, jax.random.key(1))
    copied = np.asarray(parents) != np.arange(400)
    assert copied.sum() == 200
    lr, parent_lr = np.asarray(new.hparams["lr"])[copied], np.asarray(edges)[np.asarray(parents)[copied]]
    assert (lr >= np.float32(LOW)).all() and (lr <= np.float32(HIGH)).all()
    factor = lambda f: np.isclose(lr, np.clip(parent_lr * f, LOW, HIGH))
    perturbed = factor(0.8) | factor(1.25)
    # About 30% resampled (a draw never equals a perturbed edge), the rest perturbed.
    assert 0.2 < 1 - perturbed.mean() < 0.4, perturbed.mean()
    assert np.isclose(lr, np.float32(LOW) * 1.25).any() and np.isclose(lr, np.float32(HIGH) * 0.8).any()


def tiny(total_iterations=8):
    env, params = envs.make("CartPole-v1")
    return jaxpg.make_trainer("ppo", env, params, num_envs=4, num_steps=8, num_minibatches=2, update_epochs=1,
                              hidden_sizes=(8,), total_timesteps=4 * 8 * total_iterations)


@pytest.mark.parametrize("kwargs, message", [
    (dict(explore={"learning_rate": (1e-4, 1e-2)}), "'learning_rate' is not a traced hyperparameter of ppo"),
    (dict(explore={"lr": (1e-2, 1e-4, "log")}), "low=0.01 must be below high=0.0001"),
    (dict(explore={"lr": (0.0, 1e-2, "log")}), "a log range needs 0 < low"),
    (dict(explore={"lr": "1e-4:1e-2:cubic"}), "scale 'cubic' is unknown"),
    (dict(explore={"clip_eps": (0.1, 2.0)}), "clip_eps"),
    (dict(keys=1), "population=1"),
    (dict(ready_every=0), r"ready_every=0 must be an integer in \[1, 8\]"),
    (dict(ready_every=9), r"ready_every=9 must be an integer in \[1, 8\]"),
    (dict(truncation=0.6), r"truncation=0.6 must be in \(0, 0.5\]"),
    (dict(truncation=0.0), r"truncation=0.0 must be in \(0, 0.5\]"),
    (dict(populations=3), "populations=3 must be at least 1 and divide the 4 keys"),
    (dict(out="unused", checkpoint_every=3), "checkpoint_every=3 must be a multiple of ready_every=2"),
    (dict(chunk_size=3), "chunk_size=3 must divide ready_every=2"),
    (dict(fitness_window=3), r"fitness_window=3 must be an integer in \[1, ready_every=2\]"),
    (dict(keep_checkpoints=0), "keep_checkpoints"),
])
def test_bad_input_is_refused_before_anything_compiles(kwargs, message):
    trainer = tiny()
    arguments = dict(explore={"lr": (1e-4, 1e-2, "log")}, ready_every=2, keys=4)
    arguments.update(kwargs)
    keys = jax.random.split(jax.random.key(0), arguments.pop("keys"))
    with pytest.raises(ValueError, match=message):
        jaxpg.pbt(trainer, keys, **arguments)
    assert "_fit_programs" not in trainer.__dict__  # nothing was compiled


@pytest.mark.integration
def test_a_population_of_one_without_exploring_is_fit():
    trainer, keys = tiny(), jax.random.split(jax.random.key(0), 1)
    (state, lineage), fitted = jaxpg.pbt(trainer, keys, {}, ready_every=2, chunk_size=2, progress=False), \
        jaxpg.fit(trainer, keys, chunk_size=2, progress=False)
    assert same(state, fitted[0])
    assert lineage["parent"].tolist() == [[0]] * 4


@pytest.mark.integration
def test_a_resume_across_exploit_steps_ends_where_the_whole_run_ends(tmp_path):
    """Checkpoints every 4 iterations, exploit steps every 2: the run resumed from its checkpoint at
    4 (as a run killed after it would be) replays steps 4 and 6 exactly, lineage and metrics too."""
    trainer, keys = tiny(), jax.random.split(jax.random.key(0), 4)
    options = dict(explore={"lr": (1e-4, 1e-1, "log"), "ent_coef": (0.0, 0.05)}, ready_every=2, checkpoint_every=4,
                   progress=False, resample_probability=0.5)
    whole = jaxpg.pbt(trainer, keys, out=str(tmp_path / "whole"), **options)
    shutil.copytree(tmp_path / "whole", tmp_path / "killed")
    shutil.rmtree(tmp_path / "killed" / "checkpoints" / "8")
    resumed = jaxpg.pbt(trainer, keys, out=str(tmp_path / "killed"), resume=True, **options)
    assert resumed.report["resumed_from"] == 4
    assert same(whole[0], resumed[0])
    assert same(whole.metrics, resumed.metrics)
    assert whole[1]["iteration"].tolist() == [0, 2, 4, 6] and same(whole[1], resumed[1])
    # The exploit steps did something: someone copied someone, and the lineage file says so.
    assert (whole[1]["parent"][1:] != np.arange(4)).any()
    assert open(tmp_path / "whole" / "pbt.csv").read() == open(tmp_path / "killed" / "pbt.csv").read()


@pytest.mark.integration
def test_the_command_trains_a_population_and_writes_its_lineage(tmp_path):
    out = tmp_path / "pbt"
    command = [sys.executable, "-m", "jaxpg.cli", "pbt", "CartPole-v1", "--algo", "ppo", "--population", "4",
               "--explore", "lr=1e-5:1e-1:log", "--ready-every", "2", "--no-preset", "--set", "num_envs=4",
               "--set", "num_steps=8", "--set", "total_timesteps=256", "--set", "hidden_sizes=(8,)",
               "--eval-episodes", "2", "--out", str(out), "--no-progress", "--no-compile-cache"]
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "| population | member | lr | final training return | evaluation return |" in done.stdout
    assert "Best member of population 0" in done.stdout
    rows = open(out / "pbt.csv").read().splitlines()
    assert rows[0] == "iteration,member,parent,lr,fitness" and len(rows) == 1 + 4 * 4
    assert (out / "pbt.png").stat().st_size > 0 and (out / "summary.json").exists()
    refused = subprocess.run([*command[:7], "--explore", "lr=0:1:log", "--out", str(tmp_path / "bad")],
                             capture_output=True, text=True)
    assert refused.returncode == 2 and "a log range needs 0 < low" in refused.stderr


@pytest.mark.slow
def test_pbt_leaves_a_learning_rate_too_low_to_learn_where_random_search_stays():
    """CartPole PPO with every member's learning rate drawn in 1e-5..1e-4 (log), explored in
    1e-5..1e-1: in 2 populations of 4 the best PBT member learns CartPole (>= 450), and the
    members' mean beats random search's from the same keys and draws at the same env steps by
    more than 75. Measured at 131,072 steps (2026-12-05, XLA's defaults as the slow tier runs):
    PBT 500, 500, 500, 500 and 476, 446, 424, 449; random search 459, 139, 114, 95 and 462, 414,
    462, 473 (means 474 and 348). At 65,536 steps the best PBT members reached 424 and 463, too
    close to a 475 threshold for a test that must not turn on the last bit of the initial
    weights."""
    env, params = envs.make("CartPole-v1")
    trainer = jaxpg.make_trainer("ppo", env, params, total_timesteps=131_072)
    keys = jax.random.split(jax.random.key(0), 8)
    initial = pbt_module.initial_values({"lr": (1e-5, 1e-4, "log")}, 8, seed=0)
    state, _ = jaxpg.pbt(trainer, keys, {"lr": (1e-5, 1e-1, "log")}, ready_every=12, populations=2,
                         hparams=initial, progress=False)
    searched, _ = jaxpg.fit(trainer, keys, hparams=initial, progress=False)
    from jaxpg.run.fit import evaluate_runs

    with_pbt = evaluate_runs(trainer, state, 0, 8, 16).mean(axis=1).reshape(2, 4)
    without = evaluate_runs(trainer, searched, 0, 8, 16).mean(axis=1).reshape(2, 4)
    assert (with_pbt.max(axis=1) >= 450).all(), (with_pbt, without)
    assert with_pbt.mean() > without.mean() + 75, (with_pbt, without)


@pytest.mark.integration
def test_a_fitness_of_ones_own_ranks_the_members():
    """`fitness(state, iteration)` replaces the training return: here minus the member index, so
    the second member of each population (of 2) is replaced by a copy of the first."""
    trainer, keys = tiny(), jax.random.split(jax.random.key(0), 4)
    seen = []

    def fitness(state, iteration):
        seen.append(iteration)
        return -np.arange(state.iteration.shape[0], dtype=np.float64)

    _, lineage = jaxpg.pbt(trainer, keys, {"lr": (1e-4, 1e-2, "log")}, ready_every=4, populations=2, fitness=fitness,
                           chunk_size=2, progress=False)
    assert seen == [4]
    assert lineage["parent"][1].tolist() == [0, 0, 2, 2] and lineage["fitness"][1].tolist() == [0, -1, -2, -3]
