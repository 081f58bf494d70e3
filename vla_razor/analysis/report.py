"""The razor report: from a sweep's run directories to figures, tables, an HTML page and a Markdown summary.

Written to ``<sweep>/report/``: ``report.html`` (self-contained: figures and videos embedded),
``summary.md`` (the same tables, figures linked), the figures as PNG, ``points.json`` (one row per
evaluated policy) and ``analysis.json`` (frontiers, fits, predictor ranking, the control). The numbers
are :mod:`.numbers`', the figures :mod:`.figures`', the pages :mod:`.render`'s.
"""

from __future__ import annotations

import json
import multiprocessing
import subprocess
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from vla_razor.atomic import atomic_write, write_json
from vla_razor.errors import RunDirError

from .figures import curves_figure, kl_figure, pareto_figure, per_task_figure, predictors_figure
from .numbers import METHOD_LABELS, analyse
from .render import render_html, summary_markdown


def code_commit() -> str | None:
    """The git commit of the code that writes a report (``+dirty`` when its library files differ from it);
    None outside a git checkout."""
    root = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            [
                "git",
                "-C",
                str(root),
                "status",
                "--porcelain",
                "--",
                "vla_razor",
                "envs",
                "policies",
                "configs",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+dirty" if dirty else "")


def _best_runs(run_root: Path, plan: list[dict]) -> dict[str, str]:
    """The best final policy of RL and of SFT (highest new-task success, then retention), from the runs'
    ``eval/final.json`` alone (known before any predictor is measured)."""
    from .points import point_method

    best = {}
    for method in ("rl", "sft"):
        finals = []
        for spec in plan:
            final = run_root / spec["name"] / "eval" / "final.json"
            if point_method(spec["method"], spec.get("grid", {})) == method and final.is_file():
                result = json.loads(final.read_text())
                finals.append(((result["new_task_success"], result["retention"]), spec["name"]))
        if finals:
            best[method] = max(finals, key=lambda f: f[0])[1]
    return best


def record_videos(jobs: list[tuple[str, str, list[str], str, str, int]]) -> dict[str, list[str]]:
    """``{label: video paths}`` of each ``(label, policy_dir, tasks, out, prefix, episodes)`` job
    (:func:`policy_videos`), in one thread: the report runs this in a second process."""
    import torch

    torch.set_num_threads(1)
    return {
        label: [str(p) for p in policy_videos(policy, tasks, Path(out), prefix, episodes)]
        for label, policy, tasks, out, prefix, episodes in jobs
    }


def _video_jobs(cfg, plan: list[dict], out: Path) -> tuple[dict[str, list[Path]], list[tuple]]:
    """The videos the report shows: those a run recorded itself, and the jobs that record the others (the
    base's, and those of a best run whose policy is on disk but that recorded none)."""
    if not cfg.report_videos or cfg.track != "robot":
        return {}, []
    from vla_razor.envs import load_suite

    suite = load_suite(cfg.suite)
    tasks = [suite.new_task, *suite.prior_tasks]
    episodes = int(cfg.common.get("video_episodes", 1)) or 1
    recorded, jobs = {}, []
    if (Path(cfg.base) / "config.json").is_file():  # a report rebuilt from an archive alone has no base
        jobs.append(("base policy", cfg.base, tasks, str(out), "base", episodes))
    for method, run in _best_runs(cfg.run_root, plan).items():
        label = f"best {METHOD_LABELS[method]}: {run}"
        found = sorted((cfg.run_root / run / "videos").glob("final_*.mp4"))
        if found:
            recorded[label] = found
        elif (cfg.run_root / run / "policy" / "config.json").is_file():
            jobs.append((label, str(cfg.run_root / run / "policy"), tasks, str(out), run, episodes))
    return recorded, jobs


def policy_videos(
    policy_dir: str | Path, tasks: list[str], out: Path, prefix: str, episodes: int
) -> list[Path]:
    """A saved policy on every task, ``<out>/<prefix>_<task>.mp4`` (cached: recorded once per report
    directory). The report records the videos it shows itself, so a sweep's runs need record none."""
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
    """Collect the points of the sweep ``cfg`` (a RazorConfig), analyse them, write the report; returns
    report.html."""

    plan_file = cfg.path / "plan.json"
    if not plan_file.is_file():
        raise FileNotFoundError(
            f"{plan_file} not found: run the sweep first (`vla-razor razor` without --report-only)"
        )
    plan_data = json.loads(plan_file.read_text())
    plan = plan_data["runs"]
    out = cfg.path / "report"
    out.mkdir(parents=True, exist_ok=True)
    # The videos are recorded in a second process while this one measures the predictors (both take
    # minutes on a CPU; neither needs the other).
    videos, jobs = _video_jobs(cfg, plan, out / "videos")
    recording = None
    if jobs:
        pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
        recording = pool.submit(record_videos, jobs)
    try:
        return _write(cfg, plan_data, out, videos, recording)
    finally:
        if recording is not None:
            pool.shutdown(wait=recording.done(), cancel_futures=True)


def _write(cfg, plan_data: dict, out: Path, videos: dict, recording) -> Path:
    """The report's files, once the videos being recorded (``recording``, a future) are in."""
    from .points import BASE_EVALUATION, collect_points

    plan = plan_data["runs"]
    track = cfg.make_track()
    points = collect_points(cfg.run_root, plan, track, cfg.path / BASE_EVALUATION)
    if len(points) < 2:
        raise RunDirError(f"no run of {cfg.path} has an evaluation yet: nothing to analyse")
    analysis = analyse(points, track.prior_tasks, targets=cfg.targets)
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
            "commit": code_commit(),
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
    if recording is not None:
        recorded = {label: [Path(p) for p in paths] for label, paths in recording.result().items()}
        videos = {**recorded, **videos}
        videos = {"base policy": videos.pop("base policy"), **videos}  # the base first
    title = f"RL's Razor: {cfg.name} ({cfg.suite if cfg.track == 'robot' else 'LLM track'})"
    page = render_html(summary, {k: out / v for k, v in figures.items()}, videos, title)
    with atomic_write(out / "report.html") as f:
        f.write(page)
    return out / "report.html"
