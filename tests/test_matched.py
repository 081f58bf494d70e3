"""The matched-success comparison: its interval against the closed form and by simulated coverage,
and the choice of the RL/SFT pair."""

import math

import numpy as np
import pytest
import scipy.stats

from vla_razor.analysis.matched import Z95, difference_interval, matched_pair


def test_z_is_the_normal_quantile():
    assert Z95 == pytest.approx(scipy.stats.norm.ppf(0.975))


def test_one_task_closed_form():
    # RL 30/50, SFT 5/50: centred on 0.6 - 0.1; Agresti-Caffo variance p~(1-p~)/52, p~ = 31/52 and 6/52
    got = difference_interval(([30], [50]), ([5], [50]))
    p1, p2 = 31 / 52, 6 / 52
    half = Z95 * math.sqrt(p1 * (1 - p1) / 52 + p2 * (1 - p2) / 52)
    assert got["estimate"] == pytest.approx(30 / 50 - 5 / 50)
    assert got["ci_low"] == pytest.approx(0.5 - half) and got["ci_high"] == pytest.approx(0.5 + half)
    assert got["half_width"] == pytest.approx(half)


def test_mean_over_tasks_and_the_width_the_experiment_needs():
    # three prior tasks, 50 episodes each, every rate at 1/2 (the widest case)
    got = difference_interval(([25] * 3, [50] * 3), ([25] * 3, [50] * 3))
    assert got["estimate"] == 0
    assert got["half_width"] == pytest.approx(Z95 * math.sqrt(2 * 3 * 0.25 / 52) / 3)
    assert got["half_width"] < 0.15  # a 15-point difference in forgetting is visible at this size


@pytest.mark.parametrize(
    "rates",
    [
        ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
        ((0.6, 0.2, 0.3), (0.0, 0.0, 0.05)),
        ((0.9, 0.1, 0.4), (0.0, 0.0, 0.0)),
        ((0.02, 0.0, 0.04), (0.0, 0.0, 0.0)),
    ],
)
def test_coverage_by_simulation(rates):
    rng = np.random.default_rng(0)
    a, b = np.array(rates[0]), np.array(rates[1])
    n, truth, hits, wald_hits, trials = 50, a.mean() - b.mean(), 0, 0, 3000
    for _ in range(trials):
        xa, xb = rng.binomial(n, a), rng.binomial(n, b)
        got = difference_interval((list(xa), [n] * 3), (list(xb), [n] * 3))
        hits += got["ci_low"] <= truth <= got["ci_high"]
        pa, pb = xa / n, xb / n
        wald = Z95 * math.sqrt((pa * (1 - pa) / n).sum() + (pb * (1 - pb) / n).sum()) / 3
        wald_hits += abs(got["estimate"] - truth) <= wald
    assert hits / trials >= 0.935  # nominal 0.95; the Monte Carlo error is about 0.004
    if a.max() < 0.05:  # rates of a few percent: the plain Wald interval under-covers, this one does not
        assert wald_hits / trials < 0.9 < hits / trials


def _point(method, run, tag, new, counts, episodes=50):
    p = {
        "method": method,
        "run": run,
        "tag": tag,
        "new_task_success": new,
        "env_steps": 0,
        "iteration": 0,
        "kl/forward": 1.0,
        "retention": sum(counts) / len(counts) / episodes,
        "forgetting": 0.0,
    }
    for t, x in zip(("A", "B"), counts):
        p[f"successes/{t}"], p[f"episodes/{t}"] = x, episodes
    return p


def test_matched_pair_prefers_full_evaluations_then_higher_success():
    points = [
        _point("rl", "ppo", "iter_4", 0.70, [8, 6], episodes=20),
        _point("rl", "ppo", "final", 0.80, [30, 20]),
        _point("sft", "sft", "iter_2", 0.78, [1, 0], episodes=20),
        _point("sft", "sft", "final", 0.74, [2, 1]),
        _point("sft", "sft2", "final", 0.95, [0, 0]),  # 15 points away from every RL point
    ]
    got = matched_pair(points, ["A", "B"])
    assert (got["rl"]["tag"], got["sft"]["run"], got["sft"]["tag"]) == ("final", "sft", "final")
    assert got["episodes_per_prior_task"] == 50
    d = got["forgetting_difference"]
    assert d["estimate"] == pytest.approx((30 + 20 - 2 - 1) / 100)  # SFT forgets more: positive
    assert d["ci_low"] > 0
    assert matched_pair(points, ["A", "B"], tolerance=0.01) is None
    assert matched_pair([p for p in points if p["method"] == "rl"], ["A", "B"]) is None
