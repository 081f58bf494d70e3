"""The razor report's figures (matplotlib, written as PNG)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from .fits import pareto_frontier
from .numbers import METHOD_LABELS, PREDICTOR_LABELS
from .predictors import PREDICTORS

_LOOK = {
    "rl": ("tab:blue", "o"),
    "rl_kl": ("tab:purple", "^"),
    "sft": ("tab:orange", "s"),
    "sft_on_rl": ("tab:green", "*"),
    "base": ("black", "X"),
}
METHOD_STYLE = {m: (METHOD_LABELS[m], *look) for m, look in _LOOK.items()}
"""(label, colour, marker) of each method."""


def pareto_figure(points: list[dict], path: Path) -> None:
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


def kl_figure(points: list[dict], analysis: dict, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    _scatter_fit(ax, points, "kl/forward", analysis["fits"]["kl/forward"])
    ax.set_title("Forgetting against the forward KL to the base")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def predictors_figure(points: list[dict], analysis: dict, path: Path) -> None:
    import matplotlib.pyplot as plt

    names = [n for n in PREDICTORS if analysis["fits"].get(n)]  # those the track measures
    fig, axes = plt.subplots(1, max(1, len(names)), figsize=(4 * max(1, len(names)), 3.6), squeeze=False)
    for ax, name in zip(axes[0], names):
        _scatter_fit(ax, points, name, analysis["fits"][name])
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def per_task_figure(points: list[dict], analysis: dict, path: Path) -> None:
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


def curves_figure(run_root: Path, plan: list[dict], path: Path) -> None:
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
