"""The razor report's numbers: frontiers, forgetting fits, the predictor ranking, the matched comparisons and
the findings in words, from the points alone (:mod:`.points`)."""

from __future__ import annotations

import json
import math

import numpy as np

from .fits import bootstrap_frontier_areas, frontier_area, polyfit, rank_predictors
from .matched import BRIEF, matched_pair, matched_points
from .predictors import PREDICTORS
from .runstats import (
    RunOutcome,
    fit_over_runs,
    hierarchical_bootstrap,
    rank_probabilities,
    runs_needed,
    welch_interval,
)

METHOD_LABELS = {
    "rl": "RL",
    "rl_kl": "RL + KL penalty",
    "sft": "SFT",
    "sft_on_rl": "SFT on RL data",
    "base": "base",
}
"""The analysis's methods (:func:`.points.point_method`) as the report names them."""
PREDICTOR_LABELS = {
    "kl/forward": "forward KL E[KL(π0‖π)]",
    "kl/reverse": "reverse KL E[KL(π‖π0)]",
    "kl/forward_action": "forward KL of the action marginals",
    "weights/l2_change": "L2 weight change",
    "weights/update_density": "update density",
    "features/change": "representation change (1 − CKA)",
}


def analyse(
    points: list[dict],
    prior_tasks: list[str] | None = None,
    match_tolerance: float = 0.10,
    targets: list[float] | tuple[float, ...] = (),
) -> dict:
    """Frontiers per method, forgetting fits per predictor (pooled over every fine-tuned point), the ranking,
    the lift of each method over the base, the RL/SFT pair at matched new-task success, and (``targets``) the
    run-level comparisons and fits at those new-task success rates (:func:`run_level`)."""
    tuned = [p for p in points if p["method"] != "base"]
    methods = ("rl", "rl_kl", "sft", "sft_on_rl")
    out: dict = {
        "points": {m: sum(p["method"] == m for p in tuned) for m in methods},
        "runs": {m: len({p["run"] for p in tuned if p["method"] == m}) for m in methods},
    }
    base = [p for p in points if p["method"] == "base"]
    out["frontier_area"] = {}
    for method in ("rl", "sft"):
        pts = base + [p for p in tuned if p["method"] == method]
        if pts:
            x = np.array([p["new_task_success"] for p in pts])
            y = np.array([p["retention"] for p in pts])
            out["frontier_area"][method] = frontier_area(x, y)
    out["frontier_bootstrap"] = _frontier_bootstrap(base, tuned)
    y = np.array([p["forgetting"] for p in tuned], float)
    fits = {}
    for name in PREDICTORS:
        x = np.array([p.get(name, math.nan) for p in tuned], float)
        ok = np.isfinite(x) & np.isfinite(y)
        fits[name] = {
            label: polyfit(x[ok], y[ok], degree).as_dict()
            for degree, label in ((1, "linear"), (2, "quadratic"))
            if ok.sum() > degree + 1 and np.ptp(x[ok]) > 0
        }
    out["fits"] = fits
    # Ranked by the quadratic fit's R^2 (never below the nested linear fit's) when every predictor has one,
    # else by the linear fit's (too few points), with fits.rank_predictors.
    # Every predictor is ranked on the same points: those where all of them (and the forgetting) are measured.
    fittable = [n for n in PREDICTORS if "linear" in fits[n]]
    degree = 2 if all("quadratic" in fits[n] for n in fittable) else 1
    columns = {n: np.array([p.get(n, math.nan) for p in tuned], float) for n in fittable}
    ok = (
        np.isfinite(y) & np.all([np.isfinite(c) for c in columns.values()], axis=0)
        if columns
        else np.isfinite(y)
    )
    ranked = rank_predictors({n: c[ok] for n, c in columns.items()}, y[ok], degree)
    out["ranking"] = [
        {
            "predictor": n,
            "r2_linear": fits[n]["linear"]["r2"],
            "r2_quadratic": fits[n].get("quadratic", {}).get("r2"),
        }
        for n, _ in ranked
    ]
    control = [p for p in tuned if p["method"] == "sft_on_rl" and p["tag"] == "final"]
    out["control"] = control
    out["base"] = {k: base[0][k] for k in ("new_task_success", "retention")} if base else {}
    out["best"] = {}
    for method in ("rl", "sft", "sft_on_rl"):
        finals = [p for p in tuned if p["method"] == method and p["tag"] == "final"]
        if finals:
            best = max(finals, key=lambda p: (p["new_task_success"], p["retention"]))
            out["best"][method] = {
                "run": best["run"],
                "new_task_success": best["new_task_success"],
                "retention": best["retention"],
                "forgetting": best["forgetting"],
                "lift": best["new_task_success"] - out["base"].get("new_task_success", math.nan),
            }
    if prior_tasks is None:
        prior_tasks = sorted({k.split("/", 1)[1] for p in tuned for k in p if k.startswith("retention/")})
    out["matched"] = matched_pair(points, prior_tasks, match_tolerance)
    out["per_task"] = per_task_fits(tuned, prior_tasks)
    out["chain_vs_action"] = chain_vs_action(tuned, fits)
    out["penalty"] = penalty_comparison(points, prior_tasks, match_tolerance)
    out["run_level"] = run_level(tuned, prior_tasks, targets, match_tolerance) if targets else None
    return out


def _outcome(point: dict, prior_tasks: list[str]) -> RunOutcome:
    """A point as one run's outcome: its prior tasks' counts and the base's rates on the same episodes."""
    counts = [(int(point[f"successes/{t}"]), int(point[f"episodes/{t}"])) for t in prior_tasks]
    base = [point[f"forgetting/{t}"] + x / n for t, (x, n) in zip(prior_tasks, counts)]
    return RunOutcome(point["run"], tuple(x for x, _ in counts), tuple(n for _, n in counts), tuple(base))


def _selection_rate(point: dict) -> tuple[float, str]:
    """The new-task success a checkpoint is chosen by: its validation evaluation's (episodes disjoint from the
    ones it is scored on) when it has one, else its own (then selection and score share the episodes)."""
    if "validation/new_task_success" in point:
        return point["validation/new_task_success"], "validation"
    return point["new_task_success"], "same episodes"


def _episode_counts(points: list[dict], prior_tasks: list[str]) -> dict[str, int]:
    """``{episodes: checkpoints}``: how many of ``points`` scored their new-task success on each episode count
    (an evaluation of n episodes plays the first n initial states of the evaluation seed: the sets differ)."""
    counts: dict[str, int] = {}
    for p in points:
        n = next(
            (v for k, v in p.items() if k.startswith("episodes/") and k.split("/", 1)[1] not in prior_tasks),
            None,
        )
        counts[str(n)] = counts.get(str(n), 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


MATCH_GAP = 0.10
"""A matched comparison whose arms' chosen checkpoints differ by more than this in mean new-task success on
the episodes that score them (chosen on other episodes, they can) is not called matched."""


def scored_success(row: dict) -> dict[str, float]:
    """Mean new-task success of a :func:`run_level` row's chosen RL and SFT checkpoints on the episodes that
    score them (each was chosen within the window around the target on its selection episodes)."""
    chosen = row.get("points", {})
    return {
        m: float(np.mean([p["new_task_success"] for p in chosen[m]])) for m in ("rl", "sft") if chosen.get(m)
    }


def run_level(tuned: list[dict], prior_tasks: list[str], targets, tolerance: float = 0.10) -> dict:
    """The razor with the run as the unit. At each target new-task success, every run contributes its
    checkpoint nearest the target (within ``tolerance``; chosen by :func:`_selection_rate`); per target:
    the runs per method, SFT's minus RL's mean forgetting with the hierarchical bootstrap and Welch intervals
    (none below :data:`~.runstats.MIN_RUNS` runs a side), the chosen points at 0% retention (a floor that
    hides further forgetting), those chosen on the episodes that also score them (``same_episodes``: runs
    without validation evaluations) and the runs per method a difference of that size needs. Then the
    forgetting fits over the chosen points, resampled by run, with R^2 intervals and rank probabilities."""
    usable = [p for p in tuned if all(f"successes/{t}" in p and f"forgetting/{t}" in p for t in prior_tasks)]
    chosen: dict[float, dict[str, list[dict]]] = {}
    selection = set()
    for target in targets:
        per_method: dict[str, list[dict]] = {}
        for run in sorted({p["run"] for p in usable}):
            candidates = [p for p in usable if p["run"] == run]
            near = [p for p in candidates if abs(_selection_rate(p)[0] - target) <= tolerance + 1e-9]
            if near:
                best = min(near, key=lambda p: (abs(_selection_rate(p)[0] - target), p["tag"] != "final"))
                selection.add(_selection_rate(best)[1])
                per_method.setdefault(best["method"], []).append(best)
        chosen[target] = per_method
    rows = []
    for target, per_method in chosen.items():
        rl, sft = per_method.get("rl", []), per_method.get("sft", [])
        row: dict = {
            "target": target,
            "runs": {m: len(v) for m, v in per_method.items()},
            "points": {m: [{k: p.get(k) for k in BRIEF} for p in v] for m, v in per_method.items()},
            "at_floor": {m: sum(p["retention"] == 0 for p in v) for m, v in per_method.items()},
            "same_episodes": {
                m: sum(_selection_rate(p)[1] == "same episodes" for p in v) for m, v in per_method.items()
            },
            "scored_episodes": {m: _episode_counts(v, prior_tasks) for m, v in per_method.items()},
            "sft_minus_rl": None,
        }
        if rl and sft:
            a, b = [_outcome(p, prior_tasks) for p in rl], [_outcome(p, prior_tasks) for p in sft]
            names = METHOD_LABELS["rl"], METHOD_LABELS["sft"]
            row["sft_minus_rl"] = {
                "bootstrap": hierarchical_bootstrap(a, b, names=names),
                "welch": welch_interval([o.forgetting for o in a], [o.forgetting for o in b], names=names),
            }
            sd = [float(np.std([o.forgetting for o in arm], ddof=1)) for arm in (a, b) if len(arm) >= 2]
            diff = row["sft_minus_rl"]["bootstrap"]["estimate"]
            if len(sd) == 2 and diff != 0 and max(sd) > 0:
                row["runs_needed"] = runs_needed(diff, *sd)
        rows.append(row)
    points = [p for per_method in chosen.values() for v in per_method.values() for p in v]
    fits: dict = {}
    probabilities = None
    if points:
        y = np.array([p["forgetting"] for p in points], float)
        groups = np.array([p["run"] for p in points])
        columns = {
            n: np.array([p.get(n, math.nan) for p in points], float)
            for n in PREDICTORS
            if all(math.isfinite(p.get(n, math.nan)) for p in points)
        }
        fits = {n: fit_over_runs(x, y, groups=groups) for n, x in columns.items()}
        if columns and len(set(groups)) >= 3:
            probabilities = rank_probabilities(columns, y, groups=groups)
    return {
        "targets": list(targets),
        "tolerance": tolerance,
        "selection": sorted(selection),
        "comparisons": rows,
        "fits": fits,
        "rank_probabilities": probabilities,
    }


def _frontier_bootstrap(base: list[dict], tuned: list[dict]) -> dict | None:
    """Bootstrap intervals of the RL and SFT frontier areas and of their difference, over runs within each
    configuration (a run's grid without its seed)."""
    groups: dict[str, dict[str, dict[str, list[dict]]]] = {}
    for p in tuned:
        if p["method"] in ("rl", "sft"):
            configuration = json.dumps(
                {k: v for k, v in p.get("grid", {}).items() if k != "seed"}, sort_keys=True
            )
            groups.setdefault(p["method"], {}).setdefault(configuration, {}).setdefault(p["run"], []).append(
                p
            )
    if set(groups) != {"rl", "sft"}:
        return None
    arrays = {
        m: {
            c: [
                (np.array([q["new_task_success"] for q in pts]), np.array([q["retention"] for q in pts]))
                for pts in runs.values()
            ]
            for c, runs in configurations.items()
        }
        for m, configurations in groups.items()
    }
    base_xy = (np.array([p["new_task_success"] for p in base]), np.array([p["retention"] for p in base]))
    return bootstrap_frontier_areas({"rl": arrays["rl"], "sft": arrays["sft"]}, base_xy)


def chain_vs_action(tuned: list[dict], fits: dict) -> dict | None:
    """Which KL predicts forgetting better, the chain KL (``kl/forward``) or the action-marginal one
    (``kl/forward_action``), on the points that have both; and how much smaller the action KL is than the
    chain KL on the same base chains (``kl/forward_chain``)."""
    pts = [
        p
        for p in tuned
        if all(math.isfinite(p.get(k, math.nan)) for k in ("kl/forward", "kl/forward_action", "forgetting"))
    ]
    if len(pts) < 4:
        return None
    y = np.array([p["forgetting"] for p in pts], float)
    out: dict = {"n": len(pts)}
    for key in ("kl/forward", "kl/forward_action"):
        x = np.array([p[key] for p in pts], float)
        if np.ptp(x) > 0 and np.ptp(y) > 0:
            out[key] = {"r2_linear": polyfit(x, y, 1).r2, "r2_quadratic": polyfit(x, y, 2).r2}
    same = [(p["kl/forward_action"], p["kl/forward_chain"]) for p in pts if p.get("kl/forward_chain", 0) > 0]
    if same:
        ratios = np.array([a / c for a, c in same])
        out["action_over_chain"] = {
            "median": float(np.median(ratios)),
            "min": float(ratios.min()),
            "max": float(ratios.max()),
        }
    return out


def penalty_comparison(points: list[dict], prior_tasks: list[str], tolerance: float = 0.10) -> dict | None:
    """PPO with an explicit KL penalty against penalty-free PPO: each penalty setting's final points (mean
    over seeds) and the pair at matched new-task success with the difference of forgetting."""
    penalised = [p for p in points if p["method"] == "rl_kl"]
    if not penalised:
        return None

    def setting(p):
        return ", ".join(
            f"{k.split('.')[-1]}={v}" for k, v in sorted(p["grid"].items()) if k.startswith("kl_penalty")
        )

    rows = []
    groups = [("no penalty", [p for p in points if p["method"] == "rl" and p["tag"] == "final"])]
    groups += [
        (name, [p for p in penalised if p["tag"] == "final" and setting(p) == name])
        for name in sorted({setting(p) for p in penalised})
    ]
    for name, finals in groups:
        if finals:
            rows.append(
                {
                    "setting": name,
                    "runs": len(finals),
                    **{
                        k: float(np.mean([p[k] for p in finals]))
                        for k in ("new_task_success", "forgetting", "kl/forward")
                    },
                }
            )
    matched = matched_points(points, prior_tasks, "rl", "rl_kl", tolerance)
    out: dict = {"finals": rows, "matched": None}
    if matched:
        r, s, diff = matched
        out["matched"] = {
            "tolerance": tolerance,
            "rl": {k: r.get(k) for k in BRIEF},
            "rl_kl": {k: s.get(k) for k in BRIEF},
            "setting": setting(s),
            "forgetting_difference": diff,
        }
    return out


def per_task_fits(tuned: list[dict], prior_tasks: list[str]) -> list[dict]:
    """Where forgetting happens: for each prior task, its own forgetting (``forgetting/<task>``) fitted on the
    forward KL measured on that task's states (``kl/forward/<task>``) and on the new task's (``kl/forward``),
    over the points that have both. Empty where the points carry no per-task KL (the LLM track)."""
    rows = []
    for task in prior_tasks:
        own = f"kl/forward/{task}"
        pts = [
            p
            for p in tuned
            if all(math.isfinite(p.get(k, math.nan)) for k in (f"forgetting/{task}", own, "kl/forward"))
        ]
        if len(pts) < 4:
            continue
        y = np.array([p[f"forgetting/{task}"] for p in pts], float)
        row: dict = {"task": task, "n": len(pts)}
        for label, key in (("own_states", own), ("new_task_states", "kl/forward")):
            x = np.array([p[key] for p in pts], float)
            if np.ptp(x) > 0 and np.ptp(y) > 0:
                row[label] = {"r2_linear": polyfit(x, y, 1).r2, "r2_quadratic": polyfit(x, y, 2).r2}
        rows.append(row)
    return rows


def findings(analysis: dict) -> list[str]:
    """The headline answers, in words, from the analysis numbers (no claim the numbers do not make)."""
    out = []
    base, best = analysis.get("base", {}), analysis.get("best", {})
    if base:
        out.append(
            f"The base solves the new task {base['new_task_success']:.0%} of the time and its prior tasks "
            f"{base['retention']:.0%} on average."
        )
    for method in ("rl", "sft"):
        if method in best:
            b = best[method]
            out.append(
                f"The best {METHOD_LABELS[method]} run ({b['run']}) reaches {b['new_task_success']:.0%} on "
                f"the new task ({b['lift'] * 100:+.0f} points over the base) and forgets "
                f"{b['forgetting'] * 100:.0f} points."
            )
    matched = analysis.get("matched")
    if matched:
        d, rl, sft = matched["forgetting_difference"], matched["rl"], matched["sft"]
        span = f"[{d['ci_low'] * 100:+.0f}, {d['ci_high'] * 100:+.0f}]"
        if d["ci_low"] > 0:
            verdict = f"SFT forgets {d['estimate'] * 100:.0f} points more than RL, 95% CI {span}"
        elif d["ci_high"] < 0:
            verdict = f"RL forgets {-d['estimate'] * 100:.0f} points more than SFT, 95% CI {span}"
        else:
            verdict = (
                f"the forgetting differs by {d['estimate'] * 100:+.0f} points (SFT − RL), 95% CI {span}: "
                "no difference shown"
            )
        out.append(
            f"At matched new-task success (RL {rl['new_task_success']:.0%}, SFT "
            f"{sft['new_task_success']:.0%}), {verdict}; the interval's half-width is "
            f"{d['half_width'] * 100:.0f} points ({matched['episodes_per_prior_task']} episodes per prior "
            "task)."
        )
    elif "rl" in best and "sft" in best:
        out.append(
            f"No RL and SFT points lie within {analysis.get('match_tolerance', 0.10) * 100:.0f} points of "
            "new-task success of each other: no matched comparison."
        )
    area = analysis["frontier_area"]
    if "rl" in area and "sft" in area:
        verdict = (
            "above" if area["rl"] > area["sft"] else "below" if area["rl"] < area["sft"] else "level with"
        )
        out.append(f"RL's Pareto frontier lies {verdict} SFT's (area {area['rl']:.3f} vs {area['sft']:.3f}).")
    fits = analysis["fits"].get("kl/forward", {})
    if "linear" in fits and math.isfinite(fits["linear"]["r2"]):
        rank = [r["predictor"] for r in analysis["ranking"]].index("kl/forward") + 1
        quad = f", quadratic R² = {fits['quadratic']['r2']:.2f}" if "quadratic" in fits else ""
        out.append(
            f"Forward KL predicts forgetting with linear R² = {fits['linear']['r2']:.2f}{quad}; "
            f"it ranks {rank} of {len(analysis['ranking'])} predictors."
        )
    else:
        out.append(
            "Forward KL could not be fitted (fewer than three points, or no spread in KL or in forgetting)."
        )
    cva = analysis.get("chain_vs_action") or {}
    if "kl/forward" in cva and "kl/forward_action" in cva:
        chain, action = cva["kl/forward"]["r2_linear"], cva["kl/forward_action"]["r2_linear"]
        better = "the action-marginal KL" if action > chain else "the chain KL"
        out.append(
            f"Chain KL or action KL: {better} predicts forgetting better (linear R² {chain:.2f} chain, "
            f"{action:.2f} action)."
        )
    boot = analysis.get("frontier_bootstrap")
    if boot:
        d = boot["difference"]
        out.append(
            f"Over runs, RL's frontier area minus SFT's lies in [{d['low']:+.3f}, {d['high']:+.3f}] "
            f"(bootstrap {boot['level']:.0%} over runs within each configuration: {boot['runs']['rl']} RL "
            f"runs in {boot['configurations']['rl']} configurations, {boot['runs']['sft']} SFT runs in "
            f"{boot['configurations']['sft']})."
        )
    pen = (analysis.get("penalty") or {}).get("matched")
    if pen:
        d = pen["forgetting_difference"]
        verdict = (
            "the penalty lowers forgetting"
            if d["ci_high"] < 0
            else "the penalty raises forgetting"
            if d["ci_low"] > 0
            else "no difference shown"
        )
        out.append(
            f"Explicit KL penalty ({pen['setting']}) against none at matched success: "
            f"{d['estimate'] * 100:+.0f} points of forgetting, 95% CI [{d['ci_low'] * 100:+.0f}, "
            f"{d['ci_high'] * 100:+.0f}]: {verdict}."
        )
    for row in (analysis.get("run_level") or {}).get("comparisons", []):
        d, runs = row["sft_minus_rl"], row["runs"]
        for method, floor in row["at_floor"].items():
            if floor and 2 * floor >= runs[method]:
                out.append(
                    f"At {row['target']:.0%} new-task success, {floor} of {runs[method]} "
                    f"{METHOD_LABELS[method]} checkpoints keep 0% of every prior task: that method sits at "
                    "the floor, where forgetting cannot exceed the base's retention, so its difference to "
                    "the other is a lower bound."
                )
        if d is None:
            continue
        success = scored_success(row)
        count = f"RL {runs.get('rl', 0)} runs, SFT {runs.get('sft', 0)}"
        if len(success) == 2:
            count = (
                f"RL {runs.get('rl', 0)} runs at {success['rl']:.0%}, SFT {runs.get('sft', 0)} at "
                f"{success['sft']:.0%}"
            )
        welch = d["welch"]
        if welch["interval"] is None:
            line = (
                f"Over runs at {row['target']:.0%} new-task success ({count}): SFT − RL forgetting "
                f"{welch['estimate'] * 100:+.0f} points, {welch['note']}."
            )
        else:
            low, high = welch["interval"]
            line = (
                f"Over runs at {row['target']:.0%} new-task success ({count}): SFT − RL forgetting "
                f"{welch['estimate'] * 100:+.0f} points, 95% CI [{low * 100:+.0f}, {high * 100:+.0f}] "
                "over runs" + (" (no difference shown)." if low <= 0 <= high else ".")
            )
        if len(success) == 2 and abs(success["rl"] - success["sft"]) > MATCH_GAP:
            line += (
                f" Not matched: on the episodes that score them the arms' new-task success differs by "
                f"{abs(success['rl'] - success['sft']) * 100:.0f} points (each was chosen near the target on "
                "its selection episodes)."
            )
        out.append(line)
    compared = [r for r in analysis.get("per_task", []) if "own_states" in r and "new_task_states" in r]
    if compared:
        better = [
            r["task"] for r in compared if r["own_states"]["r2_linear"] > r["new_task_states"]["r2_linear"]
        ]
        out.append(
            "Per prior task, the forward KL on that task's own states predicts its forgetting better than "
            f"the KL on the new task's states for {len(better)} of {len(compared)} tasks"
            + (f" ({', '.join(better)})." if better else ".")
        )
    return out
