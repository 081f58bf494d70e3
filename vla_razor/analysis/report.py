"""The razor report: from a sweep's run directories to figures, tables, an HTML page and a Markdown summary.

Written to ``<sweep>/report/``: ``report.html`` (self-contained: figures and videos embedded),
``summary.md`` (the same tables, figures linked), the figures as PNG, ``points.json`` (one row per
evaluated policy) and ``analysis.json`` (frontiers, fits, predictor ranking, the control). The numbers
are :mod:`.numbers`', the figures :mod:`.figures`', the pages :mod:`.render`'s.
"""

from __future__ import annotations

import json
from pathlib import Path

from vla_razor.atomic import atomic_write, write_json

from .figures import curves_figure, kl_figure, pareto_figure, per_task_figure, predictors_figure
from .numbers import METHOD_LABELS, analyse
from .render import render_html, summary_markdown


def _best_runs(points: list[dict]) -> dict[str, str]:
    best = {}
    for method in ("rl", "sft"):
        finals = [p for p in points if p["method"] == method and p["tag"] == "final"]
        if finals:
            best[method] = max(finals, key=lambda p: (p["new_task_success"], p["retention"]))["run"]
    return best


def policy_videos(
    policy_dir: str | Path, tasks: list[str], out: Path, prefix: str, episodes: int
) -> list[Path]:
    """A saved policy on every task, ``<out>/<prefix>_<task>.mp4`` (cached: recorded once per report directory).
    The report records the videos it shows itself, so a sweep's runs need record none."""
    from vla_razor.envs.video import record_episodes
    from vla_razor.evaluation import deterministic_actor
    from vla_razor.policies import ChainPolicy

    policy = None
    paths = []
    for task in tasks:
        path = out / f"{prefix}_{task}.mp4"
        if not path.is_file():
            policy = policy or ChainPolicy.from_pretrained(policy_dir).eval()
            record_episodes(task, deterministic_actor(policy), path, num_episodes=episodes, seed=10_000)
        paths.append(path)
    return paths


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
        from vla_razor.errors import RunDirError

        raise RunDirError(f"no run of {cfg.path} has an evaluation yet: nothing to analyse")
    analysis = analyse(points, track.prior_tasks, targets=cfg.targets)
    out = cfg.path / "report"
    out.mkdir(parents=True, exist_ok=True)
    figures = {
        "pareto": "pareto.png",
        "kl": "forgetting_vs_forward_kl.png",
        "predictors": "predictors.png",
        "curves": "training_curves.png",
    }
    pareto_figure(points, out / figures["pareto"])
    kl_figure(points, analysis, out / figures["kl"])
    predictors_figure(points, analysis, out / figures["predictors"])
    curves_figure(cfg.run_root, plan, out / figures["curves"])
    if analysis["per_task"]:
        figures["per_task"] = "forgetting_per_task.png"
        per_task_figure(points, analysis, out / figures["per_task"])
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
    summary = summary_markdown(
        analysis,
        points,
        figures,
        plan_data.get("control_skipped", "")
        or (
            "the sweep has not reached it yet"
            if cfg.control_grid and not any(r["method"] == "sft_on_rl" for r in plan)
            else ""
        ),
    )
    with atomic_write(out / "summary.md") as f:
        f.write(summary)
    videos = {}
    if cfg.report_videos:
        episodes = int(cfg.common.get("video_episodes", 1)) or 1
        tasks = [track.new_task, *track.prior_tasks] if cfg.track == "robot" else []
        if tasks:
            videos["base policy"] = policy_videos(cfg.base, tasks, out / "videos", "base", episodes)
        for method, run in _best_runs(points).items():
            found = sorted((cfg.run_root / run / "videos").glob("final_*.mp4"))
            if not found and tasks and (cfg.run_root / run / "policy" / "config.json").is_file():
                found = policy_videos(cfg.run_root / run / "policy", tasks, out / "videos", run, episodes)
            if found:
                videos[f"best {METHOD_LABELS[method]}: {run}"] = found
    title = f"RL's Razor: {cfg.name} ({cfg.suite if cfg.track == 'robot' else 'LLM track'})"
    page = render_html(summary, {k: out / v for k, v in figures.items()}, videos, title)
    with atomic_write(out / "report.html") as f:
        f.write(page)
    return out / "report.html"
