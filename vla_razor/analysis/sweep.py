"""`vla-razor razor`: a sweep of RL and SFT fine-tuning runs from one base policy, then the analysis.

Every run of the sweep is a normal fine-tuning run directory (``vla-razor finetune`` writes the same),
under ``<runs_dir>/<name>/runs/``: its periodic evaluations and policy snapshots are the points of the
analysis. Runs fan out as Ray tasks (``workers > 1`` or a cluster ``ray_address``); with one worker
they run one after another in this process. A run whose final evaluation exists is skipped and an
interrupted one resumes from its checkpoint, so re-running the command continues the sweep.

After the RL runs, the "SFT on RL data" control clones the successful rollouts of the RL run with the
best new-task success (the paper's control: RL's data, SFT's update).
"""

from __future__ import annotations

import json
from pathlib import Path

from tqdm import tqdm

from vla_razor.atomic import atomic_write, write_json
from vla_razor.config import dump_yaml
from vla_razor.errors import RunDirError

from .archive import Archiver
from .plan import LLM_SMOKE, SMOKE, RazorConfig, RunSpec, plan_control, plan_runs
from .points import BASE_EVALUATION
from .runner import control_teacher_run, run_specs

__all__ = ["LLM_SMOKE", "SMOKE", "RazorConfig", "RunSpec", "plan_control", "plan_runs", "razor", "run_sweep"]


def run_sweep(cfg: RazorConfig, archive: Path | None = None) -> list[RunSpec]:
    """Every run of the sweep, the control last (first when its named teacher has finished); writes
    ``plan.json`` (what each run is) and ``status.json``. With ``archive``, the runs the run directory lacks
    are restored from it first and every run is archived as it goes (:mod:`.archive`); nothing else is written
    outside ``cfg.path``."""
    # No config guard on the sweep itself, unlike a run directory: growing a sweep's grid or seeds is how it
    # is extended. Every run keeps its own config.yaml, which must match the plan (check_run_configs).
    specs = plan_runs(cfg)
    with atomic_write(cfg.path / "config.yaml") as f:
        f.write(dump_yaml(cfg))
    write_json(cfg.path / "plan.json", {"runs": [s.as_dict() for s in specs]})
    archiver = Archiver(cfg, specs, archive)
    if archive is not None:
        from .archive import restore_base_evaluation, restore_runs

        restore_base_evaluation(archive, cfg.path)
        restored = restore_runs(archiver.runs, cfg.run_root)
        if restored:
            tqdm.write(f"restored {len(restored)} runs from the archive {archive}")
    statuses = []
    teacher = control_teacher_run(cfg, specs) if cfg.control_teacher else None
    if teacher is not None and cfg.control_grid:  # a named, finished teacher: its control goes first
        specs, statuses = _control(cfg, specs, teacher, archiver)
    statuses += run_specs(cfg, [s for s in specs if s.method != "sft_on_rl"], archiver, archiver.partial)
    archiver.keep_best_policy()
    if teacher is None:
        teacher = control_teacher_run(cfg, specs)
        if teacher is not None and cfg.control_grid:
            specs, control_statuses = _control(cfg, specs, teacher, archiver)
            statuses += control_statuses
    if teacher is None and cfg.control_grid:
        write_json(
            cfg.path / "plan.json",
            {
                "runs": [s.as_dict() for s in specs],
                "control_skipped": (
                    f"the control's teacher {cfg.control_teacher} has not finished with a policy"
                    if cfg.control_teacher
                    else "no RL run succeeded on the new task in its final evaluation: there is no RL data "
                    "to clone"
                ),
            },
        )
    write_json(cfg.path / "status.json", {"runs": statuses})
    for status in statuses:
        if status["status"] != "done":
            tqdm.write(f"run {status['name']} {status['status']}: {status.get('error', '')}")
    return specs


def _control(cfg: RazorConfig, specs: list[RunSpec], teacher: Path, archiver: Archiver):
    """Plan the control on ``teacher``'s policy, record it in ``plan.json`` and run it."""
    specs = specs + plan_control(cfg, str(teacher / "policy"))
    write_json(
        cfg.path / "plan.json", {"runs": [s.as_dict() for s in specs], "control_teacher": str(teacher)}
    )
    archiver.specs = specs
    return specs, run_specs(cfg, [s for s in specs if s.method == "sft_on_rl"], archiver, archiver.partial)


def report_plan(cfg: RazorConfig, archive: Path | None) -> dict:
    """The plan a report-only pass reads: this config's runs (a grid added since the archive's plan was
    written is reported too) and the control runs of the archived plan (they depend on the RL results of that
    sweep), with what else the archived plan says (its control teacher)."""
    archived_plan = archive / "plan.json" if archive is not None else None
    archived = json.loads(archived_plan.read_text()) if archived_plan and archived_plan.is_file() else {}
    control = [r for r in archived.get("runs", []) if r["method"] == "sft_on_rl"]
    return {**archived, "runs": [s.as_dict() for s in plan_runs(cfg)] + control}


def razor(cfg: RazorConfig, report_only: bool = False, archive: str | Path | None = None) -> Path:
    """The sweep (unless ``report_only``: the run directories as they are), then its report in the sweep's
    directory; returns the report's HTML page. ``archive`` (``vla-razor razor --archive DIR``) is the only way
    anything is written outside the sweep's directory: its runs are restored first, and every run, the plan
    and the report's files are archived there."""
    from .report import write_report
    from .runner import check_run_configs

    archive = Path(archive) if archive else None
    if not (Path(cfg.base.removeprefix("lerobot:")) / "config.json").is_file():
        # An archive holds the base's rates and every run's predictors: its report needs no base weights.
        if not (report_only and archive is not None and (archive / BASE_EVALUATION).is_file()):
            command = "vla-razor llm pretrain" if cfg.track == "llm" else "vla-razor pretrain"
            archived = f"; a report from an --archive holding {BASE_EVALUATION} needs no base"
            archived = archived if report_only else ""
            raise FileNotFoundError(
                f"base policy {cfg.base} not found: run `{command}` first "
                f"(or `{command} --smoke` for the --smoke sweep), or pass base=<policy dir>{archived}"
            )
        tqdm.write(
            f"base policy {cfg.base} not found: forgetting is measured against the base's archived rates "
            f"({archive / BASE_EVALUATION}) and every point needs its archived predictors"
        )
    if not report_only:
        run_sweep(cfg, archive)
    else:
        if archive is not None:
            from .archive import restore_base_evaluation, restore_runs

            restore_base_evaluation(archive, cfg.path)
            restore_runs(archive / "runs", cfg.run_root)
        plan = report_plan(cfg, archive)
        specs = [RunSpec(**{**r, "overrides": tuple(r["overrides"])}) for r in plan["runs"]]
        if not any(next((cfg.run_root / s.name / "eval").glob("*.json"), None) for s in specs):
            raise RunDirError(
                f"no run of this sweep has an evaluation in {cfg.run_root}: nothing to report (run the sweep "
                "first, or name its archive with --archive DIR)"
            )
        check_run_configs(cfg, specs)
        write_json(cfg.path / "plan.json", plan)
    report = write_report(cfg)
    if archive is not None:
        from .archive import archive_report

        plan = json.loads((cfg.path / "plan.json").read_text())
        Archiver(
            cfg, [RunSpec(**{**r, "overrides": tuple(r["overrides"])}) for r in plan["runs"]], archive
        ).archive_all()
        archive_report(report.parent, archive)
        if not (report_only and same_runs(archive / "plan.json", plan)):
            write_json(archive / "plan.json", plan)
    return report


def same_runs(plan_file: Path, plan: dict) -> bool:
    """Whether ``plan_file`` exists and plans the runs ``plan`` does (by name). A report-only pass keeps such
    an archived plan as the sweep wrote it: the pass's own runtime settings (its ``runs_dir``, ``threads``)
    are not part of what the archive records."""
    if not plan_file.is_file():
        return False
    archived = json.loads(plan_file.read_text())
    return [r["name"] for r in archived.get("runs", [])] == [r["name"] for r in plan["runs"]]
