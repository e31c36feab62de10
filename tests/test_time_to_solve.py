"""`benchmarks.time_to_solve`'s time-to-475 arithmetic, on a metrics file written by jaxpg's own
writer (the benchmark itself runs processes for minutes and is not part of the suite)."""

import os

import numpy as np
import pytest

from benchmarks import time_to_solve as tts
from benchmarks.common import first_crossing
from jaxpg.run.metrics_files import MetricsWriter

# Two seeds, six iterations: seed 0 crosses 475 at iteration 2, seed 1 at 4; their mean first
# reaches 475 at iteration 3 (480 and 470).
RETURNS = np.array([[100.0, 300.0, 476.0, 480.0, 500.0, 500.0],
                    [90.0, 200.0, 400.0, 470.0, 490.0, 500.0]], dtype=np.float32)


def test_first_crossing_of_the_mean_over_seeds_and_of_each_seed():
    assert first_crossing(RETURNS.mean(axis=0), tts.TARGET) == 3
    assert first_crossing(RETURNS[0], tts.TARGET) == 2
    assert first_crossing(RETURNS[1], tts.TARGET) == 4
    assert first_crossing(RETURNS[:, :3].mean(axis=0), tts.TARGET) is None
    # Below a threshold (a gain error falling under 5%); NaN (no finished episode) never crosses.
    assert first_crossing([0.3, float("nan"), 0.05, 0.01], 0.05, below=True) == 2


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
    crossing = first_crossing(RETURNS.mean(axis=0), tts.TARGET)
    assert tts.seconds_on_disk(polls, data, 2, crossing) == 11.0
    assert tts.seconds_on_disk(polls, data, 2, 0) == 10.0
    assert tts.seconds_on_disk(polls, data, 2, 5) == 12.0
    assert tts.seconds_on_disk(polls, data, 2, 6) is None


def test_estimate_spreads_the_run_evenly_after_startup_and_compile():
    # 4 s startup, 20 s compile, 10 s over 100 iterations: iteration 49 ends at 4 + 20 + 5.
    assert tts.estimate_seconds_to(49, 100, 4.0, 20.0, 10.0) == pytest.approx(29.0)
    assert tts.estimate_seconds_to(99, 100, 4.0, 20.0, 10.0) == pytest.approx(34.0)
