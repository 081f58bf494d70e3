"""The main job (``vla-razor quickstart``): the whole pipeline end to end on its default config.

1. expert demonstrations of every suite task (ManiSkill motion planning, converted to the project's
   control mode), replayed open-loop through vla-razor's own environments into a video grid per task;
2. the base policy: the one shipped in ``checkpoints/quickstart-base`` (made by ``vla-razor pretrain``
   with the command, config and success table beside it), or trained from scratch with
   ``retrain_base=true`` (``--retrain-base``);
3. a small RL-vs-SFT sweep from that base with evaluations along training (``vla-razor razor``);
4. the razor report: the matched-success comparison, Pareto frontier, forgetting vs forward KL,
   predictor ranking, videos of the base and the best RL and SFT policies on every task.

Every stage is cached and resumable: a re-run reuses what exists and continues what was interrupted.
The wall time of every stage goes to ``eval/timings.json`` and the summary.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vla_razor.analysis.plan import SMOKE as RAZOR_SMOKE
from vla_razor.analysis.render import TEMPLATES
from vla_razor.atomic import atomic_write, write_json
from vla_razor.config import Config, NonNegativeInt, PositiveInt, load_config, with_smoke
from vla_razor.errors import CheckpointError
from vla_razor.progress import progress
from vla_razor.rundir import RunDir


@dataclass
class QuickstartConfig(Config):
    name: str = "quickstart"
    """Run directory name under ``runs_dir``."""
    runs_dir: str = "runs"
    """Where run directories go."""
    suite: str = "default"
    """Task suite (configs/suites/<name>.yaml): its prior tasks and its new task."""
    demos_per_task: PositiveInt = 10
    """Expert demonstrations generated (or reused) per task."""
    demo_dir: str = "runs/demos"
    """Shared demonstration store, reused across runs."""
    video_episodes: NonNegativeInt = 4
    """Demonstrations replayed into each task's video grid."""
    video_tile_size: PositiveInt = 224
    """Pixels per episode tile (software rendering cost grows with the pixel count)."""
    seed: NonNegativeInt = 0
    """First seed of demonstration generation."""
    base: str = "checkpoints/quickstart-base/policy"
    """The base policy every fine-tuning run starts from (a ``save_pretrained`` directory); unused
    with ``retrain_base``."""
    retrain_base: bool = False
    """Train the base from scratch (configs/pretrain.yaml with ``pretrain``'s overrides) instead of using
    ``base``."""
    pretrain: dict[str, Any] = field(default_factory=dict)
    """Overrides of configs/pretrain.yaml for a retrained base (its ``name`` defaults to ``<name>-base``)."""
    razor: dict[str, Any] = field(default_factory=dict)
    """The sweep, complete: every :class:`~vla_razor.analysis.plan.RazorConfig` field it sets (the others
    keep their defaults, which add nothing; nothing comes from configs/razor.yaml). Its ``name`` defaults to
    ``<name>-razor``, its ``runs_dir``, ``suite`` and ``base`` to the quickstart's. It has no archive: the
    main job writes only under ``runs_dir``."""


SMOKE = dict(
    name="quickstart-smoke",
    suite="smoke",
    demos_per_task=2,
    video_episodes=2,
    video_tile_size=96,
    retrain_base=True,
    pretrain={},
    razor={},
)
"""The ``--smoke`` main job of a ManiSkill config: every stage on two tasks, in minutes."""

METAWORLD_SMOKE = {
    **SMOKE,
    "suite": "metaworld-smoke",
    "video_episodes": 0,
    "razor": {"report_videos": False, "common": {**RAZOR_SMOKE["common"], "video_episodes": 0}},
}
"""The ``--smoke`` main job of a Meta-World config: two Meta-World tasks, no video (Meta-World renders on a
GPU machine only)."""


def smoke_settings(config: QuickstartConfig) -> dict[str, Any]:
    """The ``--smoke`` budget for ``config``'s world: a config's smoke run stays in its world."""
    from vla_razor.envs import load_suite

    return METAWORLD_SMOKE if load_suite(config.suite).world == "metaworld" else SMOKE


def _overrides(values: dict[str, Any]) -> list[str]:
    return [f"{k}={json.dumps(v)}" for k, v in values.items()]


def pretrain_stage(config: QuickstartConfig, smoke: bool) -> Path:
    """The base policy: the shipped one, or (``retrain_base``) a pretraining run, cached: a finished run
    is reused, an interrupted one resumes."""
    if not config.retrain_base:
        base = Path(config.base)
        if not (base / "config.json").is_file() or not (base / "model.safetensors").is_file():
            raise FileNotFoundError(
                f"base policy {base} not found (config.json and model.safetensors): pass "
                "base=<a save_pretrained directory>, or retrain it with --retrain-base"
            )
        return base
    from vla_razor.pretrain import SMOKE as PRETRAIN_SMOKE
    from vla_razor.pretrain import PretrainConfig, pretrain

    values = {
        "name": f"{config.name}-base",
        "runs_dir": config.runs_dir,
        "suite": config.suite,
        "demo_dir": config.demo_dir,
        **config.pretrain,
    }
    cfg = load_config(PretrainConfig, "configs/pretrain.yaml", _overrides(values))
    if smoke:
        cfg = with_smoke(cfg, PRETRAIN_SMOKE, list(values))
    run = Path(cfg.runs_dir) / cfg.name
    if not ((run / "policy" / "config.json").is_file() and (run / "eval" / "success.json").is_file()):
        pretrain(cfg)
    return run / "policy"


def razor_config(config: QuickstartConfig, base: Path, smoke: bool):
    """The sweep's RazorConfig: the quickstart's ``razor`` block on RazorConfig's defaults alone."""
    from vla_razor.analysis.sweep import SMOKE as RAZOR_SMOKE
    from vla_razor.analysis.sweep import RazorConfig

    values = {
        "name": f"{config.name}-razor",
        "runs_dir": config.runs_dir,
        "suite": config.suite,
        "base": str(base),
        **config.razor,
    }
    cfg = load_config(RazorConfig, None, _overrides(values))
    if smoke:
        cfg = with_smoke(cfg, RAZOR_SMOKE, list(values))
    return cfg


class StageTimer:
    """Wall time of each stage, accumulated over resumed runs in ``eval/timings.json``."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self.seconds: dict[str, float] = json.loads(path.read_text()) if path.is_file() else {}
        except json.JSONDecodeError:
            self.seconds = {}
        self.session: dict[str, float] = {}

    def __call__(self, stage: str, fn, *args, **kwargs):
        start = time.perf_counter()
        out = fn(*args, **kwargs)
        elapsed = time.perf_counter() - start
        self.session[stage] = elapsed
        self.seconds[stage] = self.seconds.get(stage, 0.0) + elapsed
        write_json(self.path, self.seconds)
        print(f"quickstart: stage {stage} took {elapsed / 60:.1f} min", flush=True)
        return out


def run_quickstart(config: QuickstartConfig, smoke: bool = False) -> Path:
    """Run every stage (each cached and resumable); returns the summary (``<run>/summary.md``)."""
    from vla_razor.envs import load_suite

    suite = load_suite(config.suite)
    if not config.retrain_base:  # a bad base fails now, with the loader's message, not after the demos
        from vla_razor.policies import ChainPolicy

        if not (Path(config.base) / "config.json").is_file():
            raise CheckpointError(
                f"base policy {config.base} not found (config.json and model.safetensors): pass "
                "base=<a save_pretrained directory>, or retrain it with --retrain-base"
            )
        ChainPolicy.from_pretrained(config.base)
    razor_config(config, Path(config.base), smoke)  # the sweep's overrides are checked before any work
    run = RunDir.create(config.runs_dir, config.name, config, resume=True)
    timer = StageTimer(run.eval / "timings.json")
    rows = timer("demos", demos_stage, config, suite, run)
    base = timer("base", pretrain_stage, config, smoke)
    from vla_razor.analysis.report import write_report
    from vla_razor.analysis.sweep import run_sweep

    sweep = razor_config(config, base, smoke)
    timer("sweep", run_sweep, sweep)  # finished runs are skipped, interrupted ones resume
    report = timer("report", write_report, sweep)
    summary = run.path / "summary.md"
    _write_summary(summary, suite, rows, base, report, timer.seconds)
    return summary


def demos_stage(config: QuickstartConfig, suite, run: RunDir) -> list[dict]:
    """Expert demonstrations of every task, replayed open-loop into a video grid per task."""
    from vla_razor.envs import get_task
    from vla_razor.envs.demos import generate_demos, load_demos
    from vla_razor.envs.video import record_episodes, replay_policy

    rows = []
    tasks = progress(suite.tasks, desc="quickstart", unit="task")
    for step, task in enumerate(tasks):
        tasks.set_postfix_str(task)
        # The new task's SFT demonstrations too, here, before any training: generating them later in the
        # same process (inside the sweep, after PPO's simulators) aborted once in SAPIEN's thread state.
        wanted = config.demos_per_task
        if task == suite.new_task:
            wanted = max(wanted, int(config.razor.get("sft", {}).get("demos", 0)))
        index = generate_demos(task, wanted, out_dir=config.demo_dir, seed=config.seed, progress=True)
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
                    task,
                    replay_policy([e.actions for e in episodes]),
                    video,
                    num_episodes=len(episodes),
                    seed=[e.seed for e in episodes],
                    tile_size=config.video_tile_size,
                )
                row["replay_success"] = sum(result.successes) / len(result.successes)
                write_json(
                    cached,
                    {
                        "replay_success": row["replay_success"],
                        "successes": result.successes,
                        "lengths": result.episode_lengths,
                        "demo_lengths": [e.length for e in episodes],
                    },
                )
            row["video"] = str(video.relative_to(run.path))
        rows.append(row)
        run.log(
            step,
            {
                f"demos/{task}/kept": row["demos"],
                f"demos/{task}/expert_success_rate": row["expert_success_rate"],
                f"demos/{task}/seconds_per_demo": row["seconds_per_demo"],
                **(
                    {f"demos/{task}/replay_success": row["replay_success"]}
                    if row["replay_success"] is not None
                    else {}
                ),
            },
        )
    run.close()
    write_json(run.eval / "demos.json", rows)
    return rows


def _success_table(base: Path) -> Path:
    """A base's success table: ``eval/success.json`` of its pretraining run, or the shipped
    ``success.json``."""
    run_table = base.parent / "eval" / "success.json"
    return run_table if run_table.is_file() else base.parent / "success.json"


def _link(target: Path, start: Path) -> str:
    """``target`` relative to the directory ``start``: the summary stays valid when the runs are copied."""
    return Path(os.path.relpath(Path(target).resolve(), Path(start).resolve())).as_posix()


def _write_summary(
    path: Path, suite, rows: list[dict], base: Path, report: Path, seconds: dict[str, float]
) -> None:
    """``summary.md``: the demos table, the base, the stage times and the razor report's summary, every link
    relative to ``path``'s directory (templates/quickstart.md.j2)."""
    here = path.parent
    report_dir = report.parent
    # The report's own links are relative to its directory: re-base them on this file's.
    razor = report_dir.joinpath("summary.md").read_text()
    razor = re.sub(
        r"\]\((?!https?:|/|#)([^)]+)\)", lambda m: f"]({_link(report_dir / m.group(1), here)})", razor
    )
    text = TEMPLATES.get_template("quickstart.md.j2").render(
        suite=suite,
        rows=rows,
        base_name=base.name,
        base_config=_link(base / "config.json", here),
        base_table=_link(_success_table(base), here),
        report=_link(report, here),
        report_summary=_link(report_dir / "summary.md", here),
        seconds=seconds,
        razor_summary=razor.replace("# RL's Razor report", "## RL's Razor report", 1),
    )
    with atomic_write(path) as f:
        f.write(text)
