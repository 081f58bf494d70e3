"""The statistics of the razor analysis: Pareto frontiers and least-squares fits with R^2.

Plain numpy on small arrays (one point per evaluated checkpoint); checked against scipy in the tests.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def pareto_frontier(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Indices of the points not dominated when both coordinates are to be maximised, sorted by x.

    A point is dominated when another is at least as good in both coordinates and better in one.
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    order = np.lexsort((-y, -x))  # x descending, then y descending
    frontier, best_y = [], -np.inf
    for i in order:
        if y[i] > best_y:
            frontier.append(i)
            best_y = y[i]
    return np.array(sorted(frontier, key=lambda i: (x[i], -y[i])), dtype=int)


def frontier_area(x: np.ndarray, y: np.ndarray, lo: float = 0.0, hi: float = 1.0) -> float:
    """Area under the staircase frontier on [lo, hi] of x: for every x, the best y reachable at x or more.

    Compares two methods' frontiers with one number (larger: better trade-off)."""
    idx = pareto_frontier(x, y)
    xs, ys = np.asarray(x, float)[idx], np.asarray(y, float)[idx]
    area, left = 0.0, lo
    for xi, yi in zip(xs, ys):  # x ascending, y descending along the frontier
        right = min(max(xi, lo), hi)
        if right > left:
            area += (right - left) * yi
            left = right
    return area


@dataclass(frozen=True)
class Fit:
    """A least-squares polynomial fit of y on x."""

    degree: int
    coefficients: tuple[float, ...]
    """Highest degree first (numpy.polyfit order)."""
    r2: float
    n: int

    def predict(self, x) -> np.ndarray:
        return np.polyval(self.coefficients, np.asarray(x, float))

    def as_dict(self) -> dict:
        return {"degree": self.degree, "coefficients": list(self.coefficients), "r2": self.r2, "n": self.n}


def polyfit(x, y, degree: int) -> Fit:
    """Least squares of ``y`` on ``x`` (degree 1: linear, 2: quadratic), with R^2 = 1 - SS_res / SS_tot."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) != len(y):
        raise ValueError(f"x and y differ in length: {len(x)} vs {len(y)}")
    if len(x) <= degree:
        raise ValueError(f"a degree-{degree} fit needs more than {degree} points, got {len(x)}")
    coefficients = np.polyfit(x, y, degree)
    residual = y - np.polyval(coefficients, x)
    total = ((y - y.mean()) ** 2).sum()
    r2 = 1.0 - (residual**2).sum() / total if total > 0 else float("nan")
    return Fit(degree, tuple(float(c) for c in coefficients), float(r2), len(x))


def rank_predictors(
    predictors: dict[str, np.ndarray], target: np.ndarray, degree: int = 1
) -> list[tuple[str, Fit]]:
    """Fit ``target`` on each predictor; sorted by R^2, best first (nan last)."""
    fits = [(name, polyfit(values, target, degree)) for name, values in predictors.items()]
    return sorted(fits, key=lambda item: (np.isnan(item[1].r2), -np.nan_to_num(item[1].r2, nan=0.0)))


def bootstrap_frontier_areas(
    groups: dict[str, dict[str, list[tuple[np.ndarray, np.ndarray]]]],
    base: tuple[np.ndarray, np.ndarray],
    samples: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> dict | None:
    """Percentile intervals of each method's frontier area, and of the first two methods' difference, over
    runs: every bootstrap sample draws, within each configuration of each method, that configuration's runs
    with replacement (as many as it has), and takes the frontier of the drawn runs' points plus the base's.
    Methods are drawn independently (runs of different methods share no seed-level randomness worth pairing).

    ``groups[method][configuration] = [(new-task success, retention) arrays of one run, ...]``. A
    configuration with one run enters every resample as it is (it adds no spread: counted in
    ``single_run_configurations``). None unless every method has a configuration with at least two runs."""
    methods = list(groups)
    if len(methods) < 1 or not all(any(len(r) >= 2 for r in groups[m].values()) for m in methods):
        return None
    rng = np.random.default_rng(seed)
    areas = {m: [] for m in methods}
    for _ in range(samples):
        for m in methods:
            drawn = [runs[i] for runs in groups[m].values() for i in rng.integers(0, len(runs), len(runs))]
            x = np.concatenate([base[0], *(run[0] for run in drawn)])
            y = np.concatenate([base[1], *(run[1] for run in drawn)])
            areas[m].append(frontier_area(x, y))
    tail = (1.0 - level) / 2 * 100
    out = {
        "runs": {m: sum(len(r) for r in groups[m].values()) for m in methods},
        "configurations": {m: len(groups[m]) for m in methods},
        "single_run_configurations": {m: sum(len(r) == 1 for r in groups[m].values()) for m in methods},
        "samples": samples,
        "level": level,
        "area": {
            m: {"low": float(np.percentile(a, tail)), "high": float(np.percentile(a, 100 - tail))}
            for m, a in areas.items()
        },
    }
    if len(methods) >= 2:
        diff = np.array(areas[methods[0]]) - np.array(areas[methods[1]])
        out["difference"] = {
            "methods": methods[:2],
            "low": float(np.percentile(diff, tail)),
            "high": float(np.percentile(diff, 100 - tail)),
            "fraction_above_zero": float((diff > 0).mean()),
        }
    return out
