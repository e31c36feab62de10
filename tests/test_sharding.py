"""Runs and environments over 8 devices, and one job over 2 processes.

Each test starts Python with 8 fake CPU devices (`tests/sharded_checks.py`, or the CLI), so the
rest of the suite keeps one device."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[1]


def device_env(devices: int) -> dict:
    # The test process's own XLA flags (tests/conftest.py's compile setting) carry over.
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={devices}".strip()
    return {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu", "XLA_FLAGS": flags}


@pytest.fixture(scope="module")
def found():
    done = subprocess.run([sys.executable, str(ROOT / "tests" / "sharded_checks.py"), "--learn"], env=device_env(8),
                          capture_output=True, text=True, timeout=900)
    lines = [line for line in done.stdout.splitlines() if line.startswith("FOUND ")]
    assert done.returncode == 0 and lines, done.stderr[-3000:]
    return json.loads(lines[-1][len("FOUND "):])


def test_runs_lie_over_every_device(found):
    assert found["devices"] == 8
    assert found["runs_report"] == {"shard": "runs", "num_devices": 8, "padded_runs": 8}
    # XLA:CPU rounds a run's sums differently with how many runs one device batches: the same
    # episodes, parameters equal to float rounding (sharding.py says why not bit for bit).
    assert found["runs_returns_equal"]
    assert found["runs_gap_state"] < 1e-2 and found["runs_gap_metrics"] < 1e-2


def test_another_device_count_learns_the_same(found):
    # Past the first iterations the rounding gap grows as RL amplifies it; what must hold is the
    # outcome: random play scores about 22, and every run learns on 8 devices as on one.
    assert min(found["runs_learned_on_eight"]) > 150, found["runs_learned_on_eight"]
    assert min(found["runs_learned_on_one"]) > 150, found["runs_learned_on_one"]


def test_a_run_count_the_devices_do_not_divide_is_padded_and_dropped(found):
    assert found["padded_report"] == {"num_devices": 8, "padded_runs": 8}
    assert found["padded_shape"] == [6, 8]  # 6 runs x 8 iterations come back, not 8 runs
    assert found["padded_equal"]  # bit for bit the first 6 runs of the 8-run program


def test_resumed_sharded_run_equals_the_uninterrupted_one(found):
    assert found["resume_from"] == 4
    assert found["resume_equal"]


def test_environments_over_devices_match_one_device_and_learn(found):
    assert found["envs_report"] == {"shard": "envs", "num_devices": 8}
    assert found["envs_gap_metrics"] < 1e-2
    assert "num_envs=12" in found["envs_refused"] and "multiple of 8" in found["envs_refused"]
    # Random play scores about 22; 40 PPO iterations on 64 environments split 8 ways.
    assert min(found["envs_learned_returns"]) > 150, found["envs_learned_returns"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_pbt_lies_over_the_devices_and_resumes_exactly(found):
    assert found["pbt_report"] == {"num_devices": 8, "padded_runs": 8}
    assert found["pbt_parents_within_populations"] and found["pbt_copied"] > 0
    assert found["pbt_resume_equal"]


def test_two_processes_of_four_devices_equal_one_process_of_eight(tmp_path):
    args = ["train", "CartPole-v1", "--algo", "ppo", "--seeds", "8", "--no-preset", "--set", "num_envs=8",
            "--set", "num_steps=16", "--set", "total_timesteps=1024", "--eval-episodes", "2", "--no-progress",
            "--no-compile-cache", "--checkpoint-every", "4"]
    cli = [sys.executable, "-m", "jaxpg.cli", *args]
    coordinator = f"127.0.0.1:{_free_port()}"
    processes = [
        subprocess.Popen([*cli, "--out", str(tmp_path / "multi"), "--coordinator", coordinator, "--num-processes", "2",
                          "--process-id", str(i)], env=device_env(4), cwd=tmp_path, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
        for i in range(2)
    ]
    outputs = [p.communicate(timeout=600)[0] for p in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs[0][-2000:] + outputs[1][-2000:]
    single = subprocess.run([*cli, "--out", str(tmp_path / "single")], env=device_env(8), cwd=tmp_path,
                            capture_output=True, text=True, timeout=600)
    assert single.returncode == 0, single.stderr[-2000:]
    assert "in 2 processes" in outputs[0] and "Evaluation return" in outputs[0]
    assert "Evaluation return" not in outputs[1]  # process 0 alone prints and writes
    multi_csv = (tmp_path / "multi" / "metrics.csv").read_text()
    assert multi_csv == (tmp_path / "single" / "metrics.csv").read_text()
    summaries = [json.loads((tmp_path / name / "summary.json").read_text()) for name in ("multi", "single")]
    assert summaries[0]["eval_return_per_seed"] == summaries[1]["eval_return_per_seed"]
    assert summaries[0]["num_processes"] == 2 and summaries[0]["num_devices"] == 8
    assert sorted(os.listdir(tmp_path / "multi" / "checkpoints")) == ["4", "8"]
