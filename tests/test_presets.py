"""The shipped presets learn: each trains over vmapped seeds and every seed meets its criterion.

`benchmarks/presets.py` checks every preset over 8 seeds for the README's table; this slow test
keeps the ones a new user meets first (`jaxpg train CartPole-v1` for each algorithm) on 4 seeds, so
a change that breaks them fails CI, and XLand-MiniGrid's Empty-6x6 (another suite, through
envs/adapters) on 2. The token task's SFT-then-GRPO preset (Addition-v0-2digits), the brax,
Snake and Playground presets (minutes of compile and training each on 2 cores) are checked by
`benchmarks/presets.py` (results/presets_addition.json, presets_brax_snake.json,
presets_playground.json), not here.
"""

import importlib.util

import pytest

from jaxpg import presets
from jaxpg.presets.check import check_preset

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("name, algo, seeds", [
    ("CartPole-v1", "ppo", 4), ("CartPole-v1", "reinforce", 4), ("CartPole-v1", "grpo", 4),
    pytest.param("xminigrid:MiniGrid-Empty-6x6", "ppo", 2, marks=pytest.mark.skipif(
        importlib.util.find_spec("xminigrid") is None, reason="pip install 'jaxpg[xminigrid]'"))])
def test_preset_meets_its_criterion_on_every_seed(name, algo, seeds):
    preset = presets.get(name, algo)
    result = check_preset(preset, seeds=seeds, eval_episodes=32)
    assert result["passed"], (name, algo, result["values"], preset.threshold)
    if (name, algo) == ("CartPole-v1", "ppo"):
        assert preset.options == {}  # so this is also the test that PPO's defaults learn CartPole
