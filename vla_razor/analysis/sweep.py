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

import itertools
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from vla_razor.atomic import write_json
from vla_razor.progress import progress

from ..config import NonNegativeInt, PositiveInt


@dataclass
class RazorConfig:
    name: str = "razor"
    """Sweep directory name under ``runs_dir``."""
    track: str = "robot"
    """robot (chain policies on a ManiSkill suite; configs/finetune_<algo>.yaml) or llm (token policies on
    the arithmetic tasks; configs/llm_finetune.yaml, rl_algo grpo)."""
    runs_dir: str = "runs"
    """Where run directories go."""
    base: str = "runs/base/policy"
    """The base policy every run starts from (a ``save_pretrained`` directory)."""
    suite: str = "default"
    """Task suite (robot track): fine-tune on its new task, measure retention on its prior tasks."""
    rl_algo: str = ""
    """RL algorithm of the sweep: ppo or grpo (default: ppo on the robot track, grpo on the llm track)."""
    rl_grid: dict[str, list[Any]] = field(default_factory=lambda: {"lr": [1e-6, 3e-6, 1e-5]})
    """RL config fields to sweep (the cartesian product of the lists; dotted keys reach nested fields)."""
    rl_extra_grids: list[dict[str, list[Any]]] = field(default_factory=list)
    """Further RL grids, each a cartesian product of its own, whose runs join rl_grid's (e.g. KL-penalty
    settings at one learning rate, without multiplying every learning rate by them)."""
    rl_extra_seeds: list[int] = field(default_factory=list)
    """The seeds the extra grids run with (empty: every seed of ``seeds``)."""
    sft_grid: dict[str, list[Any]] = field(default_factory=lambda: {"lr": [1e-5, 3e-5, 1e-4]})
    """SFT config fields to sweep."""
    seeds: list[int] = field(default_factory=lambda: [0])
    """Every grid point runs once per seed."""
    common: dict[str, Any] = field(default_factory=dict)
    """Overrides of every run (e.g. eval_every, retention_episodes, final_eval_episodes)."""
    rl: dict[str, Any] = field(default_factory=dict)
    """Overrides of every RL run (e.g. total_env_steps)."""
    sft: dict[str, Any] = field(default_factory=dict)
    """Overrides of every SFT run (e.g. iterations)."""
    control_grid: dict[str, list[Any]] = field(default_factory=lambda: {"lr": [1e-4]})
    """The "SFT on RL data" control runs (SFT overrides plus these; ``seed`` in it sets their seeds, else the
    first of ``seeds``); empty: no control."""
    workers: PositiveInt = 1
    """Runs at a time (Ray tasks when > 1). On a 2-core machine keep 1: runs starve each other."""
    ray_address: str = ""
    """Join this Ray cluster instead of starting a local one."""
    state_episodes: PositiveInt = 16
    """Base-policy episodes of the new task whose states every KL and feature change is measured on."""
    state_seed: NonNegativeInt = 20_000
    """First seed of those episodes (disjoint from training and evaluation seeds)."""
    kl_states: PositiveInt = 512
    """States (subsampled from those episodes) per KL estimate."""
    archive: str = ""
    """A folder that keeps what the analysis needs of every finished run (``runs/``: evaluations, metrics,
    measured predictors, final videos, kilobytes per run, and the best RL run's final policy) and the
    report's machine-readable files and figures, small enough to commit. The sweep restores from it the
    runs its run directory lacks, so it continues in a fresh checkout or on another machine. Empty: none."""
    report_videos: bool = True
    """Embed the per-task evaluation videos of the best RL and SFT runs in the HTML report."""

    def __post_init__(self):
        if self.track not in ("robot", "llm"):
            raise ValueError(f"track must be robot or llm, got {self.track!r}")
        self.rl_algo = self.rl_algo or ("grpo" if self.track == "llm" else "ppo")
        if self.rl_algo not in ("ppo", "grpo") or (self.track == "llm" and self.rl_algo != "grpo"):
            raise ValueError(f"rl_algo must be ppo or grpo (grpo on the llm track), got {self.rl_algo!r}")
        grids = [("rl_grid", self.rl_grid), ("sft_grid", self.sft_grid), ("control_grid", self.control_grid)]
        grids += [(f"rl_extra_grids[{i}]", g) for i, g in enumerate(self.rl_extra_grids)]
        for name, grid in grids:
            if not isinstance(grid, dict):
                raise ValueError(
                    f"{name} must be a mapping of config fields to lists of values, got {grid!r}"
                )
            for key, values in grid.items():
                if not isinstance(values, list) or not values:
                    raise ValueError(f"{name}.{key} must be a non-empty list of values, got {values!r}")
        if not self.seeds or self.workers < 1 or self.state_episodes < 1 or self.kl_states < 2:
            raise ValueError("need seeds (non-empty), workers >= 1, state_episodes >= 1 and kl_states >= 2")

    def make_track(self):
        """What measures this sweep's policies: :class:`~.points.RobotTrack` or the LLM track's."""
        if self.track == "llm":
            from vla_razor.llm.razor import LLMTrack

            return LLMTrack(self.base, self.run_root, self.state_episodes, self.state_seed, self.kl_states)
        from vla_razor.envs import load_suite

        from .points import RobotTrack

        return RobotTrack(
            self.base, load_suite(self.suite), self.state_episodes, self.state_seed, self.kl_states
        )

    @property
    def path(self) -> Path:
        return Path(self.runs_dir) / self.name

    @property
    def run_root(self) -> Path:
        return self.path / "runs"

    @property
    def archive_runs(self) -> Path:
        """The archived runs (``<archive>/runs/<name>``); the report's files go to ``<archive>`` itself."""
        return Path(self.archive) / "runs"


SMOKE = dict(
    name="razor-smoke",
    suite="smoke",
    base="runs/base-smoke/policy",
    rl_grid={"lr": [1e-5, 1e-4]},
    rl_extra_grids=[],
    rl_extra_seeds=[],
    control_grid={"lr": [1e-3]},
    archive="",
    sft_grid={"lr": [1e-4, 1e-3]},
    seeds=[0],
    state_episodes=2,
    kl_states=16,
    report_videos=True,
    common={
        "eval_every": 1,
        "eval_episodes": 2,
        "retention_episodes": 2,
        "final_eval_episodes": 2,
        "video_episodes": 1,
        "kl_states": 8,
    },
    rl={
        "total_env_steps": 128,
        "num_envs": 2,
        "num_decisions": 4,
        "update_epochs": 1,
        "num_minibatches": 2,
        "critic_warmup_iterations": 1,
    },
    sft={"iterations": 2, "steps_per_iteration": 2, "batch_size": 8, "demos": 1},
)


LLM_SMOKE = dict(
    name="razor-llm-smoke",
    base="runs/llm-base-smoke/policy",
    rl_grid={"lr": [1e-4, 1e-3]},
    rl_extra_grids=[],
    rl_extra_seeds=[],
    archive="",
    sft_grid={"lr": [1e-4, 1e-3]},
    seeds=[0],
    state_episodes=1,
    kl_states=8,
    control_grid={"lr": [1e-3]},
    rl={},
    sft={},
    common={
        "iterations": 2,
        "num_prompts": 2,
        "group_size": 2,
        "kl_states": 4,
        "eval_every": 1,
        "eval_episodes": 4,
        "final_eval_episodes": 4,
        "checkpoint_every": 1,
    },
)


@dataclass(frozen=True)
class RunSpec:
    """One run of the sweep: which method, algorithm and config overrides."""

    name: str
    method: str
    """rl, sft or sft_on_rl (the control)."""
    track: str
    """robot or llm."""
    algo: str
    overrides: tuple[str, ...]
    grid: dict = field(default_factory=dict, hash=False)
    """The swept values of this run (for the report's labels)."""

    def as_dict(self) -> dict:
        return {**asdict(self), "overrides": list(self.overrides)}


def _override(key: str, value: Any) -> str:
    return f"{key}={json.dumps(value)}"  # JSON is YAML: the config parser reads it back exactly


def _label(key: str, value: Any) -> str:
    text = f"{key.split('.')[-1]}{value:g}" if isinstance(value, float) else f"{key.split('.')[-1]}{value}"
    return re.sub(r"[^A-Za-z0-9_.+-]", "", text)


def _grid(grid: dict[str, list]) -> list[dict]:
    keys = sorted(grid)
    return [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]


def plan_runs(cfg: RazorConfig) -> list[RunSpec]:
    """The RL and SFT runs of the sweep (the control comes later, from the RL results), seed by seed: every
    setting's first seed runs before any setting's second, so a sweep stopped part-way has seen every setting."""
    main = [("rl", cfg.rl_algo, point, cfg.rl) for point in _grid(cfg.rl_grid)]
    main += [("sft", "sft", point, cfg.sft) for point in _grid(cfg.sft_grid)]
    extra = [("rl", cfg.rl_algo, point, cfg.rl) for grid in cfg.rl_extra_grids for point in _grid(grid)]
    extra_seeds = cfg.rl_extra_seeds or cfg.seeds
    specs = []
    for seed in dict.fromkeys([*cfg.seeds, *extra_seeds]):
        groups = (main if seed in cfg.seeds else []) + (extra if seed in extra_seeds else [])
        for method, algo, point, overrides_of_method in groups:
            specs.append(_spec(cfg, method, algo, algo, {**point, "seed": seed}, overrides_of_method))
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ValueError("two runs of the sweep got the same name: make the grid values distinct")
    return specs


def _spec(cfg: RazorConfig, method: str, algo: str, prefix: str, values: dict, extra: dict) -> RunSpec:
    """One run: named by ``prefix`` and its swept ``values``, configured by the sweep's common overrides,
    then ``extra`` (the method's), then the values, then where it starts from and writes to."""
    name = "-".join([prefix] + [_label(k, v) for k, v in values.items()])
    overrides = {
        **cfg.common,
        **extra,
        **values,
        "base": cfg.base,
        "runs_dir": str(cfg.run_root),
        "name": name,
    }
    if cfg.track == "robot":
        overrides["suite"] = cfg.suite
    return RunSpec(
        name, method, cfg.track, algo, tuple(_override(k, v) for k, v in overrides.items()), values
    )


def plan_control(cfg: RazorConfig, rl_policy: str) -> list[RunSpec]:
    """The SFT-on-RL-data runs: SFT on the successful rollouts of ``rl_policy``."""
    extra = {**cfg.sft, "rl_policy": rl_policy, "data": "rl"}
    # the control grid may set its own seeds
    return [
        _spec(cfg, "sft_on_rl", "sft", "sft_on_rl", {"seed": cfg.seeds[0], **point}, extra)
        for point in (_grid(cfg.control_grid) if cfg.control_grid else [])
    ]


def run_is_done(run_dir: Path) -> bool:
    return (run_dir / "eval" / "final.json").is_file()


def run_command(spec: dict, threads: int = 0) -> list[str]:
    """The command line of one run: ``vla-razor [llm] finetune --algo A --resume <overrides>``."""
    import sys

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


def execute_run(spec: dict, threads: int = 0) -> dict:
    """Run (or resume) one fine-tuning run in its own process; returns its status. A Ray task when the sweep
    fans out.

    A process per run keeps the sweep alive whatever a run does: a run that diverges (exit 3), is given bad
    input (exit 2), raises, or dies (a signal, an abort in the simulator, the kernel's OOM killer) is
    marked ``diverged`` or ``failed`` with its reason and the last lines it printed, and the sweep goes on;
    a re-run of the sweep retries every run without a final evaluation."""
    import collections
    import signal
    import subprocess
    import sys
    import threading

    from vla_razor.errors import EXIT_BAD_INPUT, EXIT_DIVERGED

    command = run_command(spec, threads)
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
        code = process.wait()
    except BaseException:  # Ctrl-C or the sweep stopped: the run stops too (it resumes next time)
        process.terminate()
        process.wait(timeout=30)
        raise
    reader.join(timeout=10)
    status = {"name": spec["name"], "exit_code": code}
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


class Archiver:
    """Keeps the sweep's archive (``cfg.archive``) up to date as runs finish: measures each finished run's
    predictors (the analysis's, cached in the run), copies what the analysis needs (:mod:`.archive`), and
    keeps the final policy of the best RL run so far (the control's teacher) and no other."""

    def __init__(self, cfg: RazorConfig, specs: list[RunSpec]):
        self.cfg, self.specs, self._track = cfg, specs, None

    def __call__(self, spec: RunSpec, status: dict) -> None:
        if not self.cfg.archive or status.get("status") != "done":
            return
        from .archive import archive_run
        from .points import measure_run

        if self._track is None:
            self._track = self.cfg.make_track()
        run_dir = self.cfg.run_root / spec.name
        measure_run(run_dir, self._track)
        archive_run(run_dir, self.cfg.archive_runs)
        if spec.method == "rl":
            self.keep_best_policy()

    def archive_all(self) -> None:
        """Every finished run of the plan (their predictors measured by the report), then the best RL policy."""
        if not self.cfg.archive:
            return
        from .archive import archive_run

        for spec in self.specs:
            if spec.method != "rl" and run_is_done(self.cfg.run_root / spec.name):
                archive_run(self.cfg.run_root / spec.name, self.cfg.archive_runs)
        self.keep_best_policy()

    def keep_best_policy(self) -> None:
        if not self.cfg.archive:
            return
        from .archive import archive_run

        best = best_rl_run(self.cfg, self.specs)
        for spec in self.specs:
            run_dir = self.cfg.run_root / spec.name
            if spec.method == "rl" and run_is_done(run_dir):
                archive_run(
                    run_dir,
                    self.cfg.archive_runs,
                    with_policy=run_dir == best and (run_dir / "policy").is_dir(),
                )


def run_specs(cfg: RazorConfig, specs: list[RunSpec], on_done=None) -> list[dict]:
    """Run the specs not finished yet (Ray tasks when ``workers > 1`` or a cluster is named); ``on_done(spec,
    status)`` is called as each run ends."""
    todo = [s for s in specs if not run_is_done(cfg.run_root / s.name)]
    statuses = [{"name": s.name, "status": "done"} for s in specs if s not in todo]
    on_done = on_done or (lambda spec, status: None)
    if not todo:
        return statuses
    if cfg.workers <= 1 and not cfg.ray_address:
        for spec in progress(todo, desc="sweep", unit="run"):
            statuses.append(execute_run(spec.as_dict()))
            on_done(spec, statuses[-1])
        return statuses

    import ray

    started_here = not ray.is_initialized()
    if started_here:
        kwargs = (
            {"address": cfg.ray_address}
            if cfg.ray_address
            else {"num_cpus": cfg.workers, "include_dashboard": False}
        )
        ray.init(log_to_driver=False, configure_logging=False, **kwargs)
    try:
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
    finally:
        if started_here:
            ray.shutdown()
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


def run_sweep(cfg: RazorConfig) -> list[RunSpec]:
    """Every run of the sweep, the control last; writes ``plan.json`` (what each run is) and ``status.json``."""
    from vla_razor.atomic import atomic_write
    from vla_razor.config import dump_yaml

    # No config guard here, unlike a run directory: growing a sweep's grid or seeds is how it is
    # extended, and every run keeps its own guarded config.yaml.
    specs = plan_runs(cfg)
    with atomic_write(cfg.path / "config.yaml") as f:
        f.write(dump_yaml(cfg))
    write_json(cfg.path / "plan.json", {"runs": [s.as_dict() for s in specs]})
    archiver = Archiver(cfg, specs)
    if cfg.archive:
        from .archive import restore_runs

        restored = restore_runs(cfg.archive_runs, cfg.run_root)
        if restored:
            tqdm.write(f"restored {len(restored)} finished runs from the archive {cfg.archive}")
    statuses = run_specs(cfg, specs, archiver)
    archiver.keep_best_policy()
    best = best_rl_run(cfg, specs)
    if best is not None and cfg.control_grid:
        control = plan_control(cfg, str(best / "policy"))
        specs += control
        write_json(
            cfg.path / "plan.json", {"runs": [s.as_dict() for s in specs], "control_teacher": str(best)}
        )
        statuses += run_specs(cfg, control, archiver)
    elif cfg.control_grid:
        write_json(
            cfg.path / "plan.json",
            {
                "runs": [s.as_dict() for s in specs],
                "control_skipped": "no RL run succeeded on the new task in its final evaluation: there is no RL data to clone",
            },
        )
    write_json(cfg.path / "status.json", {"runs": statuses})
    for status in statuses:
        if status["status"] != "done":
            tqdm.write(f"run {status['name']} {status['status']}: {status.get('error', '')}")
    return specs


def razor(cfg: RazorConfig, report_only: bool = False) -> Path:
    """The sweep (unless ``report_only``: the run directories and the archive as they are), then its report;
    returns the report's HTML page."""
    from .report import write_report

    if not (Path(cfg.base) / "config.json").is_file():
        command = "vla-razor llm pretrain" if cfg.track == "llm" else "vla-razor pretrain"
        raise FileNotFoundError(
            f"base policy {cfg.base} not found: run `{command}` first "
            f"(or `{command} --smoke` for the --smoke sweep), or pass base=<policy dir>"
        )
    if not report_only:
        run_sweep(cfg)
    elif cfg.archive:
        from .archive import restore_runs

        restore_runs(cfg.archive_runs, cfg.run_root)
        plan, archived_plan = cfg.path / "plan.json", Path(cfg.archive) / "plan.json"
        if not plan.is_file() and archived_plan.is_file():
            write_json(plan, json.loads(archived_plan.read_text()))
    report = write_report(cfg)
    if cfg.archive:
        from .archive import archive_report

        plan = json.loads((cfg.path / "plan.json").read_text())
        Archiver(
            cfg, [RunSpec(**{**r, "overrides": tuple(r["overrides"])}) for r in plan["runs"]]
        ).archive_all()
        archive_report(report.parent, Path(cfg.archive))
        write_json(Path(cfg.archive) / "plan.json", plan)
    return report
