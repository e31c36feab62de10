"""The command line: train, presets and references, kill-and-resume, the compile cache, eval, plot."""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from jaxpg.cli import main
from jaxpg.cli.commands import restore_run
from jaxpg.run.checkpoint import keys_to_data

TINY_REINFORCE = ["--set", "num_envs=4", "--set", "total_timesteps=6000", "--set", "hidden_sizes=(16,)",
                  "--set", "lr=3e-3", "--set", "num_steps=500"]


@pytest.fixture(autouse=True)
def private_compile_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("JAXPG_COMPILATION_CACHE", str(tmp_path / "xla-cache"))


@pytest.mark.integration
def test_cli_train_writes_every_file(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "CartPole-v1", "--algo", "reinforce", "--seeds", "2", "--no-progress",
                 *TINY_REINFORCE, "--eval-episodes", "5", "--out", str(out)])
    assert code == 0
    for name in ("metrics.npz", "metrics.csv", "summary.json", "learning_curve.png", "checkpoints", "run.json"):
        assert os.path.exists(out / name), name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["algo"] == "reinforce" and summary["seeds"] == 2 and summary["preset"] == "CartPole-v1"
    assert len(summary["eval_return_per_seed"]) == 2
    assert summary["hparams"]["lr"] == np.float32(3e-3)
    assert summary["compile_seconds"] > 0 and summary["run_seconds"] > 0
    assert summary["config"]["lr_schedule"] == "linear"  # from the preset, under the --set overrides
    metrics = np.load(out / "metrics.npz")
    assert metrics["episode_return"].shape == (2, 3)
    lines = (out / "metrics.csv").read_text().splitlines()
    assert lines[0].startswith("iteration,run,") and len(lines) == 1 + 2 * 3
    printed = capsys.readouterr().out
    assert "preset CartPole-v1 / reinforce" in printed
    assert "Evaluation return" in printed and "| seed |" in printed


def test_cli_reports_bad_options(capsys):
    assert main(["train", "CartPole-v1", "--set", "lr=-1"]) == 2
    assert "lr=-1 is out of range" in capsys.readouterr().err
    assert main(["train", "NoSuchEnv-v0"]) == 2
    assert "unknown environment id 'NoSuchEnv-v0'" in capsys.readouterr().err
    assert main(["train", "CartPole-v1", "--set", "ent_coeff=0.1"]) == 2
    assert "did you mean 'ent_coeff' -> 'ent_coef'" in capsys.readouterr().err


def test_help_algo_lists_every_option_from_its_declaration(capsys):
    assert main(["train", "--help-algo", "grpo"]) == 0
    printed = capsys.readouterr().out
    from jaxpg import GRPOConfig

    for name, spec in GRPOConfig.specs().items():
        assert f"| `{name}` |" in printed and spec.doc in printed
    assert "| `group_size` | setting (static) | `4` | an integer >= 2 |" in printed


@pytest.mark.integration
def test_lqr_run_prints_and_records_the_exact_references(tmp_path, capsys):
    out = tmp_path / "lqr"
    assert main(["train", "LQR-v0", "--algo", "ppo", "--seeds", "2", "--no-progress", "--eval-episodes", "8",
                 "--set", "total_timesteps=8192", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "preset LQR-v0 / ppo" in printed and "Reference K*: [[-0.6153]]" in printed
    assert "gain error vs K*" in printed and "Reference policy 'riccati'" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert abs(summary["references"]["K*"][0][0] + 0.61525) < 1e-4
    assert summary["references"]["optimal_return"] < 0
    for seed in summary["per_seed_references"]:
        K = seed["learned_gain"][0][0]
        assert abs(seed["gain_relative_error"] - abs(K + 0.61525) / 0.61525) < 1e-4


def cli(*args, cwd=None):
    return [sys.executable, "-m", "jaxpg.cli", *args]


@pytest.mark.integration
def test_killed_run_resumes_to_the_uninterrupted_result_and_the_cache_serves_the_rerun(tmp_path):
    """SIGKILL a real `jaxpg train` after its first checkpoint, `jaxpg resume` it, and compare with
    an uninterrupted run of the same command: parameters bitwise, metrics files identical."""
    args = ["train", "CartPole-v1", "--algo", "ppo", "--seeds", "2", "--no-progress", "--eval-episodes", "4",
            "--set", "num_envs=4", "--set", "num_steps=8", "--set", "total_timesteps=12800",
            "--set", "hidden_sizes=(16,)", "--checkpoint-every", "20", "--chunk-size", "5"]
    env = dict(os.environ)
    killed = tmp_path / "killed"
    process = subprocess.Popen(cli(*args, "--out", str(killed)), env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT)
    deadline = time.time() + 300
    while not (killed / "checkpoints" / "20").exists():
        assert process.poll() is None, process.stdout.read().decode()
        assert time.time() < deadline
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (killed / "summary.json").exists()  # it really was cut short
    resumed = subprocess.run(cli("resume", str(killed), "--no-progress"), env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr

    whole = tmp_path / "whole"
    uninterrupted = subprocess.run(cli(*args, "--out", str(whole)), env=env, capture_output=True, text=True)
    assert uninterrupted.returncode == 0, uninterrupted.stderr
    summary = json.loads((whole / "summary.json").read_text())
    assert summary["compile_cache_hits"] > 0 and summary["compile_cache_misses"] == 0
    assert "served by the compile cache" in uninterrupted.stdout

    assert (killed / "metrics.csv").read_text() == (whole / "metrics.csv").read_text()
    a, b = np.load(killed / "metrics.npz"), np.load(whole / "metrics.npz")
    assert sorted(a) == sorted(b) and all(np.array_equal(a[k], b[k], equal_nan=True) for k in a)
    (_, _, state_a, step_a), (_, _, state_b, step_b) = restore_run(str(killed)), restore_run(str(whole))
    assert step_a == step_b == 400
    for x, y in zip(jax.tree.leaves(keys_to_data(state_a)), jax.tree.leaves(keys_to_data(state_b))):
        assert np.array_equal(np.asarray(x), np.asarray(y))

    # eval and plot read what train wrote.
    evaluated = subprocess.run(cli("eval", str(whole), "--episodes", "3"), env=env, capture_output=True, text=True)
    assert evaluated.returncode == 0 and "seed 1: evaluation return" in evaluated.stdout
    assert main(["plot", str(killed), str(whole), "--out", str(tmp_path / "curves.png")]) == 0
    assert (tmp_path / "curves.png").stat().st_size > 1000


@pytest.mark.integration
def test_a_second_train_into_a_run_is_refused_and_resume_can_extend_it(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "CartPole-v1", "--algo", "reinforce", "--seeds", "1", "--no-progress",
                 *TINY_REINFORCE, "--eval-episodes", "2", "--out", str(out)]) == 0
    assert main(["train", "CartPole-v1", "--algo", "reinforce", "--no-progress", "--out", str(out)]) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert main(["resume", str(out), "--no-progress", "--override", "total_timesteps=10000"]) == 0
    assert json.loads((out / "summary.json").read_text())["total_iterations"] == 5
    assert np.load(out / "metrics.npz")["episode_return"].shape == (1, 5)
    assert json.loads((out / "run.json").read_text())["options"]["total_timesteps"] == 10000
    assert sorted(os.listdir(out)) == sorted(set(os.listdir(out)) - {n for n in os.listdir(out) if ".tmp" in n})


@pytest.mark.integration
def test_refused_or_failed_resume_leaves_the_run_resumable_as_before(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    assert main(["train", "CartPole-v1", "--algo", "reinforce", "--seeds", "1", "--no-progress",
                 *TINY_REINFORCE, "--eval-episodes", "2", "--out", str(out)]) == 0
    spec = (out / "run.json").read_bytes()
    capsys.readouterr()
    # Anything but total_timesteps is refused by name before anything is touched: a hyperparameter
    # (lr), a static size (num_envs), an unknown name.
    for override, name in (("lr=0.1", "lr"), ("num_envs=8", "num_envs"), ("clip_eps=0.3", "clip_eps")):
        assert main(["resume", str(out), "--no-progress", "--override", override]) == 2
        err = capsys.readouterr().err
        assert f"--override {name} " in err and "accepted: total_timesteps" in err and len(err.splitlines()) == 1
        assert (out / "run.json").read_bytes() == spec
    # A total below the 3 iterations already trained is refused once the checkpoint is read.
    assert main(["resume", str(out), "--no-progress", "--override", "total_timesteps=2000"]) == 2
    assert "past this run's 1 iterations" in capsys.readouterr().err
    assert (out / "run.json").read_bytes() == spec
    # A resume that fails before training is under way (here: restoring) leaves run.json as it was.
    from jaxpg.run.checkpoint import Checkpoints

    def broken(*args, **kwargs):
        raise RuntimeError("simulated failure while restoring")

    with monkeypatch.context() as patch:
        patch.setattr(Checkpoints, "restore_latest", broken)
        with pytest.raises(RuntimeError, match="simulated"):
            main(["resume", str(out), "--no-progress", "--override", "total_timesteps=10000"])
    assert (out / "run.json").read_bytes() == spec
    assert main(["resume", str(out), "--no-progress"]) == 0
    assert (out / "run.json").read_bytes() == spec
    assert json.loads((out / "summary.json").read_text())["total_iterations"] == 3


def test_every_command_answers_help_with_the_run_options_from_their_declaration(capsys):
    for command in ("train", "resume", "eval", "sweep", "plot"):
        with pytest.raises(SystemExit) as done:
            main([command, "--help"])
        assert done.value.code == 0, command
    printed = capsys.readouterr().out
    for flag in ("--chunk-size", "--metrics-every", "--checkpoint-every", "--keep-checkpoints", "--on-nonfinite",
                 "--shard", "--no-progress", "--tensorboard", "--wandb"):
        assert flag in printed, flag


def test_a_preset_judged_on_sampled_actions_is_evaluated_on_them_by_train_eval_and_sweep():
    """Snake's preset is judged on sampled actions (a greedy snake circles without eating): the
    commands' one evaluation protocol follows the run's preset, and acts greedily otherwise."""
    from jaxpg.cli.commands import eval_deterministic

    assert eval_deterministic({"preset": "jumanji:Snake-v1", "algo": "ppo"}) is False
    assert eval_deterministic({"preset": "CartPole-v1", "algo": "ppo"}) is True
    assert eval_deterministic({"preset": None, "algo": "ppo"}) is True


@pytest.mark.integration
def test_a_preset_with_an_sft_stage_builds_its_run(monkeypatch, capsys):
    """`jaxpg train Addition-v0 --env-set num_digits=2` fits the policy to demonstrations before
    RL (the preset's SFT stage); here with 64 demonstrations and 2 updates instead of its sizes."""
    import dataclasses

    from jaxpg import presets
    from jaxpg.cli import commands

    preset = presets.get("Addition-v0-2digits", "grpo")
    tiny = dataclasses.replace(preset, sft={**preset.sft, "num_demonstrations": 64, "num_updates": 2})
    monkeypatch.setattr(commands.presets, "get", lambda name, algo: tiny)
    spec = {"env": "Addition-v0", "env_options": {"num_digits": 2}, "preset": tiny.name, "algo": "grpo",
            "options": {"total_timesteps": 256}, "base_seed": 0}
    trainer, built_from = commands.build_run(spec)
    assert built_from is tiny and trainer._initial_policy_params is not None
    assert "jaxpg: SFT on 64 demonstrations, 2 updates" in capsys.readouterr().out
