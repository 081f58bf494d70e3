"""Statistics whose unit is the run (seed): differences between methods, fits and their rankings, power.

A checkpoint's forgetting mixes two kinds of noise: the run's own (its seed: data order, exploration,
initialisation of the heads) and the evaluation's (finitely many episodes). An interval over the episodes
of one run covers only the second; these functions resample both, runs first:

- :func:`hierarchical_bootstrap` draws each method's runs with replacement, then each drawn run's episodes
  (a task's success count from the binomial of its observed rate, which is drawing its episodes with
  replacement), and takes the percentile interval of the difference of the methods' means;
  (the evaluation's variance counts twice, in the spread of the observed run values and in the redraw, so
  the interval is conservative by that much: about 10% wider at 50 episodes per task, tested);
- :func:`welch_interval` is the matching closed form: the run-level values already hold both noises, so
  Welch's t interval on them is the random-run-effect model's interval (exact for normal run values);
- :func:`fit_over_runs` and :func:`rank_probabilities`: one point per run, R^2 with an interval and the
  predictors' ranking with the probability of each rank, both by resampling runs;
- :func:`runs_needed`: how many runs per method a difference needs at the observed spread (power).

A method with fewer than :data:`MIN_RUNS` runs gets no interval: the result says so instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

MIN_RUNS = 3
"""Fewer runs than this in a method: no interval (a spread over two runs is not an estimate to print)."""


@dataclass(frozen=True)
class RunOutcome:
    """One run's checkpoint at one target: per prior task, its successes and episodes and the base's rate
    on the same episode seeds. Its forgetting is the mean over tasks of
    ``base_rate - successes / episodes``."""

    run: str
    successes: tuple[int, ...]
    episodes: tuple[int, ...]
    base_rates: tuple[float, ...]

    @property
    def forgetting(self) -> float:
        rates = np.asarray(self.successes, float) / np.asarray(self.episodes, float)
        return float(np.mean(np.asarray(self.base_rates) - rates))


def too_few_runs(runs: dict[str, int]) -> str | None:
    """Why there is no interval when a side has fewer than :data:`MIN_RUNS` runs (``runs``: name -> count),
    else None."""
    short = [f"{name} has {n} run{'s' * (n != 1)}" for name, n in runs.items() if n < MIN_RUNS]
    return f"no interval: {', '.join(short)} (at least {MIN_RUNS} per method)" if short else None


def hierarchical_bootstrap(
    first: list[RunOutcome],
    second: list[RunOutcome],
    samples: int = 4000,
    seed: int = 0,
    level: float = 0.95,
    names: tuple[str, str] = ("first", "second"),
) -> dict:
    """Mean forgetting of ``second`` minus that of ``first`` over their runs, with its percentile interval
    from resampling runs within each method, then episodes within each run. ``runs`` says how many runs each
    side rests on, keyed by ``names`` (the methods' names, as the note calls them); with fewer than
    :data:`MIN_RUNS` on a side, ``interval`` is None and ``note`` says why."""
    runs = {names[0]: len(first), names[1]: len(second)}
    if not first or not second:
        raise ValueError(f"both methods need runs, got {runs}")
    estimate = float(np.mean([r.forgetting for r in second]) - np.mean([r.forgetting for r in first]))
    out = {"estimate": estimate, "runs": runs, "samples": samples, "level": level, "interval": None}
    note = too_few_runs(runs)
    if note:
        return {**out, "note": note}
    rng = np.random.default_rng(seed)
    draws = _arm_means(first, samples, rng), _arm_means(second, samples, rng)
    diff = draws[1] - draws[0]
    tail = (1 - level) / 2
    low, high = np.quantile(diff, [tail, 1 - tail])
    return {
        **out,
        "interval": [float(low), float(high)],
        "standard_error": float(diff.std(ddof=1)),
        "fraction_above_zero": float((diff > 0).mean()),
    }


def _arm_means(arm: list[RunOutcome], samples: int, rng: np.random.Generator) -> np.ndarray:
    """``samples`` bootstrap means of one method's forgetting: runs drawn with replacement, then each drawn
    run's success counts redrawn from the binomial of its observed rates."""
    successes = np.array([r.successes for r in arm], float)  # [runs, tasks]
    episodes = np.array([r.episodes for r in arm], float)
    base = np.array([r.base_rates for r in arm], float)
    picked = rng.integers(0, len(arm), size=(samples, len(arm)))
    n = episodes[picked].astype(int)
    redrawn = rng.binomial(n, successes[picked] / episodes[picked])
    forgetting = (base[picked] - redrawn / n).mean(axis=2)  # [samples, runs]
    return forgetting.mean(axis=1)


def welch_interval(
    first: list[float], second: list[float], level: float = 0.95, names: tuple[str, str] = ("first", "second")
) -> dict:
    """``mean(second) - mean(first)`` of run-level values with Welch's t interval (unequal variances);
    ``runs`` and the note name the sides by ``names``."""
    runs = {names[0]: len(first), names[1]: len(second)}
    estimate = float(np.mean(second) - np.mean(first))
    note = too_few_runs(runs)
    if note:
        return {"estimate": estimate, "runs": runs, "interval": None, "note": note}
    result = stats.ttest_ind(second, first, equal_var=False)
    ci = result.confidence_interval(confidence_level=level)
    return {
        "estimate": estimate,
        "runs": runs,
        "interval": [float(ci.low), float(ci.high)],
        "p_value": float(result.pvalue),
    }


def _r2(x: np.ndarray, y: np.ndarray, degree: int) -> float:
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    residual = y - np.polyval(np.polyfit(x, y, degree), x)
    return float(1 - (residual**2).sum() / ((y - y.mean()) ** 2).sum())


def _resample(groups: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Indices of a resample of the points: whole runs (``groups`` names each point's run) drawn with
    replacement, each with all of its points."""
    runs = np.unique(groups)
    members = {g: np.flatnonzero(groups == g) for g in runs}
    return np.concatenate([members[g] for g in rng.choice(runs, len(runs))])


def fit_over_runs(
    x: np.ndarray,
    y: np.ndarray,
    degree: int = 1,
    samples: int = 2000,
    seed: int = 0,
    level: float = 0.95,
    groups: np.ndarray | None = None,
) -> dict:
    """R^2 of a degree-``degree`` least-squares fit of ``y`` on ``x`` with the percentile interval of R^2 over
    resamples of the runs: a point per run, or (``groups``: each point's run) several, resampled together (a
    resample with fewer than ``degree + 2`` distinct points is drawn again)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    groups = np.arange(len(x)) if groups is None else np.asarray(groups)
    runs = len(np.unique(groups))
    if runs < MIN_RUNS or len(x) < degree + 2:
        return {"r2": None, "runs": runs, "points": len(x), "interval": None, "note": f"no fit: {runs} runs"}
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        note = "no fit: no spread in the predictor or in the forgetting"
        return {"r2": None, "runs": runs, "points": len(x), "interval": None, "note": note}
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(100 * samples):  # bounded: a resample that cannot be fitted is drawn again
        idx = _resample(groups, rng)
        if len(np.unique(x[idx])) >= degree + 2:
            values.append(_r2(x[idx], y[idx], degree))
            if len(values) == samples:
                break
    values = np.array(values)
    values = values[np.isfinite(values)]  # resamples without spread in y have no R^2
    tail = (1 - level) / 2
    low, high = np.quantile(values, [tail, 1 - tail]) if len(values) else (np.nan, np.nan)
    return {
        "r2": _r2(x, y, degree),
        "runs": runs,
        "points": len(x),
        "interval": [float(low), float(high)],
        "degree": degree,
    }


def rank_probabilities(
    predictors: dict[str, np.ndarray],
    y: np.ndarray,
    degree: int = 1,
    samples: int = 2000,
    seed: int = 0,
    groups: np.ndarray | None = None,
) -> dict[str, list[float]] | None:
    """For each predictor, the probability of each rank (1 = best R^2) over resamples of the runs (``groups``:
    each point's run; default one point per run), every predictor ranked on the same resample.
    ``out[name][k]`` is P(rank k + 1). None with fewer than :data:`MIN_RUNS` runs or no spread in ``y``."""
    names = list(predictors)
    xs = np.array([np.asarray(predictors[n], float) for n in names])
    y = np.asarray(y, float)
    groups = np.arange(len(y)) if groups is None else np.asarray(groups)
    if len(np.unique(groups)) < MIN_RUNS or len(np.unique(y)) < degree + 2:
        return None  # too few runs, or no spread in the forgetting to explain
    counts = np.zeros((len(names), len(names)))
    rng = np.random.default_rng(seed)
    done = 0
    for _ in range(100 * samples):  # bounded: a resample without spread is drawn again
        idx = _resample(groups, rng)
        if len(np.unique(y[idx])) < degree + 2:
            continue
        r2 = np.array([_r2(x[idx], y[idx], degree) for x in xs])
        order = np.argsort(-np.nan_to_num(r2, nan=-np.inf), kind="stable")
        counts[order, np.arange(len(names))] += 1
        done += 1
        if done == samples:
            break
    return {name: (counts[i] / max(done, 1)).tolist() for i, name in enumerate(names)}


def runs_needed(
    difference: float, sd_first: float, sd_second: float, power: float = 0.8, alpha: float = 0.05
) -> int:
    """Runs per method for a two-sided Welch test at ``alpha`` to detect ``difference`` with ``power``, given
    each method's run-to-run standard deviation (equal runs per method; the t distribution's degrees of
    freedom iterated from the normal approximation)."""
    if difference == 0:
        raise ValueError("a difference of 0 needs infinitely many runs")
    variance = sd_first**2 + sd_second**2
    n = 2
    while True:
        se = np.sqrt(variance / n)
        df = (variance / n) ** 2 / ((sd_first**2 / n) ** 2 / (n - 1) + (sd_second**2 / n) ** 2 / (n - 1))
        critical = stats.t.ppf(1 - alpha / 2, df)
        # power of the two-sided test: the noncentral t's mass beyond the critical values
        achieved = stats.nct.sf(critical, df, abs(difference) / se) + stats.nct.cdf(
            -critical, df, abs(difference) / se
        )
        if achieved >= power or n > 10_000:
            return n
        n += 1
