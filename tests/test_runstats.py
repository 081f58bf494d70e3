"""Run-level statistics against closed forms and simulated experiments with known truth."""

import math

import numpy as np
import pytest
from scipy import stats

from vla_razor.analysis.runstats import (
    RunOutcome,
    fit_over_runs,
    hierarchical_bootstrap,
    rank_probabilities,
    runs_needed,
    welch_interval,
)

TASKS, EPISODES, BASE = 3, 50, 0.6


def _arm(rng, runs: int, mean_forgetting: float, run_sd: float) -> list[RunOutcome]:
    """Runs whose true forgetting is normal around ``mean_forgetting`` (the seed), each evaluated on finitely
    many episodes per prior task (the evaluation)."""
    out = []
    for i in range(runs):
        rate = np.clip(BASE - mean_forgetting - rng.normal(0, run_sd), 0.02, 0.98)
        successes = rng.binomial(EPISODES, rate, TASKS)
        out.append(RunOutcome(f"r{i}", tuple(successes), (EPISODES,) * TASKS, (BASE,) * TASKS))
    return out


def test_welch_interval_is_the_closed_form():
    a, b = [0.10, 0.22, 0.15, 0.31], [0.35, 0.41, 0.28, 0.52, 0.47]
    va, vb = np.var(a, ddof=1) / len(a), np.var(b, ddof=1) / len(b)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = stats.t.ppf(0.975, df) * math.sqrt(va + vb)
    out = welch_interval(a, b)
    d = np.mean(b) - np.mean(a)
    assert out["estimate"] == pytest.approx(d) and out["interval"] == pytest.approx([d - half, d + half])
    short = welch_interval(a[:2], b)
    assert short["interval"] is None and "first has 2 runs" in short["note"]
    named = welch_interval(a[:2], b, names=("RL", "SFT"))
    assert named["runs"] == {"RL": 2, "SFT": 5} and "RL has 2 runs" in named["note"]


def test_hierarchical_bootstrap_covers_the_true_difference_and_matches_the_two_level_variance():
    """Seeds with a known spread, episodes with binomial noise: the interval covers the true difference of
    the methods' mean forgetting in about 95% of simulated experiments (or more), and its standard error is
    the two-stage closed form: per method (n - 1) / n * (run variance + 2 x evaluation variance) / n. The
    evaluation's variance counts twice, once in the spread of the observed run values and once in the
    episodes' redraw: the interval is conservative by that much (Welch's is the exact one)."""
    rng = np.random.default_rng(1)
    truth, runs, run_sd = 0.15, 20, 0.06
    covered, errors = 0, []
    experiments = 200
    for k in range(experiments):
        rl, sft = _arm(rng, runs, 0.10, run_sd), _arm(rng, runs, 0.10 + truth, run_sd)
        out = hierarchical_bootstrap(rl, sft, samples=1000, seed=k)
        covered += out["interval"][0] <= truth <= out["interval"][1]
        errors.append(out["standard_error"])

    def evaluation_variance(forgetting):
        p = BASE - forgetting
        return p * (1 - p) / EPISODES / TASKS

    closed = math.sqrt(
        sum((runs - 1) / runs * (run_sd**2 + 2 * evaluation_variance(f)) / runs for f in (0.10, 0.10 + truth))
    )
    assert 0.90 <= covered / experiments <= 0.99
    assert np.mean(errors) == pytest.approx(closed, rel=0.08)


def test_an_arm_with_too_few_runs_gets_no_interval_and_says_so():
    rng = np.random.default_rng(0)
    out = hierarchical_bootstrap(_arm(rng, 2, 0.1, 0.05), _arm(rng, 5, 0.2, 0.05))
    assert out["interval"] is None and out["runs"] == {"first": 2, "second": 5}
    assert "first has 2 runs" in out["note"] and math.isfinite(out["estimate"])
    named = hierarchical_bootstrap(_arm(rng, 5, 0.1, 0.05), _arm(rng, 1, 0.2, 0.05), names=("RL", "SFT"))
    assert named["runs"] == {"RL": 5, "SFT": 1} and named["note"].startswith("no interval: SFT has 1 run (")


def test_fit_over_runs_is_least_squares_r2_with_an_interval_over_runs():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 10, 12)
    y = 0.3 * x + rng.normal(0, 0.5, 12)
    out = fit_over_runs(x, y, degree=1, samples=500)
    assert out["r2"] == pytest.approx(np.corrcoef(x, y)[0, 1] ** 2)
    assert out["interval"][0] <= out["r2"] <= out["interval"][1] and out["runs"] == 12
    exact = fit_over_runs(x, 2 * x + 1, degree=1, samples=200)
    assert exact["r2"] == pytest.approx(1) and exact["interval"] == pytest.approx([1, 1])
    assert fit_over_runs(x[:2], y[:2])["r2"] is None


def test_rank_probabilities_put_the_exact_predictor_first():
    rng = np.random.default_rng(0)
    y = rng.uniform(0, 1, 15)
    predictors = {
        "noise": rng.uniform(0, 1, 15),
        "exact": y + rng.normal(0, 0.01, 15),
        "loose": y + rng.normal(0, 0.3, 15),
    }
    probs = rank_probabilities(predictors, y, samples=500)
    assert probs["exact"][0] == 1.0 and probs["loose"][1] > 0.9
    table = np.array(list(probs.values()))
    assert np.allclose(table.sum(axis=0), 1) and np.allclose(table.sum(axis=1), 1)


@pytest.mark.parametrize("effect, n", [(1.0, 17), (0.5, 64), (0.8, 26)])
def test_runs_needed_is_the_two_sample_t_tests_sample_size(effect, n):
    """Cohen's tables (two-sided alpha 0.05, power 0.8): d = 1.0 -> 17, 0.8 -> 26, 0.5 -> 64 per group."""
    assert runs_needed(effect * 0.1, 0.1, 0.1) == n


def test_several_points_of_a_run_are_resampled_together():
    """Two targets per run: the runs, not the points, are the unit. Duplicating every point (as if each run
    had two identical snapshots) leaves R^2 as it is and does not narrow its interval, resampled by run."""
    rng = np.random.default_rng(3)
    x = rng.uniform(0, 10, 10)
    y = 0.3 * x + rng.normal(0, 1.0, 10)
    once = fit_over_runs(x, y, samples=1000)
    twice = fit_over_runs(np.repeat(x, 2), np.repeat(y, 2), samples=1000, groups=np.repeat(np.arange(10), 2))
    assert twice["r2"] == pytest.approx(once["r2"]) and twice["runs"] == 10 and twice["points"] == 20
    width = lambda f: f["interval"][1] - f["interval"][0]  # noqa: E731
    assert width(twice) == pytest.approx(width(once), rel=0.15)
    naive = fit_over_runs(np.repeat(x, 2), np.repeat(y, 2), samples=1000)  # points as if independent
    assert width(naive) < 0.85 * width(once)


def _point(run, method, new, retention_counts, tag="final", kl=1.0, episodes=10):
    """A point as collect_points writes it: prior tasks A and B, the base at 60% on both."""
    point = {"run": run, "method": method, "tag": tag, "new_task_success": new, "kl/forward": kl}
    for task, x in zip("AB", retention_counts):
        point[f"successes/{task}"], point[f"episodes/{task}"] = x, episodes
        point[f"forgetting/{task}"] = 0.6 - x / episodes
    point["retention"] = sum(retention_counts) / (2 * episodes)
    point["forgetting"] = 0.6 - point["retention"]
    return point


def test_run_level_takes_each_runs_checkpoint_nearest_each_target():
    from vla_razor.analysis.numbers import run_level

    points = []
    for i in range(4):  # RL runs: a periodic point near 50%, a final near 80%
        points.append(_point(f"rl{i}", "rl", 0.48 + 0.01 * i, (5, 5), tag="iter_10", kl=1 + i))
        points.append(_point(f"rl{i}", "rl", 0.79, (4, 5 - i % 2), kl=2 + i))
    for i in range(3):  # SFT runs reach 80% only, forgetting everything
        points.append(_point(f"sft{i}", "sft", 0.8, (0, 0), kl=20 + i))
    points.append(_point("far", "sft", 0.2, (6, 6)))  # near no target
    out = run_level(points, ["A", "B"], [0.5, 0.8])
    at50, at80 = out["comparisons"]
    assert at50["runs"] == {"rl": 4} and at50["sft_minus_rl"] is None
    assert at80["runs"] == {"rl": 4, "sft": 3} and at80["at_floor"] == {"rl": 0, "sft": 3}
    assert [p["tag"] for p in at80["points"]["rl"]] == ["final"] * 4
    rl = np.mean([0.6 - (4 + 5 - i % 2) / 20 for i in range(4)])
    assert at80["sft_minus_rl"]["welch"]["estimate"] == pytest.approx(0.6 - rl)
    assert at80["sft_minus_rl"]["bootstrap"]["interval"] is not None
    assert out["selection"] == ["same episodes"]
    assert at80["same_episodes"] == {"rl": 4, "sft": 3}  # no point has a validation evaluation
    for p in points:  # the new task N: RL's finals played 50 episodes, every other evaluation 20
        p["episodes/N"] = 50 if p["method"] == "rl" and p["tag"] == "final" else 20
    scored = run_level(points, ["A", "B"], [0.5, 0.8])["comparisons"]
    assert [row["scored_episodes"] for row in scored] == [
        {"rl": {"20": 4}},
        {"rl": {"50": 4}, "sft": {"20": 3}},
    ]
    # 7 runs, 11 chosen points (the RL runs at both targets): the fit is over runs
    assert out["fits"]["kl/forward"]["runs"] == 7 and out["fits"]["kl/forward"]["points"] == 11
    # a validation evaluation, when a point has one, chooses the checkpoint instead
    points[0]["validation/new_task_success"] = 0.9  # rl0's periodic point is not near 50% after all
    points[2]["validation/new_task_success"] = 0.5
    again = run_level(points, ["A", "B"], [0.5])
    assert again["comparisons"][0]["runs"] == {"rl": 3} and "validation" in again["selection"]
    assert again["comparisons"][0]["same_episodes"] == {"rl": 2}  # rl1 chosen on validation, rl2 and rl3 not


def test_the_committed_archive_reports_run_level_rows_in_its_summary():
    import json
    from pathlib import Path

    from vla_razor.analysis.numbers import analyse
    from vla_razor.analysis.render import summary_markdown

    points = json.loads(Path("docs/results/razor-robot/points.json").read_text())
    analysis = analyse(points, ["PushCube", "PickCube", "LiftPegUpright"], targets=[0.5, 0.65, 0.8])
    rows = analysis["run_level"]["comparisons"]
    assert [r["target"] for r in rows] == [0.5, 0.65, 0.8] and all(r["runs"]["rl"] >= 3 for r in rows)
    figures = {k: f"{k}.png" for k in ("pareto", "kl", "predictors", "curves")}
    text = summary_markdown(analysis, points, figures)
    assert "## The run as the unit" in text and "| 65% | " in text and "P(rank 1)" in text
    assert any(line.startswith("- Over runs at 80% new-task success") for line in text.splitlines())
    # how closely the arms are matched, on the episodes that score the chosen checkpoints
    assert "| 80% | 5 / 18 | 75% / 78% |" in text
    # chosen on the episodes that score them: all 5 RL checkpoints at 80%, 13 of the 18 SFT ones (the SFT
    # replicates evaluated on validation episodes are the other 5)
    row80 = next(line for line in text.splitlines() if line.startswith("| 80% | "))
    assert row80.endswith(" | 5 / 13 |")
    assert "(RL 5 runs at 75%, SFT 18 at 78%)" in text and "Not matched" not in text
    from vla_razor.envs import load_suite

    mw = json.loads(Path("docs/results/razor-metaworld/points.json").read_text())
    mw_analysis = analyse(mw, load_suite("metaworld").prior_tasks, targets=[0.6, 0.7])
    mw_text = summary_markdown(mw_analysis, mw, figures)
    assert "(RL 5 runs at 58%, SFT 5 at 86%)" in mw_text
    assert (
        "Not matched: on the episodes that score them the arms' new-task success differs by 28 points"
        in mw_text
    )


def test_every_point_says_what_its_run_had_spent(tmp_path):
    """Budgets from a run's saved config and metrics: PPO's optimizer steps start after the critic's
    warm-up."""
    import json

    from vla_razor.analysis.points import run_budgets

    ppo = tmp_path / "ppo"
    ppo.mkdir()
    (ppo / "config.yaml").write_text(
        "update_epochs: 4\nnum_minibatches: 2\ncritic_warmup_iterations: 2\ntotal_env_steps: 4096\n"
    )
    records = [{"step": i, "time": 100.0 + 10 * i, "time/iteration_s": 10.0} for i in range(1, 6)]
    for record in records[3:]:  # an evaluation of 7 s after step 4, logged only as the gap (older runs)
        record["time"] += 7.0
    (ppo / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n{torn")
    spent = run_budgets(ppo)(5, 2048)
    assert spent == {
        "budget/env_steps": 2048,
        "budget/gradient_steps": (5 - 2) * 4 * 2,
        "budget/demos": 0,
        "budget/wall_s": 57.0,
    }
    # stopped after step 5 for an hour, resumed from step 3's checkpoint: steps 4 and 5 again, 12 s each
    records += [{"step": i, "time": 3700.0 + 12 * i, "time/iteration_s": 12.0} for i in (4, 5)]
    (ppo / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in records))
    assert run_budgets(ppo)(5, 2048)["budget/wall_s"] == 3 * 10.0 + 2 * 12.0  # the hour is not spent
    assert run_budgets(ppo)(3, 1024)["budget/wall_s"] == 30.0
    sft = tmp_path / "sft"
    sft.mkdir()
    (sft / "config.yaml").write_text("steps_per_iteration: 50\ndemos: 100\ndata: demos\n")
    assert run_budgets(sft)(4, None) == {
        "budget/env_steps": 0,
        "budget/gradient_steps": 200,
        "budget/demos": 100,
        "budget/wall_s": None,
    }


def test_no_spread_or_too_few_runs_end_in_a_note_not_a_loop():
    x, same = np.array([1.0, 2.0, 3.0, 4.0]), np.full(4, 0.1)
    assert rank_probabilities({"a": x, "b": x**2}, same, samples=50) is None
    assert fit_over_runs(x, same)["r2"] is None
    two_values = fit_over_runs(np.array([1.0, 1.0, 2.0, 2.0]), np.array([0.1, 0.2, 0.3, 0.5]), samples=50)
    assert two_values["r2"] is not None  # a line through two x values: fitted, its resamples bounded
