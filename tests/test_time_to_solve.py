"""benchmarks/time_to_solve.py's time-to-475 arithmetic, on a metrics file written by jaxpg's own
writer (the benchmark itself runs processes for minutes and is not part of the suite)."""

import os
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import time_to_solve as tts  # noqa: E402
from jaxpg.run.metrics_files import MetricsWriter  # noqa: E402

# Two seeds, six iterations: seed 0 crosses 475 at iteration 2, seed 1 at 4; their mean first
# reaches 475 at iteration 3 (480 and 470).
RETURNS = np.array([[100.0, 300.0, 476.0, 480.0, 500.0, 500.0],
                    [90.0, 200.0, 400.0, 470.0, 490.0, 500.0]], dtype=np.float32)


def test_first_crossing_is_of_the_mean_over_seeds():
    assert tts.first_crossing(RETURNS) == 3
    assert tts.first_crossing(RETURNS[:1]) == 2
    assert tts.first_crossing(RETURNS[1:]) == 4
    assert tts.first_crossing(RETURNS[:, :3]) is None


def test_seconds_on_disk_reads_the_chunk_that_holds_the_crossing(tmp_path):
    writer = MetricsWriter(str(tmp_path), num_runs=2)
    polls = []
    # Chunks of two iterations, "seen" by the poller at 10, 11 and 12 s.
    for t, start in zip((10.0, 11.0, 12.0), (0, 2, 4)):
        iterations = np.arange(start, start + 2)
        writer.append({"episode_return": RETURNS[:, start:start + 2],
                       "loss": np.zeros((2, 2), np.float32)}, iterations)
        polls.append((t, os.path.getsize(writer.csv_path)))
    data = open(writer.csv_path, "rb").read()
    assert tts.iterations_on_disk(data[:polls[0][1]], 2) == 2
    assert tts.iterations_on_disk(data[:polls[0][1] + 5], 2) == 2  # half a line is no line
    assert tts.iterations_on_disk(data[:polls[0][1] - 1], 2) == 1  # seed 1's row of iteration 1 unfinished
    crossing = tts.first_crossing(RETURNS)
    assert tts.seconds_on_disk(polls, data, 2, crossing) == 11.0
    assert tts.seconds_on_disk(polls, data, 2, 0) == 10.0
    assert tts.seconds_on_disk(polls, data, 2, 5) == 12.0
    assert tts.seconds_on_disk(polls, data, 2, 6) is None


def test_estimate_spreads_the_run_evenly_after_startup_and_compile():
    # 4 s startup, 20 s compile, 10 s over 100 iterations: iteration 49 ends at 4 + 20 + 5.
    assert tts.estimate_seconds_to(49, 100, 4.0, 20.0, 10.0) == pytest.approx(29.0)
    assert tts.estimate_seconds_to(99, 100, 4.0, 20.0, 10.0) == pytest.approx(34.0)
