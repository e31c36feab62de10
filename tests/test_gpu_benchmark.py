"""`python -m benchmarks.gpu` runs and writes its JSON and Markdown: two sections at tiny sizes by default
(seconds), the whole `--quick` suite under `-m slow` (it must stay under the protocol's two minutes
on a 2-core CPU)."""

import json
import math
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks import gpu

ROOT = Path(__file__).resolve().parents[1]


def _numbers(tree):
    """Every int/float leaf of a JSON tree (bools excluded)."""
    if isinstance(tree, dict):
        for value in tree.values():
            yield from _numbers(value)
    elif isinstance(tree, list):
        for value in tree:
            yield from _numbers(value)
    elif isinstance(tree, (int, float)) and not isinstance(tree, bool):
        yield tree


@pytest.mark.integration
def test_smoke_sections_write_json_and_markdown(tmp_path):
    out = tmp_path / "gpu.json"
    assert gpu.main(["--smoke", "--only", "cartpole_env", "search_ranking", "--out", str(out)]) == 0
    payload = json.loads(out.read_text())
    assert payload["config"]["sections"] == ["cartpole_env", "search_ranking"]
    cartpole = payload["sections"]["cartpole_env"]["results"]
    assert [r["num_envs"] for r in cartpole] == list(gpu.SMOKE.cartpole_envs)
    for r in cartpole:
        for name in ("ours", "gymnax"):
            assert math.isfinite(r["steps_per_s"][name]) and r["steps_per_s"][name] > 0
            assert r["compile_s"][name] >= 0
        assert r["ratio_ours_over_gymnax"] > 0
    search = payload["sections"]["search_ranking"]["results"]
    assert [r["num_envs"] for r in search] == list(gpu.SMOKE.search_envs)
    for r in search:
        assert r["n_products"] == gpu.SMOKE.search_products
        assert math.isfinite(r["steps_per_s"]["ours"]) and r["steps_per_s"]["ours"] > 0
    for section in payload["sections"].values():
        for row in section["results"]:
            assert all(math.isfinite(x) and x >= 0 for x in _numbers(row["steady_run_s"]))
    markdown = out.with_suffix(".md").read_text()
    assert "## CartPole-v1 env steps/s" in markdown and "## SearchRanking-v0 env steps/s" in markdown
    assert "## PPO" not in markdown
    assert markdown.count("| N envs |") == 2


def test_sizes_fit_the_spec():
    assert gpu.FULL.cartpole_envs[0] == 2**10 and gpu.FULL.cartpole_envs[-1] == 2**20
    assert gpu.GYMNAX_REFERENCE_ENVS in gpu.FULL.cartpole_envs
    assert gpu.FULL.ppo_seeds == (1, 64, 2048) and gpu.FULL.ppo_iterations * 512 == 499_712
    assert gpu.FULL.search_envs == (1024, 4096, 16384, 65536) and gpu.FULL.pg_seeds == 2048
    assert len(gpu.FULL.ppo_rounds) == len(gpu.FULL.ppo_seeds)
    assert len(gpu.QUICK.ppo_rounds) == len(gpu.QUICK.ppo_seeds)
    # One SearchRanking call at 65,536 envs runs a short scan; at 2^20 CartPole envs, 64 steps.
    assert gpu.scan_steps(65536, gpu.FULL.search_budget, gpu.FULL.search_max_steps) == 4
    assert gpu.scan_steps(2**20, gpu.FULL.cartpole_budget, gpu.FULL.cartpole_max_steps) == 64


def test_2048_agent_rows_carry_the_published_time_and_the_goal():
    def run(peer, run_s):
        return {"peer": peer, "seeds": 2048, "env_steps": 2048 * 499_712, "compile_s": 20.0, "run_s": run_s,
                "steps_per_s": 2048 * 499_712 / run_s, "eval_return_per_seed": [500.0, 480.0], "temp_bytes": 2**30,
                **({"jaxpg_over_rejax_steps_per_s": 2.0, "final_train_return_per_seed": [490.0]}
                   if peer == "jaxpg" else {})}

    runs = [run("jaxpg", 35.0), run("rejax", 70.0)]
    rows, goal = gpu.ppo_rows(runs, gpu.FULL.ppo_iterations)
    assert goal == {"goal_s": 40.0, "run_s": 35.0, "run_plus_compile_s": 55.0, "met": True}
    assert rows[0][-2] == "PureJaxRL 98 s (A100); 2.80x" and rows[0][-1].startswith("met: 35.0 s run")
    assert rows[1][-2] == "PureJaxRL 98 s (A100); 1.40x" and rows[1][-1] == "—"
    assert all(r["published_purejaxrl_a100_s"] == 98.0 for r in runs)
    # A shortened run is not the published one: no reference, no goal.
    rows, goal = gpu.ppo_rows([run("jaxpg", 1.0)], 16)
    assert goal is None and rows[0][-2:] == ["—", "—"]


def test_search_ranking_skips_a_size_that_would_not_fit(monkeypatch):
    monkeypatch.setattr(gpu, "device_memory_bytes", lambda: 1000)
    section = gpu.search_ranking(gpu.SMOKE, 0)
    assert [r["skipped"].startswith("skipped") for r in section["results"]] == [True]
    assert "skipped: about" in section["table"]


@pytest.mark.slow
def test_quick_suite_runs_end_to_end(tmp_path):
    """Every section runs and writes its figures. The suite's 2-minute budget is for a quiet
    2-core machine and the suite reports it itself; in CI another test runs beside this one, so
    the test bounds the time only by the subprocess's timeout."""
    out = tmp_path / "gpu_quick.json"
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "benchmarks.gpu", "--quick", "--out", str(out)],
                   check=True, cwd=ROOT, timeout=900)
    elapsed = time.perf_counter() - start
    payload = json.loads(out.read_text())
    assert payload["config"]["sections"] == list(gpu.SECTIONS)
    for run in payload["sections"]["ppo"]["results"] + payload["sections"]["reinforce_grpo"]["results"]:
        assert math.isfinite(run["steps_per_s"]) and run["steps_per_s"] > 0 and run["compile_s"] > 0
    assert {r["peer"] for r in payload["sections"]["ppo"]["results"]} == {"jaxpg", "rejax"}
    assert out.with_suffix(".md").exists()
    assert f"suite wall time {payload['total_s']:.0f} s" in out.with_suffix(".md").read_text()
    print(f"--quick took {elapsed:.0f} s")
