import json
import os

import numpy as np

from jaxpg.cli import main


def test_cli_train_writes_every_file(tmp_path, capsys):
    out = tmp_path / "run"
    code = main([
        "train", "CartPole-v1", "--algo", "reinforce", "--seeds", "2", "--no-progress",
        "--set", "num_envs=4", "--set", "total_timesteps=6000", "--set", "hidden_sizes=(16,)",
        "--set", "lr=3e-3", "--eval-episodes", "5", "--out", str(out),
    ])
    assert code == 0
    for name in ("metrics.npz", "metrics.csv", "summary.json", "learning_curve.png", "checkpoint"):
        assert os.path.exists(out / name), name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["algo"] == "reinforce" and summary["seeds"] == 2
    assert len(summary["eval_return_per_seed"]) == 2
    assert summary["hparams"]["lr"] == np.float32(3e-3)
    assert summary["compile_seconds"] > 0 and summary["train_seconds"] > 0
    metrics = np.load(out / "metrics.npz")
    assert metrics["episode_return"].shape == (2, 3)
    lines = (out / "metrics.csv").read_text().splitlines()
    assert lines[0].startswith("seed,iteration,") and len(lines) == 1 + 2 * 3
    printed = capsys.readouterr().out
    assert "Evaluation return" in printed and "| seed |" in printed


def test_cli_reports_bad_options(capsys):
    assert main(["train", "CartPole-v1", "--set", "lr=-1"]) == 2
    assert "lr=-1 is out of range" in capsys.readouterr().err
    assert main(["train", "NoSuchEnv-v0"]) == 2
    assert "unknown environment id 'NoSuchEnv-v0'" in capsys.readouterr().err
