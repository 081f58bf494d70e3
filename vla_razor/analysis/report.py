"""The razor report: from a sweep's run directories to figures, tables, an HTML page and a Markdown summary.

Written to ``<sweep>/report/``: ``report.html`` (self-contained: figures and videos embedded),
``summary.md`` (the same tables, figures linked), the figures as PNG, ``points.json`` (one row per
evaluated policy) and ``analysis.json`` (frontiers, fits, predictor ranking, the control).
"""

from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path

import numpy as np

from vla_razor.atomic import atomic_write, write_json

from .fits import bootstrap_frontier_areas, frontier_area, pareto_frontier, polyfit, rank_predictors
from .matched import BRIEF, matched_pair, matched_points
from .predictors import PREDICTORS

METHOD_STYLE = {
    "rl": ("RL", "tab:blue", "o"),
    "rl_kl": ("RL + KL penalty", "tab:purple", "^"),
    "sft": ("SFT", "tab:orange", "s"),
    "sft_on_rl": ("SFT on RL data", "tab:green", "*"),
    "base": ("base", "black", "X"),
}
PREDICTOR_LABELS = {
    "kl/forward": "forward KL E[KL(π0‖π)]",
    "kl/reverse": "reverse KL E[KL(π‖π0)]",
    "kl/forward_action": "forward KL of the action marginals",
    "weights/l2_change": "L2 weight change",
    "weights/update_density": "update density",
    "features/change": "representation change (1 − CKA)",
}


def analyse(points: list[dict], prior_tasks: list[str] | None = None, match_tolerance: float = 0.10) -> dict:
    """Frontiers per method, forgetting fits per predictor (pooled over every fine-tuned point), the ranking,
    the lift of each method over the base, and the RL/SFT pair at matched new-task success."""
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
    return out


def _seed(point: dict):
    return point.get("grid", {}).get("seed")


def _frontier_bootstrap(base: list[dict], tuned: list[dict]) -> dict | None:
    """Bootstrap intervals over seeds of the RL and SFT frontier areas and of their difference."""
    groups: dict = {}
    for method in ("rl", "sft"):
        for p in tuned:
            if p["method"] == method and _seed(p) is not None:
                groups.setdefault(method, {}).setdefault(_seed(p), []).append(
                    (p["new_task_success"], p["retention"])
                )
    if set(groups) != {"rl", "sft"}:
        return None
    arrays = {
        m: {s: (np.array([a for a, _ in v]), np.array([b for _, b in v])) for s, v in g.items()}
        for m, g in groups.items()
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


def _figure_pareto(points: list[dict], path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    base = [p for p in points if p["method"] == "base"]
    for method in ("rl", "rl_kl", "sft", "sft_on_rl", "base"):
        pts = [p for p in points if p["method"] == method]
        if not pts:
            continue
        label, color, marker = METHOD_STYLE[method]
        x = np.array([p["new_task_success"] for p in pts])
        y = np.array([p["retention"] for p in pts])
        ax.scatter(
            x,
            y,
            c=color,
            marker=marker,
            s=60 if method in ("base", "sft_on_rl") else 25,
            alpha=0.8,
            label=label,
            zorder=3,
        )
        if method in ("rl", "sft"):
            xs = np.concatenate([x, [b["new_task_success"] for b in base]])
            ys = np.concatenate([y, [b["retention"] for b in base]])
            idx = pareto_frontier(xs, ys)
            ax.step(xs[idx], ys[idx], where="post", color=color, lw=1.5, alpha=0.9)
    ax.set_xlabel("new-task success")
    ax.set_ylabel("retention (mean prior-task success)")
    ax.set_xlim(-0.03, 1.03)
    ax.set_ylim(-0.03, 1.03)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    ax.set_title("Pareto frontier: learning the new task vs keeping the old ones")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _scatter_fit(ax, points: list[dict], predictor: str, fits: dict) -> None:
    for method in ("rl", "rl_kl", "sft", "sft_on_rl"):
        pts = [p for p in points if p["method"] == method and math.isfinite(p.get(predictor, math.nan))]
        if pts:
            label, color, marker = METHOD_STYLE[method]
            ax.scatter(
                [p[predictor] for p in pts],
                [p["forgetting"] for p in pts],
                c=color,
                marker=marker,
                s=22,
                alpha=0.8,
                label=label,
            )
    xs = [p[predictor] for p in points if p["method"] != "base" and math.isfinite(p.get(predictor, math.nan))]
    if xs and fits:
        grid = np.linspace(min(xs), max(xs), 100)
        for kind, style in (("linear", "-"), ("quadratic", "--")):
            if kind in fits:
                ax.plot(
                    grid,
                    np.polyval(fits[kind]["coefficients"], grid),
                    "k" + style,
                    lw=1,
                    label=f"{kind} R²={fits[kind]['r2']:.2f}",
                )
    ax.set_xlabel(PREDICTOR_LABELS[predictor])
    ax.set_ylabel("forgetting (base − policy, prior mean)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def _figure_kl(points: list[dict], analysis: dict, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    _scatter_fit(ax, points, "kl/forward", analysis["fits"]["kl/forward"])
    ax.set_title("Forgetting against the forward KL to the base")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _figure_predictors(points: list[dict], analysis: dict, path: Path) -> None:
    import matplotlib.pyplot as plt

    names = [n for n in PREDICTORS if analysis["fits"].get(n)]  # those the track measures
    fig, axes = plt.subplots(1, max(1, len(names)), figsize=(4 * max(1, len(names)), 3.6), squeeze=False)
    for ax, name in zip(axes[0], names):
        _scatter_fit(ax, points, name, analysis["fits"][name])
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _figure_per_task(points: list[dict], analysis: dict, path: Path) -> None:
    """One panel per prior task: its forgetting against the forward KL on its own states."""
    import matplotlib.pyplot as plt

    rows = analysis["per_task"]
    fig, axes = plt.subplots(1, len(rows), figsize=(4 * len(rows), 3.6), squeeze=False)
    for ax, row in zip(axes[0], rows):
        task = row["task"]
        for method in ("rl", "rl_kl", "sft", "sft_on_rl"):
            pts = [
                p
                for p in points
                if p["method"] == method
                and math.isfinite(p.get(f"kl/forward/{task}", math.nan))
                and math.isfinite(p.get(f"forgetting/{task}", math.nan))
            ]
            if pts:
                label, color, marker = METHOD_STYLE[method]
                ax.scatter(
                    [p[f"kl/forward/{task}"] for p in pts],
                    [p[f"forgetting/{task}"] for p in pts],
                    c=color,
                    marker=marker,
                    s=22,
                    alpha=0.8,
                    label=label,
                )
        r2 = row.get("own_states", {}).get("r2_linear")
        ax.set_title(
            f"{task}" + (f" (linear R² {r2:.2f})" if r2 is not None and math.isfinite(r2) else ""),
            fontsize=10,
        )
        ax.set_xlabel(f"forward KL on {task}'s states")
        ax.set_ylabel(f"forgetting of {task}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _figure_curves(run_root: Path, plan: list[dict], path: Path) -> None:
    """kl/forward and new-task success along training, one line per run."""
    import matplotlib.pyplot as plt

    fig, (ax_kl, ax_success) = plt.subplots(1, 2, figsize=(10, 3.8))
    for spec in plan:
        metrics = run_root / spec["name"] / "metrics.jsonl"
        if not metrics.is_file():
            continue
        rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
        from .points import point_method

        _, color, _ = METHOD_STYLE[point_method(spec["method"], spec.get("grid", {}))]
        kl = [(r["step"], r["kl/forward"]) for r in rows if "kl/forward" in r]
        success = [(r["step"], r["success/new_task"]) for r in rows if "success/new_task" in r]
        if kl:
            ax_kl.plot(*zip(*kl), color=color, alpha=0.6, lw=1)
        if success:
            ax_success.plot(*zip(*success), color=color, alpha=0.6, lw=1, marker=".")
    ax_kl.set_yscale("symlog", linthresh=1e-2)
    ax_kl.set_xlabel("iteration")
    ax_kl.set_ylabel("kl/forward (nats, on the iteration's states)")
    ax_success.set_xlabel("iteration")
    ax_success.set_ylabel("new-task success (periodic evaluation)")
    for method in ("rl", "rl_kl", "sft", "sft_on_rl"):
        label, color, _ = METHOD_STYLE[method]
        ax_kl.plot([], [], color=color, label=label)
    ax_kl.legend(fontsize=8)
    for ax in (ax_kl, ax_success):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _final_table(points: list[dict]) -> list[dict]:
    finals = [p for p in points if p["tag"] in ("final", "base")]
    return sorted(finals, key=lambda p: (list(METHOD_STYLE).index(p["method"]), p["run"]))


def _best_runs(points: list[dict]) -> dict[str, str]:
    best = {}
    for method in ("rl", "sft"):
        finals = [p for p in points if p["method"] == method and p["tag"] == "final"]
        if finals:
            best[method] = max(finals, key=lambda p: (p["new_task_success"], p["retention"]))["run"]
    return best


def _fmt(value, pct: bool = False) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:.0%}" if pct else f"{value:.3g}"


def _markdown(analysis: dict, points: list[dict], figures: dict[str, str], control_note: str = "") -> str:
    lines = ["# RL's Razor report", ""]
    runs, area = analysis["runs"], analysis["frontier_area"]
    lines.append(
        f"Runs: {runs['rl']} RL, {runs['sft']} SFT, {runs['sft_on_rl']} SFT-on-RL-data; "
        f"points (evaluated policies): {analysis['points']['rl']} RL, {analysis['points']['sft']} SFT."
    )
    if area:
        lines.append(
            "Area under the Pareto frontier (new-task success × retention): "
            + ", ".join(f"{METHOD_STYLE[m][0]} {a:.3f}" for m, a in area.items())
            + "."
        )
    boot = analysis.get("frontier_bootstrap")
    if boot:
        cis = ", ".join(
            f"{METHOD_STYLE[m][0]} [{c['low']:.3f}, {c['high']:.3f}]" for m, c in boot["area"].items()
        )
        d = boot["difference"]
        lines.append(
            f"Bootstrap over seeds ({len(boot['seeds'])} seeds, {boot['samples']} resamples, {boot['level']:.0%}): {cis}; "
            f"RL − SFT [{d['low']:+.3f}, {d['high']:+.3f}], above zero in {d['fraction_above_zero']:.0%} of resamples."
        )
    lines += ["", "## Findings", ""] + [f"- {f}" for f in findings(analysis)]
    matched = analysis.get("matched")
    if matched:
        rl, sft, d = matched["rl"], matched["sft"], matched["forgetting_difference"]
        lines += [
            "",
            "## RL and SFT at matched new-task success",
            "",
            f"The RL and SFT points whose new-task success differs by at most {matched['tolerance']:.0%}, with the "
            "most evaluation episodes, then the highest success.",
            "",
            "| | RL | SFT |",
            "|---|---|---|",
            f"| policy | {rl['run']} ({rl['tag']}) | {sft['run']} ({sft['tag']}) |",
            f"| new-task success | {_fmt(rl['new_task_success'], True)} | {_fmt(sft['new_task_success'], True)} |",
            f"| retention (prior mean) | {_fmt(rl['retention'], True)} | {_fmt(sft['retention'], True)} |",
            f"| forgetting | {_fmt(rl['forgetting'], True)} | {_fmt(sft['forgetting'], True)} |",
            f"| kl/forward | {_fmt(rl['kl/forward'])} | {_fmt(sft['kl/forward'])} |",
            "",
            f"Forgetting of SFT minus forgetting of RL: **{d['estimate'] * 100:+.1f} points**, 95% CI "
            f"[{d['ci_low'] * 100:+.1f}, {d['ci_high'] * 100:+.1f}] (Agresti-Caffo, "
            f"{matched['episodes_per_prior_task']} episodes per prior task on the base's seeds).",
        ]
    lines += [
        "",
        f"![Pareto frontier]({figures['pareto']})",
        "",
        f"![forgetting vs forward KL]({figures['kl']})",
        "",
        "## Predictors of forgetting (all fine-tuned points pooled)",
        "",
        "| rank | predictor | R² linear | R² quadratic |",
        "|---|---|---|---|",
    ]
    for i, r in enumerate(analysis["ranking"], 1):
        lines.append(
            f"| {i} | {PREDICTOR_LABELS[r['predictor']]} | {_fmt(r['r2_linear'])} | {_fmt(r['r2_quadratic'])} |"
        )
    per_task = analysis.get("per_task", [])
    if per_task:
        lines += [
            "",
            "## Where forgetting happens: each prior task",
            "",
            "Each prior task's forgetting against the forward KL measured on that task's own states (the base's "
            "rollouts there) and on the new task's states, over every fine-tuned point (R² linear / quadratic).",
            "",
            "| prior task | points | KL on its own states | KL on the new task's states |",
            "|---|---|---|---|",
        ]
        for r in per_task:
            cells = [
                f"{_fmt(r[k]['r2_linear'])} / {_fmt(r[k]['r2_quadratic'])}" if k in r else "–"
                for k in ("own_states", "new_task_states")
            ]
            lines.append(f"| {r['task']} | {r['n']} | {cells[0]} | {cells[1]} |")
        if "per_task" in figures:
            lines += ["", f"![forgetting per prior task]({figures['per_task']})"]
    cva = analysis.get("chain_vs_action")
    if cva:
        lines += [
            "",
            "## Chain KL or action KL?",
            "",
            "The logged forward KL is the KL between the two policies' whole denoising chains, an upper bound of the KL "
            "between their action marginals. The action KL is estimated from base chains with the exact chain "
            f"likelihoods as importance weights (vla_razor.divergence.marginal). R² of forgetting on each, {cva['n']} points:",
            "",
            "| KL | R² linear | R² quadratic |",
            "|---|---|---|",
        ]
        for key in ("kl/forward", "kl/forward_action"):
            if key in cva:
                lines.append(
                    f"| {PREDICTOR_LABELS[key]} | {_fmt(cva[key]['r2_linear'])} | {_fmt(cva[key]['r2_quadratic'])} |"
                )
        if "action_over_chain" in cva:
            r = cva["action_over_chain"]
            lines += [
                "",
                f"Action KL / chain KL on the same base chains: median {r['median']:.2f} (range {r['min']:.2f}-{r['max']:.2f}).",
            ]
    pen = analysis.get("penalty")
    if pen:
        lines += [
            "",
            "## Does an explicit KL penalty buy retention?",
            "",
            "Final policies, means over seeds:",
            "",
            "| PPO | runs | new task | forgetting | kl/forward |",
            "|---|---|---|---|---|",
        ]
        for r in pen["finals"]:
            lines.append(
                f"| {r['setting']} | {r['runs']} | {_fmt(r['new_task_success'], True)} | {_fmt(r['forgetting'], True)} | "
                f"{_fmt(r['kl/forward'])} |"
            )
        m = pen.get("matched")
        if m:
            d = m["forgetting_difference"]
            lines += [
                "",
                f"At matched new-task success: {m['rl']['run']} ({m['rl']['tag']}, {_fmt(m['rl']['new_task_success'], True)}) "
                f"against {m['rl_kl']['run']} ({m['rl_kl']['tag']}, {_fmt(m['rl_kl']['new_task_success'], True)}): the penalised "
                f"run forgets {d['estimate'] * 100:+.1f} points more, 95% CI [{d['ci_low'] * 100:+.1f}, {d['ci_high'] * 100:+.1f}].",
            ]
        else:
            lines += [
                "",
                "No penalised and penalty-free points lie within the matching tolerance of each other.",
            ]
    lines += [
        "",
        f"![predictors]({figures['predictors']})",
        "",
        f"![training curves]({figures['curves']})",
        "",
        "## Final policies",
        "",
        "| run | method | new task | retention | forgetting | kl/forward | kl/reverse |",
        "|---|---|---|---|---|---|---|",
    ]
    for p in _final_table(points):
        lines.append(
            f"| {p['run']} | {METHOD_STYLE[p['method']][0]} | {_fmt(p['new_task_success'], True)} | "
            f"{_fmt(p['retention'], True)} | {_fmt(p['forgetting'], True)} | {_fmt(p.get('kl/forward'))} | "
            f"{_fmt(p.get('kl/reverse'))} |"
        )
    lines += ["", "## The SFT-on-RL-data control", ""]
    if analysis["control"]:
        lines.append(
            "SFT trained on the successful rollouts of the best RL run: if forgetting follows the forward KL "
            "rather than the algorithm, these points sit with RL's, at RL's KL (see the rows above)."
        )
    else:
        lines.append(f"Not run: {control_note or 'no control configured (control_grid is empty)'}.")
    return "\n".join(lines) + "\n"


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
                f"The best {METHOD_STYLE[method][0]} run ({b['run']}) reaches {b['new_task_success']:.0%} on the new "
                f"task ({b['lift'] * 100:+.0f} points over the base) and forgets {b['forgetting'] * 100:.0f} points."
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
            verdict = f"the forgetting differs by {d['estimate'] * 100:+.0f} points (SFT − RL), 95% CI {span}: no difference shown"
        out.append(
            f"At matched new-task success (RL {rl['new_task_success']:.0%}, SFT {sft['new_task_success']:.0%}), "
            f"{verdict}; the interval's half-width is {d['half_width'] * 100:.0f} points "
            f"({matched['episodes_per_prior_task']} episodes per prior task)."
        )
    elif "rl" in best and "sft" in best:
        out.append(
            f"No RL and SFT points lie within {analysis.get('match_tolerance', 0.10) * 100:.0f} points of new-task "
            "success of each other: no matched comparison."
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
            f"Chain KL or action KL: {better} predicts forgetting better (linear R² {chain:.2f} chain, {action:.2f} action)."
        )
    boot = analysis.get("frontier_bootstrap")
    if boot:
        d = boot["difference"]
        out.append(
            f"Over seeds, RL's frontier area minus SFT's lies in [{d['low']:+.3f}, {d['high']:+.3f}] (bootstrap "
            f"{boot['level']:.0%}, {len(boot['seeds'])} seeds)."
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
            f"Explicit KL penalty ({pen['setting']}) against none at matched success: {d['estimate'] * 100:+.0f} points of "
            f"forgetting, 95% CI [{d['ci_low'] * 100:+.0f}, {d['ci_high'] * 100:+.0f}]: {verdict}."
        )
    compared = [r for r in analysis.get("per_task", []) if "own_states" in r and "new_task_states" in r]
    if compared:
        better = [
            r["task"] for r in compared if r["own_states"]["r2_linear"] > r["new_task_states"]["r2_linear"]
        ]
        out.append(
            f"Per prior task, the forward KL on that task's own states predicts its forgetting better than the KL "
            f"on the new task's states for {len(better)} of {len(compared)} tasks"
            + (f" ({', '.join(better)})." if better else ".")
        )
    return out


def base_videos(base_dir: str, new_task: str, prior_tasks: list[str], out: Path, episodes: int) -> list[Path]:
    """The base policy on every task (cached: recorded once per report directory)."""
    from vla_razor.envs.video import record_episodes
    from vla_razor.evaluation import deterministic_actor
    from vla_razor.policies import ChainPolicy

    policy = None
    paths = []
    for task in [new_task, *prior_tasks]:
        path = out / f"base_{task}.mp4"
        if not path.is_file():
            policy = policy or ChainPolicy.from_pretrained(base_dir).eval()
            record_episodes(task, deterministic_actor(policy), path, num_episodes=episodes, seed=10_000)
        paths.append(path)
    return paths


def _embed(path: Path, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode()}"


def write_report(cfg) -> Path:
    """Collect the points of the sweep ``cfg`` (a RazorConfig), analyse them, write the report; returns report.html."""
    from .points import collect_points

    plan_file = cfg.path / "plan.json"
    if not plan_file.is_file():
        raise FileNotFoundError(
            f"{plan_file} not found: run the sweep first (`vla-razor razor` without --report-only)"
        )
    plan_data = json.loads(plan_file.read_text())
    plan = plan_data["runs"]
    track = cfg.make_track()
    points = collect_points(cfg.run_root, plan, track)
    if len(points) < 2:
        raise ValueError(f"no run of {cfg.path} has an evaluation yet: nothing to analyse")
    analysis = analyse(points, track.prior_tasks)
    out = cfg.path / "report"
    out.mkdir(parents=True, exist_ok=True)
    figures = {
        "pareto": "pareto.png",
        "kl": "forgetting_vs_forward_kl.png",
        "predictors": "predictors.png",
        "curves": "training_curves.png",
    }
    _figure_pareto(points, out / figures["pareto"])
    _figure_kl(points, analysis, out / figures["kl"])
    _figure_predictors(points, analysis, out / figures["predictors"])
    _figure_curves(cfg.run_root, plan, out / figures["curves"])
    if analysis["per_task"]:
        figures["per_task"] = "forgetting_per_task.png"
        _figure_per_task(points, analysis, out / figures["per_task"])
    write_json(out / "points.json", points)
    write_json(
        out / "analysis.json",
        {
            **analysis,
            "track": cfg.track,
            "suite": cfg.suite if cfg.track == "robot" else "llm",
            "new_task": track.new_task,
            "prior_tasks": track.prior_tasks,
            "base_policy": cfg.base,
        },
    )
    summary = _markdown(analysis, points, figures, plan_data.get("control_skipped", ""))
    with atomic_write(out / "summary.md") as f:
        f.write(summary)
    videos = {}
    if cfg.report_videos:
        episodes = int(cfg.common.get("video_episodes", 1)) or 1
        if cfg.track == "robot":
            videos["base policy"] = base_videos(
                cfg.base, track.new_task, track.prior_tasks, out / "videos", episodes
            )
        for method, run in _best_runs(points).items():
            found = sorted((cfg.run_root / run / "videos").glob("final_*.mp4"))
            if found:
                videos[f"best {METHOD_STYLE[method][0]}: {run}"] = found
    title = f"RL's Razor: {cfg.name} ({cfg.suite if cfg.track == 'robot' else 'LLM track'})"
    page = render_html(summary, {k: out / v for k, v in figures.items()}, videos, title)
    with atomic_write(out / "report.html") as f:
        f.write(page)
    return out / "report.html"


def render_html(summary_md: str, figures: dict[str, Path], videos: dict[str, list[Path]], title: str) -> str:
    """A self-contained page: the summary rendered by Python-Markdown, every figure and video inlined as data URIs."""
    import re

    import markdown

    by_name = {p.name: p for p in figures.values()}
    text = "\n".join(
        line for line in summary_md.splitlines() if not line.startswith("# ")
    )  # the page has its own h1
    # The summary is text, never markup: escape it, so a "<" in a finding or a run name stays a character.
    body = markdown.markdown(html.escape(text, quote=False), extensions=["tables"])

    def inline(match):
        path = by_name.get(html.unescape(match.group(2)))
        return f'{match.group(1)}{_embed(path, "image/png")}"' if path else match.group(0)

    body = re.sub(r'(<img[^>]*? src=")([^"]+)"', inline, body)
    body = body.replace("<img ", '<img class="figure" ')
    parts = [body]
    if videos:
        parts.append("<h2>Evaluation videos (fixed evaluation seeds)</h2>")
        for label, paths in videos.items():
            parts.append(f"<h3>{html.escape(label)}</h3><div class='videos'>")
            for path in paths:
                task = path.stem.split("_", 1)[-1]
                parts.append(
                    f"<figure><video class='rollout' controls muted loop src='{_embed(path, 'video/mp4')}'></video>"
                    f"<figcaption>{html.escape(task)}</figcaption></figure>"
                )
            parts.append("</div>")
    style = (
        "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;font-size:14px}"
        "img.figure{max-width:100%}.videos{display:flex;flex-wrap:wrap;gap:8px}video{width:320px}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{style}</style></head>"
        f"<body><h1>{html.escape(title)}</h1>{''.join(parts)}</body></html>\n"
    )
