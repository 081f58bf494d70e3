"""Running a sweep's runs: one process per run (a run that dies or diverges is recorded, the sweep goes
on), one after another or fanned out as Ray tasks."""

from __future__ import annotations

import collections
import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from vla_razor.config import dump_yaml, load_config
from vla_razor.errors import EXIT_BAD_INPUT, EXIT_DIVERGED, ConfigError, RunDirError
from vla_razor.progress import progress
from vla_razor.rundir import config_differences, field_defaults
from vla_razor.runtime import ray_session

from .plan import RazorConfig, RunSpec


def run_is_done(run_dir: Path) -> bool:
    return (run_dir / "eval" / "final.json").is_file()


def run_config(spec: RunSpec):
    """The resolved config a run of ``spec`` trains with: what :func:`run_command`'s process loads and
    records in the run's ``config.yaml``."""
    if spec.track == "llm":
        from vla_razor.llm.finetune import LLMFinetuneConfig

        return load_config(LLMFinetuneConfig, "configs/llm_finetune.yaml", list(spec.overrides))
    from vla_razor.algorithms import load_algorithm

    return load_algorithm(spec.algo, None, list(spec.overrides))[0]


def check_run_configs(cfg: RazorConfig, specs: list[RunSpec]) -> None:
    """Refuse (:class:`~vla_razor.errors.RunDirError`) a sweep whose run directories, its own or restored from
    an archive, were made with another config than the plan gives them: a finished run is reused and an
    unfinished one resumed only when it is the run the plan describes (where and how it runs aside)."""
    wrong = []
    for spec in specs:
        saved = cfg.run_root / spec.name / "config.yaml"
        if saved.is_file():
            wanted = run_config(spec)
            # a field added since the run was made: it ran as that field's default
            changed = config_differences(saved.read_text(), dump_yaml(wanted), field_defaults(wanted))
            if changed:
                wrong.append(f"{spec.name} ({'; '.join(changed)})")
    if wrong:
        raise RunDirError(
            f"{len(wrong)} run(s) in {cfg.run_root} were made with another config than this sweep's plan "
            f"gives them (saved -> plan): {' | '.join(wrong)}. Give this sweep another name, or remove those "
            "run directories to run them again"
        )


def run_command(spec: dict, threads: int = 0) -> list[str]:
    """The command line of one run: ``vla-razor [llm] finetune --algo A --resume <overrides>``."""
    overrides = list(spec["overrides"]) + ([f"threads={threads}"] if threads else [])
    track = ["llm"] if spec.get("track") == "llm" else []
    return [
        sys.executable,
        "-m",
        "vla_razor.cli",
        *track,
        "finetune",
        "--algo",
        spec["algo"],
        "--resume",
        *overrides,
    ]


def execute_run(spec: dict, threads: int = 0, on_progress=None, progress_every_s: float = 600.0) -> dict:
    """Run (or resume) one fine-tuning run in its own process; returns its status. A Ray task when the sweep
    fans out.

    A process per run keeps the sweep alive whatever a run does: a run that diverges (exit 3), is given bad
    input (exit 2), raises, or dies (a signal, an abort in the simulator, the kernel's OOM killer) is
    marked ``diverged`` or ``failed`` with its reason and the last lines it printed, and the sweep goes on;
    a re-run of the sweep retries every run without a final evaluation. ``on_progress()`` is called every
    ``progress_every_s`` seconds while the run goes on (the sweep archives its latest checkpoint)."""
    command = run_command(spec, threads)
    started = time.perf_counter()
    tail: collections.deque[str] = collections.deque(maxlen=12)
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, errors="replace")

    def relay():  # the run's log stays visible; its last lines are kept for the status
        for line in process.stderr:
            sys.stderr.write(line)
            if line.strip():
                tail.append(line.rstrip())

    reader = threading.Thread(target=relay, daemon=True)
    reader.start()
    try:
        while True:
            try:
                code = process.wait(timeout=progress_every_s if on_progress else None)
                break
            except subprocess.TimeoutExpired:
                try:
                    on_progress()
                except Exception as err:  # noqa: BLE001 - archiving must never stop the run it archives
                    sys.stderr.write(f"archiving {spec['name']} in progress failed: {err}\n")
    except BaseException:  # Ctrl-C or the sweep stopped: the run stops too (it resumes next time)
        process.terminate()
        process.wait(timeout=30)
        raise
    reader.join(timeout=10)
    status = {"name": spec["name"], "exit_code": code, "seconds": round(time.perf_counter() - started, 1)}
    if code == 0:
        return {**status, "status": "done"}
    last = "\n".join(tail)
    if code == EXIT_DIVERGED:
        return {**status, "status": "diverged", "error": last}
    if code < 0:
        reason = f"the run's process died of {signal.Signals(-code).name}"
    elif code == EXIT_BAD_INPUT:
        reason = "the run refused its input"
    else:
        reason = f"the run's process exited with code {code}"
    return {**status, "status": "failed", "error": f"{reason}; its last lines:\n{last}"}


def run_specs(
    cfg: RazorConfig, specs: list[RunSpec], on_done=None, on_progress=None, progress_every_s: float = 600.0
) -> list[dict]:
    """Run the specs not finished yet (Ray tasks when ``workers > 1`` or a cluster is named); ``on_done(spec,
    status)`` is called as each run ends and, one run at a time in this process, ``on_progress(spec)`` every
    ``progress_every_s`` seconds while a run goes on."""
    check_run_configs(cfg, specs)
    todo = [s for s in specs if not run_is_done(cfg.run_root / s.name)]
    statuses = [{"name": s.name, "status": "done"} for s in specs if s not in todo]
    on_done = on_done or (lambda spec, status: None)
    if not todo:
        return statuses
    if cfg.workers <= 1 and not cfg.ray_address:
        for spec in progress(todo, desc="sweep", unit="run"):
            tick = (lambda spec=spec: on_progress(spec)) if on_progress else None
            statuses.append(execute_run(spec.as_dict(), on_progress=tick, progress_every_s=progress_every_s))
            on_done(spec, statuses[-1])
        return statuses

    # the runs' own progress lines (one per iteration: their output is a pipe) reach this terminal, each
    # prefixed by Ray with the task's pid
    with ray_session(cfg.ray_address, cfg.workers, log_to_driver=True) as ray:
        remote = ray.remote(num_cpus=1, max_retries=0)(execute_run)
        pending = {remote.remote(spec.as_dict(), 1): spec for spec in todo}
        with progress(total=len(pending), desc=f"sweep ({cfg.workers} Ray workers)", unit="run") as bar:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                spec = pending.pop(done[0])
                try:
                    statuses.append(ray.get(done[0]))
                except ray.exceptions.RayError as err:  # the Ray worker itself died or was lost with its node
                    statuses.append(
                        {
                            "name": spec.name,
                            "status": "failed",
                            "error": f"its Ray worker was lost ({type(err).__name__}: {str(err)[:300]})",
                        }
                    )
                on_done(spec, statuses[-1])
                bar.update(1)
    return statuses


def best_rl_run(cfg: RazorConfig, specs: list[RunSpec]) -> Path | None:
    """The RL run with the highest final new-task success (None when no RL run succeeded at all)."""
    best, best_rate = None, 0.0
    for spec in specs:
        final = cfg.run_root / spec.name / "eval" / "final.json"
        if spec.method == "rl" and final.is_file():
            rate = json.loads(final.read_text())["new_task_success"]
            if rate > best_rate:
                best, best_rate = cfg.run_root / spec.name, rate
    return best


def control_teacher_run(cfg: RazorConfig, specs: list[RunSpec]) -> Path | None:
    """The run whose rollouts the control clones: ``cfg.control_teacher`` once it has finished with a policy
    (None before), else :func:`best_rl_run`."""
    if not cfg.control_teacher:
        return best_rl_run(cfg, specs)
    names = [s.name for s in specs if s.method == "rl"]
    if cfg.control_teacher not in names:
        raise ConfigError(
            f"control_teacher {cfg.control_teacher!r} is not an RL run of this sweep: name one of {names}"
        )
    run_dir = cfg.run_root / cfg.control_teacher
    return run_dir if run_is_done(run_dir) and (run_dir / "policy" / "config.json").is_file() else None
