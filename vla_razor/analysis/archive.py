"""A sweep's archive: what the analysis needs of each finished run, small enough to commit or copy.

A run directory holds megabytes of checkpoints and snapshots; the razor analysis needs only the run's
evaluations (``eval/*.json``), its metrics, its config and the predictors measured on its snapshots
(``analysis/*.json``, :func:`vla_razor.analysis.points.collect_points`). The archive keeps those
(kilobytes per run), and the final policy's weights and videos of one run only: the best RL run's,
which the SFT-on-RL-data control clones. A run still in progress is archived with its latest
checkpoint too (:func:`archive_partial`, every few minutes while the sweep runs it), so that a sweep
stopped with its machine loses no more than those minutes. A sweep given ``--archive DIR`` restores from it
every run its run directory lacks, finished or not (an unfinished one then resumes from the archived
checkpoint), so the sweep continues on another machine or in a fresh checkout, and the report is rebuilt
from the archive alone.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

from vla_razor.atomic import atomic_path
from vla_razor.rundir import RunDir

from .plan import RazorConfig, RunSpec
from .runner import best_rl_run, control_teacher_run, run_is_done

KEPT = ("config.yaml", "metrics.jsonl", "eval/*.json", "analysis/*.json")
"""What of a finished run the archive keeps (glob patterns relative to the run directory)."""
POLICY = "policy"
"""The final policy's directory: archived for the best RL run only."""
CHECKPOINTS = "checkpoints"
"""A run's checkpoints: the latest one is archived while the run is unfinished."""


def _copy(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(dest) as tmp:
        shutil.copyfile(src, tmp)


def _same(a: Path, b: Path) -> bool:
    return b.is_file() and a.stat().st_size == b.stat().st_size and a.read_bytes() == b.read_bytes()


def _copy_changed(run_dir: Path, dest: Path, patterns) -> int:
    """Copy the files of ``run_dir`` matching ``patterns`` to the same places under ``dest``, those that
    differ there; returns how many."""
    changed = 0
    for pattern in patterns:
        for src in sorted(run_dir.glob(pattern)):
            target = dest / src.relative_to(run_dir)
            if not _same(src, target):
                _copy(src, target)
                changed += 1
    return changed


def archive_run(run_dir: Path, archive_root: Path, with_policy: bool = False) -> int:
    """Copy the kept files of ``run_dir`` (a finished run) to ``archive_root/<run name>``; returns how many
    files changed. ``with_policy`` also keeps its final policy (config.json and weights) and its videos."""
    dest = archive_root / run_dir.name
    patterns = KEPT + (
        (f"{POLICY}/config.json", f"{POLICY}/model.safetensors", "videos/final_*.mp4") if with_policy else ()
    )
    changed = _copy_changed(run_dir, dest, patterns)
    extras = [dest / CHECKPOINTS] + ([] if with_policy else [dest / POLICY, dest / "videos"])
    for extra in extras:
        if extra.is_dir():
            shutil.rmtree(extra)
    return changed


def archive_partial(run_dir: Path, archive_root: Path) -> int:
    """Archive an unfinished run: the kept files of :func:`archive_run` and its latest complete checkpoint
    (the one ``--resume`` would load; older archived checkpoints are removed). Returns how many files
    changed; nothing when the run has no checkpoint yet or has finished (:func:`archive_run` keeps those)."""
    latest = RunDir(run_dir).latest_checkpoint()
    if latest is None or (run_dir / "eval" / "final.json").is_file():
        return 0
    dest = archive_root / run_dir.name
    changed = _copy_changed(run_dir, dest, KEPT + (f"{CHECKPOINTS}/{latest.name}/*",))
    # LATEST last, once the checkpoint it names is complete in the archive
    pointer = dest / CHECKPOINTS / "LATEST"
    if not pointer.is_file() or pointer.read_text().strip() != latest.name:
        with atomic_path(pointer) as tmp:
            tmp.write_text(latest.name + "\n")
        changed += 1
    for old in (dest / CHECKPOINTS).glob("step_*"):
        if old.name != latest.name:
            shutil.rmtree(old)
    return changed


def _restorable(archived: Path) -> bool:
    """A finished archived run, or an unfinished one with a checkpoint to resume from."""
    return (archived / "eval" / "final.json").is_file() or (archived / CHECKPOINTS / "LATEST").is_file()


def restore_runs(archive_root: Path, run_root: Path) -> list[str]:
    """Copy every archived run that ``run_root`` lacks into it; returns their names. An unfinished one
    comes with its latest checkpoint, from which the sweep's ``--resume`` continues it.

    A run directory that exists without a final evaluation (an interrupted run on this machine) is left alone:
    it resumes from its own checkpoint."""
    restored = []
    if not archive_root.is_dir():
        return restored
    for archived in sorted(p for p in archive_root.iterdir() if _restorable(p)):
        target = run_root / archived.name
        if target.exists():
            continue
        for src in sorted(f for f in archived.rglob("*") if f.is_file()):
            _copy(src, target / src.relative_to(archived))
        restored.append(archived.name)
    return restored


def best_rl_name(archive_root: Path, rl_names: list[str]) -> str | None:
    """The archived RL run (of ``rl_names``) with the highest final new-task success."""
    best, best_rate = None, -1.0
    for name in rl_names:
        final = archive_root / name / "eval" / "final.json"
        if final.is_file():
            rate = json.loads(final.read_text())["new_task_success"]
            if rate > best_rate:
                best, best_rate = name, rate
    return best


def restore_base_evaluation(archive: Path, sweep_dir: Path) -> bool:
    """Copy the archived base evaluation (:data:`~.points.BASE_EVALUATION`) into a sweep directory that lacks
    it, so that a report rebuilt from the archive measures forgetting against the same base rates."""
    from .points import BASE_EVALUATION

    src, dest = archive / BASE_EVALUATION, sweep_dir / BASE_EVALUATION
    if src.is_file() and not dest.is_file():
        _copy(src, dest)
        return True
    return False


REPORT_FILES = ("points.json", "analysis.json", "summary.md", "*.png")


def archive_report(report_dir: Path, archive_root: Path) -> None:
    """The report's machine-readable files, summary and figures (not the HTML page with its embedded videos),
    and the base evaluation they were measured against (in the sweep's directory, above the report's)."""
    from .points import BASE_EVALUATION

    sources = [src for pattern in REPORT_FILES for src in sorted(report_dir.glob(pattern))]
    sources += [p for p in [report_dir.parent / BASE_EVALUATION] if p.is_file()]
    for src in sources:
        if not _same(src, archive_root / src.name) and not _same_analysis(src, archive_root / src.name):
            _copy(src, archive_root / src.name)


def _same_analysis(new: Path, archived: Path) -> bool:
    """Two ``analysis.json`` with the same numbers: the archived one keeps the commit that first wrote
    them. Floats agree to 1e-9 (relative): a sum's last digit differs between Python 3.11 and 3.12, whose
    sum() compensates its rounding, and between numpy versions."""
    if new.name != "analysis.json" or not archived.is_file():
        return False
    a, b = (json.loads(path.read_text()) for path in (new, archived))
    a.pop("commit", None), b.pop("commit", None)
    return _close(a, b)


def _close(a, b) -> bool:
    """``a == b`` for JSON values, floats to 1e-9 relative (1e-12 absolute)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, (int, float)) or isinstance(b, float) and isinstance(a, int):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12) or (math.isnan(a) and math.isnan(b))
    return a == b


class Archiver:
    """Keeps a sweep's archive up to date as runs finish: measures each finished run's predictors (the
    analysis's, cached in the run), copies what the analysis needs (:mod:`.archive`), and keeps the final
    policy of the best RL run so far and of the control's teacher, and no other. Without an archive it does
    nothing.
    """

    def __init__(self, cfg: RazorConfig, specs: list[RunSpec], archive: Path | None = None):
        self.cfg, self.specs, self.archive, self._track = cfg, specs, archive, None

    @property
    def runs(self) -> Path:
        """Where the archived runs go (``<archive>/runs/<name>``); the report's files go to the archive
        itself."""
        return self.archive / "runs"

    def __call__(self, spec: RunSpec, status: dict) -> None:
        if self.archive is None or status.get("status") != "done":
            return
        archive_run(self._measured(spec), self.runs)
        if spec.method == "rl":
            self.keep_best_policy()

    def partial(self, spec: RunSpec) -> None:
        """Archive a run in progress (its latest checkpoint, evaluations so far and their predictors)."""
        if self.archive is not None:
            archive_partial(self._measured(spec), self.runs)

    def _measured(self, spec: RunSpec) -> Path:
        """The run's directory, once the predictors of its evaluations so far are measured (cached in it)."""
        from .points import measure_run

        if self._track is None:
            self._track = self.cfg.make_track()
        run_dir = self.cfg.run_root / spec.name
        measure_run(run_dir, self._track)
        return run_dir

    def archive_all(self) -> None:
        """Every finished run of the plan (their predictors measured by the report), then the best RL
        policy."""
        if self.archive is None:
            return
        for spec in self.specs:
            if spec.method != "rl" and run_is_done(self.cfg.run_root / spec.name):
                archive_run(self.cfg.run_root / spec.name, self.runs)
        self.keep_best_policy()

    def keep_best_policy(self) -> None:
        if self.archive is None:
            return
        kept = {best_rl_run(self.cfg, self.specs), control_teacher_run(self.cfg, self.specs)}
        for spec in self.specs:
            run_dir = self.cfg.run_root / spec.name
            if spec.method == "rl" and run_is_done(run_dir):
                archive_run(run_dir, self.runs, with_policy=run_dir in kept and (run_dir / "policy").is_dir())
