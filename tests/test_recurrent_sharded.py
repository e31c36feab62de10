"""A recurrent policy's carries over 8 fake devices, in the unit tier (issue: policies with memory).

Its own file, so that `--dist loadfile` can run it beside tests/test_recurrent.py rather than after it."""

import json
import subprocess
import sys

from test_sharding import ROOT, device_env


def test_a_recurrent_run_shards_by_runs_and_by_environments():
    """The carries lie with the runs (`shard="runs"`) or with the environments (`shard="envs"`) of
    8 fake devices (tests/sharded_checks.py in a subprocess), and both layouts match one device."""
    done = subprocess.run([sys.executable, str(ROOT / "tests" / "sharded_checks.py"), "--recurrent"],
                          env=device_env(8), capture_output=True, text=True, timeout=600)
    lines = [line for line in done.stdout.splitlines() if line.startswith("FOUND ")]
    assert done.returncode == 0 and lines, done.stderr[-3000:]
    found = json.loads(lines[-1][len("FOUND "):])
    assert found["devices"] == 8
    assert found["gru_runs_returns_equal"] and found["gru_runs_gap_state"] < 1e-2
    assert found["gru_envs_gap_metrics"] < 1e-2 and found["gru_carry_moved"]
