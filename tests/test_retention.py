"""Retention: per-task success on a suite, forgetting against cached base results, Ray fan-out,
`vla-razor eval`."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from vla_razor.envs.suites import Suite
from vla_razor.evaluation import SuccessRate, wilson_interval
from vla_razor.policies import make_policy
from vla_razor.retention import SuiteResult, base_results, evaluate_suite
from vla_razor.retention.parallel import run_evaluations


def rate(k, n):
    return SuccessRate(k, n, *wilson_interval(k, n))


def test_forgetting_is_base_minus_policy_per_prior_task():
    result = SuiteResult(
        "s",
        "PickCube",
        ["PushCube", "PullCube"],
        10,
        0,
        {"PushCube": rate(6, 10), "PullCube": rate(9, 10), "PickCube": rate(8, 10)},
        {"PushCube": rate(9, 10), "PullCube": rate(8, 10), "PickCube": rate(1, 10)},
    )
    assert result.forgetting("PushCube") == pytest.approx(0.3) and result.forgetting(
        "PullCube"
    ) == pytest.approx(-0.1)
    assert result.mean_forgetting == pytest.approx(0.1) and result.retention == pytest.approx(0.75)
    assert result.new_task_success == pytest.approx(0.8)
    again = SuiteResult.from_dict(json.loads(json.dumps(result.as_dict())))
    assert again.tasks == result.tasks and again.base == result.base and "forgetting" in result.table()


@pytest.fixture(scope="module")
def tiny_policy(tmp_path_factory):
    path = tmp_path_factory.mktemp("policy") / "policy"
    make_policy(
        "flow", {"hidden": 32, "num_layers": 1, "chunk_size": 8, "num_steps": 2}, embed_language=False
    ).save_pretrained(path)
    return path


def test_base_results_are_computed_once(tiny_policy):
    suite = Suite("smoke", "PickCube", ["PushCube"])
    first = base_results(tiny_policy, suite, episodes=1, seed=3)
    cache = list((tiny_policy / "retention_cache").glob("*.json"))
    assert len(cache) == 1 and set(first) == {"PushCube", "PickCube"}
    cache[0].write_text(
        json.dumps({t: {**r.as_dict(), "successes": 1, "ci_low": 0.2} for t, r in first.items()})
    )
    second = base_results(tiny_policy, suite, episodes=1, seed=3)
    assert all(r.successes == 1 for r in second.values())  # read from the cache, not re-evaluated
    result = evaluate_suite(tiny_policy, suite, episodes=1, seed=3, base_dir=tiny_policy)
    assert result.mean_forgetting == pytest.approx(1.0 - result.tasks["PushCube"].rate)


def test_ray_fan_out_matches_in_process_evaluation():
    # the shipped base succeeds on some episodes and fails on others: equal results mean the same episodes
    base = str(Path(__file__).resolve().parents[1] / "checkpoints" / "quickstart-base" / "policy")
    jobs = [(base, "PushCube"), (base, "LiftPegUpright")]
    serial = run_evaluations(jobs, episodes=6, seed=5, workers=1)
    parallel = run_evaluations(jobs, episodes=6, seed=5, workers=2)
    assert any(0 < r.successes < r.episodes for r in serial[base].values())  # neither all nor none succeed
    assert serial == parallel  # fixed seeds: the same episodes wherever they run


@pytest.mark.slow
def test_eval_command_prints_the_table_and_writes_results(tiny_policy, tmp_path):
    out = tmp_path / "r.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "vla_razor.cli",
            "eval",
            "--checkpoint",
            str(tiny_policy),
            "--suite",
            "smoke",
            "--episodes",
            "1",
            "--base",
            str(tiny_policy),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "forgetting vs base" in done.stdout and "PushCube" in done.stdout
    saved = json.loads(out.read_text())
    assert saved["tasks"]["PushCube"]["forgetting"] == pytest.approx(0.0) and saved["new_task"] == "PickCube"
    missing = subprocess.run(
        [sys.executable, "-m", "vla_razor.cli", "eval", "--checkpoint", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert missing.returncode == 2 and "save_pretrained" in missing.stderr
