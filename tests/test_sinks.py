"""The optional metric sinks write what they say: TensorBoard events per seed, W&B offline runs."""

import os
import struct

import numpy as np
import pytest

from jaxpg.run.sinks import TensorBoard, WandB

RECORD = {"num_runs": 2, "name": "t", "config": {"lr_schedule": "linear", "num_envs": 4},
          "hparams_per_run": [{"lr": 1e-3}, {"lr": 3e-3}]}
CHUNK = {"episode_return": np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], np.float32),
         "env_steps": np.array([[10, 20, 30], [10, 20, 30]])}


def read_scalars(folder):
    """(tag, step, value) of every scalar in a folder's TFRecord event files."""
    from tensorboardX.proto import event_pb2

    found = []
    for name in os.listdir(folder):
        data = open(os.path.join(folder, name), "rb").read()
        offset = 0
        while offset < len(data):
            (length,) = struct.unpack("<Q", data[offset:offset + 8])
            event = event_pb2.Event.FromString(data[offset + 12:offset + 12 + length])
            offset += 12 + length + 4
            found += [(v.tag, event.step, v.simple_value) for v in event.summary.value if v.HasField("simple_value")]
    return found


def test_tensorboard_writes_one_run_per_seed(tmp_path):
    sink = TensorBoard(str(tmp_path))
    sink.open(RECORD)
    sink.write(CHUNK, np.arange(3))
    sink.close()
    for run in range(2):
        scalars = [s for s in read_scalars(tmp_path / "tensorboard" / f"run_{run}") if s[0] == "episode_return"]
        assert [(step, value) for _, step, value in scalars] == list(zip([10, 20, 30], CHUNK["episode_return"][run]))


@pytest.mark.integration
def test_wandb_offline_writes_one_run_per_seed(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_SILENT", "true")
    sink = WandB(str(tmp_path))
    sink.open(RECORD)
    sink.write(CHUNK, np.arange(3))
    sink.close()
    runs = [d for d in os.listdir(tmp_path / "wandb") if d.startswith("offline-run-")]
    assert len(runs) == 2
    for run in runs:
        assert any(f.endswith(".wandb") and os.path.getsize(tmp_path / "wandb" / run / f) > 0
                   for f in os.listdir(tmp_path / "wandb" / run))
