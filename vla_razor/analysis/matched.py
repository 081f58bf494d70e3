"""RL and SFT at matched new-task success: the razor's comparison, with its confidence interval.

The razor's claim is about forgetting at the *same* new-task success, so the analysis picks one RL
point and one SFT point whose new-task success differs by at most ``tolerance`` and compares their
forgetting. Both are evaluated on the same episode seeds as the base, so the base cancels:
``forgetting_SFT - forgetting_RL = retention_RL - retention_SFT``, a difference of two means of
per-task success rates. Its 95% interval is centred on that difference, with the Agresti-Caffo
variance (every task's count plus one success and one failure): the plain Wald variance vanishes
when a policy forgets a task completely (rate 0) and its interval then under-covers (0.80 for rates
of a few percent in tests/test_matched.py); this one stays at or above 95% there.
"""

from __future__ import annotations

import math

Z95 = 1.959963984540054


def adjusted_mean(successes: list[int], episodes: list[int]) -> tuple[float, float]:
    """Mean over tasks of the Agresti-Caffo adjusted rates ``(x + 1) / (n + 2)``, and its variance."""
    if not successes or len(successes) != len(episodes):
        raise ValueError("need one success count per task and as many episode counts")
    rates = [(x + 1) / (n + 2) for x, n in zip(successes, episodes)]
    var = sum(p * (1 - p) / (n + 2) for p, n in zip(rates, episodes)) / len(rates) ** 2
    return sum(rates) / len(rates), var


def difference_interval(
    a: tuple[list[int], list[int]], b: tuple[list[int], list[int]], z: float = Z95
) -> dict:
    """Mean success of ``a`` minus that of ``b`` over the same tasks (``(successes, episodes)`` each):
    the estimate and its 95% interval (Agresti-Caffo variance, centred on the estimate)."""
    (xa, na), (xb, nb) = a, b
    if len(xa) != len(xb):
        raise ValueError("both policies need the same tasks")
    estimate = sum(x / n for x, n in zip(xa, na)) / len(xa) - sum(x / n for x, n in zip(xb, nb)) / len(xb)
    _, va = adjusted_mean(xa, na)
    _, vb = adjusted_mean(xb, nb)
    half = z * math.sqrt(va + vb)
    return {"estimate": estimate, "ci_low": estimate - half, "ci_high": estimate + half, "half_width": half}


def _counts(point: dict, tasks: list[str]) -> tuple[list[int], list[int]]:
    return [int(point[f"successes/{t}"]) for t in tasks], [int(point[f"episodes/{t}"]) for t in tasks]


def matched_points(
    points: list[dict], prior_tasks: list[str], first: str, second: str, tolerance: float = 0.10
) -> tuple[dict, dict, dict] | None:
    """A point of method ``first`` and one of ``second`` at matched new-task success, and the difference of
    their forgetting (``second`` minus ``first``, with its 95% interval).

    Among the pairs within ``tolerance`` of each other, it takes those with the most evaluation
    episodes per prior task (the final evaluations, when they match), then the highest new-task
    success, then the closest match. None when no pair is within ``tolerance``.
    """
    if not prior_tasks:
        return None

    def usable(p):
        return all(f"successes/{t}" in p and f"episodes/{t}" in p for t in prior_tasks)

    a = [p for p in points if p["method"] == first and usable(p)]
    b = [p for p in points if p["method"] == second and usable(p)]
    pairs = [
        (r, s) for r in a for s in b if abs(r["new_task_success"] - s["new_task_success"]) <= tolerance + 1e-9
    ]
    if not pairs:
        return None

    def key(pair):
        r, s = pair
        episodes = min(min(_counts(p, prior_tasks)[1]) for p in pair)
        return (
            episodes,
            min(r["new_task_success"], s["new_task_success"]),
            -abs(r["new_task_success"] - s["new_task_success"]),
        )

    r, s = max(pairs, key=key)
    # forgetting_second - forgetting_first = retention_first - retention_second (the base cancels)
    return r, s, difference_interval(_counts(r, prior_tasks), _counts(s, prior_tasks))


BRIEF = ("run", "tag", "new_task_success", "retention", "forgetting", "kl/forward", "env_steps", "iteration")


def matched_pair(points: list[dict], prior_tasks: list[str], tolerance: float = 0.10) -> dict | None:
    """The RL and SFT points at matched new-task success and the difference of their forgetting
    (:func:`matched_points`); None when no pair is within ``tolerance``."""
    found = matched_points(points, prior_tasks, "rl", "sft", tolerance)
    if found is None:
        return None
    r, s, diff = found
    return {
        "tolerance": tolerance,
        "rl": {k: r.get(k) for k in BRIEF},
        "sft": {k: s.get(k) for k in BRIEF},
        "episodes_per_prior_task": min(min(_counts(p, prior_tasks)[1]) for p in (r, s)),
        "forgetting_difference": diff,
    }
