"""`vla-razor quickstart`: the main job on its default config, the whole pipeline end to end.

1. expert demonstrations of every suite task (ManiSkill motion planning, converted to the project's
   control mode), replayed open-loop through vla-razor's own environments into a video grid per task;
2. the base policy: multi-task behaviour cloning (``vla-razor pretrain``);
3. a small RL-vs-SFT sweep from that base with evaluations along training (``vla-razor razor``);
4. the razor report: Pareto frontier, forgetting vs forward KL, predictor ranking, videos.

Every stage is cached and resumable: a re-run reuses what exists and continues what was interrupted.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from .config import load_config, with_smoke
from .rundir import RunDir, write_json


@dataclass
class QuickstartConfig:
    name: str = "quickstart"
    """Run directory name under ``runs_dir``."""
    runs_dir: str = "runs"
    """Where run directories go."""
    suite: str = "default"
    """Task suite (configs/suites/<name>.yaml): its prior tasks and its new task."""
    demos_per_task: int = 10
    """Expert demonstrations generated (or reused) per task."""
    demo_dir: str = "runs/demos"
    """Shared demonstration store, reused across runs."""
    video_episodes: int = 4
    """Demonstrations replayed into each task's video grid."""
    video_tile_size: int = 224
    """Pixels per episode tile (software rendering cost grows with the pixel count)."""
    seed: int = 0
    """First seed of demonstration generation."""
    pretrain: dict[str, Any] = field(default_factory=dict)
    """Overrides of configs/pretrain.yaml for the base policy (its ``name`` defaults to ``<name>-base``)."""
    razor: dict[str, Any] = field(default_factory=dict)
    """Overrides of configs/razor.yaml for the sweep (its ``name`` defaults to ``<name>-razor``)."""

    def __post_init__(self):
        if self.demos_per_task < 1 or self.video_episodes < 0:
            raise ValueError("demos_per_task must be >= 1 and video_episodes >= 0")


SMOKE = dict(name="quickstart-smoke", suite="smoke", demos_per_task=2, video_episodes=2, video_tile_size=96,
             pretrain={}, razor={})


def _overrides(values: dict[str, Any]) -> list[str]:
    import json

    return [f"{k}={json.dumps(v)}" for k, v in values.items()]


def pretrain_stage(config: QuickstartConfig, smoke: bool) -> Path:
    """The base policy (cached: a finished pretraining run is reused, an interrupted one resumes)."""
    from .config import load_config
    from .pretrain import SMOKE as PRETRAIN_SMOKE, PretrainConfig, pretrain

    values = {"name": f"{config.name}-base", "runs_dir": config.runs_dir, "suite": config.suite,
              "demo_dir": config.demo_dir, **config.pretrain}
    cfg = load_config(PretrainConfig, "configs/pretrain.yaml", _overrides(values))
    if smoke:
        cfg = with_smoke(cfg, PRETRAIN_SMOKE, list(values))
    run = Path(cfg.runs_dir) / cfg.name
    if not ((run / "policy" / "config.json").is_file() and (run / "eval" / "success.json").is_file()):
        pretrain(cfg)
    return run / "policy"


def razor_stage(config: QuickstartConfig, base: Path, smoke: bool) -> Path:
    """The RL-vs-SFT sweep from ``base`` and its report (finished runs are skipped, interrupted ones resume)."""
    from .analysis.report import write_report
    from .analysis.sweep import SMOKE as RAZOR_SMOKE, RazorConfig, run_sweep
    from .config import load_config

    values = {"name": f"{config.name}-razor", "runs_dir": config.runs_dir, "suite": config.suite, "base": str(base),
              **config.razor}
    cfg = load_config(RazorConfig, "configs/razor.yaml", _overrides(values))
    if smoke:
        cfg = with_smoke(cfg, RAZOR_SMOKE, list(values))
    run_sweep(cfg)
    return write_report(cfg)


def run_quickstart(config: QuickstartConfig, smoke: bool = False) -> Path:
    from vla_razor.envs import get_task, load_suite
    from vla_razor.envs.demos import generate_demos, load_demos
    from vla_razor.envs.video import record_episodes, replay_policy

    suite = load_suite(config.suite)
    run = RunDir.create(config.runs_dir, config.name, config, resume=True)
    rows = []
    tasks = tqdm(suite.tasks, desc="quickstart", unit="task")
    for step, task in enumerate(tasks):
        tasks.set_postfix_str(task)
        index = generate_demos(task, config.demos_per_task, out_dir=config.demo_dir, seed=config.seed, progress=True)
        row = {
            "task": task,
            "role": "new" if task == suite.new_task else "prior",
            "instruction": get_task(task).instruction,
            "demos": index.num_kept,
            "expert_success_rate": index.success_rate,
            "seconds_per_demo": index.seconds_per_demo,
            "median_length": index.length_stats.get("median"),
            "video": None,
            "replay_success": None,
        }
        if config.video_episodes:
            episodes = load_demos(index.path)[: config.video_episodes]
            video = run.videos / f"{task}_expert_replay.mp4"
            cached = run.eval / f"{task}_replay.json"
            if video.exists() and cached.exists():
                row["replay_success"] = json.loads(cached.read_text())["replay_success"]
            else:
                result = record_episodes(
                    task, replay_policy([e.actions for e in episodes]), video, num_episodes=len(episodes),
                    seed=[e.seed for e in episodes], tile_size=config.video_tile_size,
                )
                row["replay_success"] = sum(result.successes) / len(result.successes)
                write_json(cached, {"replay_success": row["replay_success"], "successes": result.successes,
                                    "lengths": result.episode_lengths, "demo_lengths": [e.length for e in episodes]})
            row["video"] = str(video.relative_to(run.path))
        rows.append(row)
        run.log(step, {f"demos/{task}/kept": row["demos"], f"demos/{task}/expert_success_rate": row["expert_success_rate"],
                       f"demos/{task}/seconds_per_demo": row["seconds_per_demo"],
                       **({f"demos/{task}/replay_success": row["replay_success"]} if row["replay_success"] is not None else {})})
    run.close()
    write_json(run.eval / "demos.json", rows)
    base = pretrain_stage(config, smoke)
    report = razor_stage(config, base, smoke)
    summary = run.path / "summary.md"
    _write_summary(summary, suite, rows, base, report)
    return summary


def _write_summary(path: Path, suite, rows: list[dict], base: Path, report: Path) -> None:
    from .rundir import atomic_write

    lines = [
        f"# vla-razor quickstart: suite `{suite.name}`",
        "",
        f"New task: **{suite.new_task}**. Prior (retention) tasks: {', '.join(suite.prior_tasks)}.",
        "",
        "| task | role | instruction | demos | expert success | s/demo | median length | replay success | video |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        replay = "" if r["replay_success"] is None else f"{r['replay_success']:.0%}"
        video = f"[mp4]({r['video']})" if r["video"] else ""
        lines.append(
            f"| {r['task']} | {r['role']} | {r['instruction']} | {r['demos']} | {r['expert_success_rate']:.0%} | "
            f"{r['seconds_per_demo']:.2f} | {r['median_length']} | {replay} | {video} |"
        )
    lines += ["", "Expert success: kept demonstrations / attempted seeds. Replay success: recorded actions replayed",
              "open-loop from the demo's seed in vla-razor's own environment.", "",
              f"Base policy: `{base}` (its success table: `{base.parent / 'eval' / 'success.json'}`).", "",
              f"RL's Razor report: `{report}` (summary: `{report.parent / 'summary.md'}`).", "",
              report.parent.joinpath("summary.md").read_text().replace("](", f"]({report.parent.resolve()}/"), ""]
    with atomic_write(path) as f:
        f.write("\n".join(lines))


def main(args) -> int:
    config = load_config(QuickstartConfig, args.config, args.overrides)
    if args.smoke:
        config = with_smoke(config, SMOKE, args.overrides)
    summary = run_quickstart(config, smoke=args.smoke)
    print(f"quickstart done: {summary}")
    print(f"report: {summary.parent.parent / (config.name + '-razor') / 'report' / 'report.html'}")
    return 0
