"""`jaxpg.sweep` and `jaxpg sweep`: every setting x seed in one program, ranked."""

import csv
import json

import jax
import numpy as np
import pytest

import envs
import jaxpg
from jaxpg.cli import main
from jaxpg.run.sweep import draw_settings, parse_distribution

OPTIONS = dict(num_envs=8, num_steps=16, total_timesteps=8 * 16 * 6, lr_schedule="constant")


@pytest.mark.integration
def test_sweep_rows_equal_the_settings_trained_one_by_one(tmp_path):
    grid = {"lr": [1e-3, 3e-3, 1e-2], "ent_coef": [0.0, 0.01]}
    rows = jaxpg.sweep("CartPole-v1", "ppo", grid=grid, seeds=2, options=OPTIONS, preset=None, out=str(tmp_path),
                       progress=False, eval_episodes=4, threshold=30.0)
    assert len(rows) == 6 and [r["rank"] for r in rows] == [1, 2, 3, 4, 5, 6]
    settings = sorted((a, b) for a in grid["lr"] for b in grid["ent_coef"])
    assert sorted((r["lr"], r["ent_coef"]) for r in rows) == settings
    means = [r["eval_mean"] for r in rows]
    assert means == sorted(means, reverse=True)
    with open(tmp_path / "sweep.csv") as f:
        assert len(list(csv.DictReader(f))) == 6
    assert (tmp_path / "sweep.md").read_text().count("\n") == 8 and (tmp_path / "sweep.png").exists()

    env, env_params = envs.make("CartPole-v1")
    trainer = jaxpg.make_trainer("ppo", env, env_params, **OPTIONS)
    keys = jax.random.split(jax.random.key(0), 2)
    eval_keys = jax.random.split(jax.random.key(1), 2)
    for row in rows:
        hparams = {"lr": np.full(2, row["lr"], np.float32), "ent_coef": np.full(2, row["ent_coef"], np.float32)}
        state, _ = jaxpg.fit(trainer, keys, hparams, progress=False)
        alone = np.asarray(jax.vmap(lambda s, k: jaxpg.evaluate(trainer, s, k, 4))(state, eval_keys)).mean(axis=1)
        np.testing.assert_array_equal(np.asarray(row["eval_per_seed"], np.float32), alone.astype(np.float32))
        interval = 12.706 * np.std(alone, ddof=1) / np.sqrt(2)  # t(0.975, 1 degree of freedom)
        assert row["eval_ci95"] == pytest.approx(interval, rel=1e-4, abs=1e-6)


@pytest.mark.integration
def test_env_grid_trains_one_setting_per_environment_parameter():
    rows = jaxpg.sweep("CartPole-v1", "reinforce", env_grid={"length": [0.25, 1.0]},
                       random={"lr": "loguniform:1e-3:1e-2"}, trials=1, seeds=2,
                       options=dict(num_envs=4, num_steps=50, total_timesteps=4 * 50 * 2), preset=None,
                       progress=False, eval_episodes=2)
    assert sorted(r["length"] for r in rows) == [0.25, 1.0]
    assert len({r["lr"] for r in rows}) == 1 and 1e-3 <= rows[0]["lr"] <= 1e-2


def test_bad_sweeps_are_refused_before_compiling():
    with pytest.raises(ValueError, match="num_envs.*static setting"):
        jaxpg.sweep("CartPole-v1", "ppo", grid={"num_envs": [4, 8]})
    with pytest.raises(ValueError, match="lr"):
        jaxpg.sweep("CartPole-v1", "ppo", grid={"lr": [-1.0]})
    with pytest.raises(ValueError, match="not a parameter of this environment.*gravity"):
        jaxpg.sweep("CartPole-v1", "ppo", env_grid={"gravty": [9.0]})
    with pytest.raises(ValueError, match="accepted: uniform"):
        parse_distribution("lr", "normal:0:1")
    with pytest.raises(ValueError, match="0 < LO"):
        parse_distribution("lr", "loguniform:0:1")
    draws = draw_settings({"lr": "loguniform:1e-4:1e-2", "ent_coef": "choice:0:0.01"}, 50, seed=3)
    assert all(1e-4 <= d["lr"] <= 1e-2 and d["ent_coef"] in (0.0, 0.01) for d in draws)
    assert draws == draw_settings({"lr": "loguniform:1e-4:1e-2", "ent_coef": "choice:0:0.01"}, 50, seed=3)


@pytest.mark.integration
def test_sweep_command_prints_the_best_setting(tmp_path, capsys):
    code = main(["sweep", "CartPole-v1", "--algo", "ppo", "--grid", "lr=1e-3,1e-2", "--seeds", "2", "--no-preset",
                 "--set", "num_envs=8", "--set", "num_steps=16", "--set", "total_timesteps=256", "--eval-episodes",
                 "2", "--out", str(tmp_path / "s"), "--no-progress", "--no-compile-cache"])
    printed = capsys.readouterr().out
    assert code == 0 and "Best setting: lr=" in printed and "| rank | lr |" in printed
    assert (tmp_path / "s" / "sweep.csv").exists() and (tmp_path / "s" / "checkpoints").exists()


def test_env_grid_field_no_training_program_reads_is_refused():
    # LQR's gamma is read only by the references (the Riccati solution); training discounts with
    # the trainer's own gamma, so a sweep over it would train identical runs and rank ties.
    with pytest.raises(ValueError, match=r"env_grid field 'gamma'.*--grid gamma="):
        jaxpg.sweep("LQR-v0", "ppo", env_grid={"gamma": [0.9, 0.99]}, options=OPTIONS, preset=None, progress=False)
    from jaxpg.run.sweep import unread_env_fields

    env, env_params = envs.make("CartPole-v1")
    trainer = jaxpg.make_trainer("ppo", env, env_params, **OPTIONS)
    assert unread_env_fields(trainer, env_params, ["length", "max_steps_in_episode"]) == []


# A CartPole whose pole barely falls and whose cart barely moves: every episode runs to its time
# limit whatever the policy does, so a return is exactly the number of steps the episode lasted.
STILL_CARTPOLE = {"gravity": 0.01, "force_mag": 0.01}


@pytest.mark.integration
@pytest.mark.parametrize("algo", ["ppo", "reinforce", "grpo"])
def test_max_steps_in_episode_grid_trains_and_evaluates_each_row_at_its_own_limit(algo, tmp_path):
    # The base limit (10) is below both settings: rollouts and the evaluation horizon must be
    # sized from the grid's maximum, and each row's episodes must end at the row's own limit.
    options = {
        "ppo": dict(num_envs=4, num_steps=16, total_timesteps=4 * 16 * 2),
        "reinforce": dict(num_envs=4, total_timesteps=4 * 100 * 2),
        "grpo": dict(num_groups=2, group_size=2, total_timesteps=4 * 100 * 2),
    }[algo]
    rows = jaxpg.sweep("CartPole-v1", algo, env_grid={"max_steps_in_episode": [20, 100]}, seeds=1,
                       env_options={**STILL_CARTPOLE, "max_steps_in_episode": 10},
                       options={**options, "hidden_sizes": (8,)}, preset=None, progress=False, eval_episodes=2,
                       out=str(tmp_path))
    for row in rows:
        assert row["eval_per_seed"] == [row["max_steps_in_episode"]], row
        if algo != "ppo":  # one whole episode per rollout: its first episode's return is the limit
            assert row["final_train_return"] == row["max_steps_in_episode"], row
    if algo != "ppo":  # the rollout is sized to the longest setting: 4 environments x 100 steps
        assert np.load(tmp_path / "metrics.npz")["env_steps"][0, 0] == 4 * 100


@pytest.mark.integration
def test_sweep_of_one_setting_reports_the_evaluation_train_reports(tmp_path):
    # One setting, so the sweep's batch is the train command's (2 runs): the training is the same
    # bit for bit, and the one evaluation protocol must then give the same per-seed figures.
    # (A sweep of several settings vmaps them all into one batch, which XLA may round differently.)
    tiny = ["--set", "num_envs=4", "--set", "num_steps=16", "--set", "total_timesteps=192", "--set",
            "hidden_sizes=(8,)", "--seeds", "2", "--seed", "3", "--eval-episodes", "3", "--no-progress",
            "--no-compile-cache"]
    assert main(["train", "CartPole-v1", "--algo", "ppo", "--set", "lr=1e-3", *tiny, "--out", str(tmp_path / "t")]) == 0
    assert main(["sweep", "CartPole-v1", "--algo", "ppo", "--grid", "lr=1e-3", *tiny,
                 "--out", str(tmp_path / "s")]) == 0
    trained, swept = np.load(tmp_path / "t" / "metrics.npz"), np.load(tmp_path / "s" / "metrics.npz")
    np.testing.assert_array_equal(trained["episode_return"], swept["episode_return"])
    summary = json.loads((tmp_path / "t" / "summary.json").read_text())
    with open(tmp_path / "s" / "sweep.csv") as f:
        (row,) = list(csv.DictReader(f))
    assert json.loads(row["eval_per_seed"]) == summary["eval_return_per_seed"]
