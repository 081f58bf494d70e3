"""The demo index (what a demo folder holds and whether it can be reused), the data types and the helpers
every demo module shares."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Literal

import gymnasium as gym
import numpy as np

from vla_razor.errors import DemoError

from ..registry import TaskSpec, get_task

DEFAULT_OUT = "runs/demos"
DEFAULT_CONTROL_MODE = "pd_ee_delta_pose"
OBS_MODE = "state_dict"
SIM_BACKEND = "physx_cpu"
REWARD_MODE = "normalized_dense"
INDEX_NAME = "index.json"
INDEX_FORMAT = 1
SMOKE_EPISODES = 2
SMOKE_RL_TIMESTEPS = 256
DEFAULT_RL_TIMESTEPS = 200_000
CANONICAL_CONTROL_MODES = ("pd_ee_delta_pose", "pd_ee_target_delta_pose", "mocap_delta_xyz_gripper")
"""ManiSkill's end-effector delta poses, and Meta-World's only mode (its hand position delta and gripper)."""
KeepPolicy = Literal["all", "success"]


class DemoFileError(DemoError):
    """A demonstration file is missing, incomplete or unreadable; the message says how to fix it."""


class DemoGenerationError(DemoError):
    """Demonstrations cannot be generated for this request (e.g. no planner for the task)."""


@dataclass
class DemoIndex:
    """The summary written to ``index.json`` beside the trajectory files."""

    task: str
    env_id: str
    control_mode: str
    obs_mode: str
    source: str
    base_seed: int
    trajectory_file: str
    mani_skill_version: str
    max_episode_steps: int
    num_requested: int = 0
    num_kept: int = 0
    num_attempted: int = 0
    num_failed_plans: int = 0
    """Motion planning: the solver gave up, raised, or its last step was not a success."""
    num_failed_conversion: int = 0
    """Motion planning: the replay in the target control mode did not end in success."""
    num_failed_rollouts: int = 0
    """RL expert: rollouts that did not end in success (kept when ``keep == "all"``)."""
    num_kept_successful: int = 0
    success_rate: float = 0.0
    """Successful episodes / attempted seeds, over the whole generation."""
    plan_success_rate: float | None = None
    conversion_success_rate: float | None = None
    episode_lengths: list[int] = field(default_factory=list)
    length_stats: dict[str, float] = field(default_factory=dict)
    num_longer_than_horizon: int = 0
    seeds: list[int] = field(default_factory=list)
    """Episode seed of every kept demo, in file order."""
    failed_plan_seeds: list[int] = field(default_factory=list)
    failed_conversion_seeds: list[int] = field(default_factory=list)
    failed_rollout_seeds: list[int] = field(default_factory=list)
    next_seed: int = 0
    seconds_total: float = 0.0
    """Wall time of planning + conversion (or expert rollouts), summed over top-ups; RL training
    time is in ``expert["train_seconds"]``."""
    seconds_per_demo: float = 0.0
    """``seconds_total / num_kept``."""
    keep: str = "success"
    expert: dict[str, Any] | None = None
    format: int = INDEX_FORMAT
    # Not persisted: where the index lives, and whether this call generated nothing.
    path: Path | None = field(default=None, metadata={"persist": False})
    reused: bool = field(default=False, metadata={"persist": False})

    def to_json(self) -> dict[str, Any]:
        return {
            f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.metadata.get("persist", True)
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], path: Path) -> "DemoIndex":
        known = {f.name for f in dataclasses.fields(cls) if f.metadata.get("persist", True)}
        return cls(**{k: v for k, v in data.items() if k in known}, path=path)

    @property
    def trajectory_path(self) -> Path:
        assert self.path is not None
        return self.path / self.trajectory_file


@dataclass
class DemoEpisode:
    """One demonstration in the canonical layout."""

    task: str
    episode_id: int
    seed: int
    control_mode: str
    obs: dict[str, np.ndarray]
    """Canonical observations, each ``[T + 1, ...]``: ``obs[k][t]`` is the input of ``actions[t]``."""
    actions: np.ndarray
    """Canonical actions ``[T, 7]`` (6-D task actions are padded with a zero gripper entry)."""
    raw_actions: np.ndarray
    """The task's own actions ``[T, A]`` as stored by ManiSkill."""
    success: bool
    """ManiSkill's success flag after the last action."""
    success_per_step: np.ndarray | None
    """``[T]`` success flag after every action, when recorded."""
    rewards: np.ndarray | None
    """``[T]`` ``normalized_dense`` rewards, when recorded."""

    @property
    def length(self) -> int:
        return int(self.actions.shape[0])

    @property
    def instruction(self) -> str:
        return get_task(self.task).instruction


def demo_dir(
    task: str | TaskSpec, out_dir: str | Path = DEFAULT_OUT, control_mode: str = DEFAULT_CONTROL_MODE
) -> Path:
    spec = task if isinstance(task, TaskSpec) else get_task(task)
    return Path(out_dir) / spec.name / control_mode


def trajectory_name(control_mode: str) -> str:
    """ManiSkill's dataset naming: ``<name>.<obs_mode>.<control_mode>.<sim_backend>.h5``."""
    return f"trajectory.{OBS_MODE}.{control_mode}.{SIM_BACKEND}.h5"


def length_stats(lengths: list[int]) -> dict[str, float]:
    if not lengths:
        return {}
    ordered = sorted(lengths)
    return {
        "min": ordered[0],
        "median": float(statistics.median(ordered)),
        "p95": float(np.percentile(ordered, 95)),
        "max": ordered[-1],
        "mean": float(np.mean(ordered)),
    }


def _regen_hint(task: str, control_mode: str) -> str:
    mode = "" if control_mode == DEFAULT_CONTROL_MODE else f" --control-mode {control_mode}"
    return f"re-run `vla-razor demos --task {task}{mode} --episodes N` to regenerate it"


def _mani_skill_version() -> str:
    import mani_skill

    return mani_skill.__version__


def _make_env(
    task: TaskSpec, obs_mode: str, control_mode: str, reward_mode: str | None = None, horizon: bool = False
):
    """One CPU-simulated ManiSkill env (batched API, ``num_envs=1``)."""
    from ..maniskill import import_maniskill

    import_maniskill()
    kwargs: dict[str, Any] = dict(
        obs_mode=obs_mode, control_mode=control_mode, sim_backend=SIM_BACKEND, render_backend="cpu"
    )
    if reward_mode is not None:
        kwargs["reward_mode"] = reward_mode
    if horizon:
        kwargs["max_episode_steps"] = task.max_episode_steps
    return gym.make(task.env_id, **kwargs)


@contextlib.contextmanager
def _quiet_tqdm(module, enabled: bool) -> Iterator[None]:
    """Silence the progress bars and prints of one of ManiSkill's tools (``module`` did
    ``from tqdm import tqdm``).

    tqdm reads ``TQDM_DISABLE`` only when it is imported, so the tool's ``tqdm`` name is swapped for
    a subclass that always disables itself (class methods such as ``tqdm.write`` keep working).
    """
    if enabled:
        yield
        return
    original = module.tqdm

    class Silent(original):
        def __init__(self, *args, **kwargs):
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)

    module.tqdm = Silent
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # and its "Replayed N episodes" print
            yield
    finally:
        module.tqdm = original


def _read_json(path: Path, what: str, hint: str) -> Any:
    if not path.exists():
        raise DemoFileError(f"{what} {path} is missing; {hint}")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as err:
        raise DemoFileError(f"{what} {path} is unreadable ({type(err).__name__}: {err}); {hint}") from err


def _episode_seeds(json_path: Path) -> list[int]:
    return [int(ep["episode_seed"]) for ep in json.loads(json_path.read_text())["episodes"]]


def _files_intact(index: DemoIndex) -> bool:
    """The trajectory files exist, agree with each other and with the index (cheap: no data read)."""
    import h5py

    h5_path = index.trajectory_path
    try:
        episodes = json.loads(h5_path.with_suffix(".json").read_text())["episodes"]
        with h5py.File(h5_path, "r") as f:
            groups = set(f.keys())
    except (OSError, KeyError, ValueError):
        return False
    seeds = [int(ep["episode_seed"]) for ep in episodes]
    return seeds == index.seeds and all(f"traj_{ep['episode_id']}" in groups for ep in episodes)


def _existing_index(directory: Path, wanted: DemoIndex) -> DemoIndex | None:
    """The index in ``directory`` if it describes the same request and its files are intact."""
    path = directory / INDEX_NAME
    if not path.exists():
        return None
    try:
        index = DemoIndex.from_json(json.loads(path.read_text()), directory)
    except (json.JSONDecodeError, TypeError, OSError):
        return None
    same = (
        "format",
        "task",
        "env_id",
        "control_mode",
        "obs_mode",
        "source",
        "base_seed",
        "trajectory_file",
        "mani_skill_version",
        "keep",
    )
    if any(getattr(index, k) != getattr(wanted, k) for k in same):
        return None
    if wanted.source == "rl_expert":
        # Rollouts depend on the training budget and are truncated at the horizon: both must match.
        if (index.expert or {}).get("total_timesteps") != wanted.expert.get("total_timesteps"):
            return None
        if index.max_episode_steps != wanted.max_episode_steps:
            return None
    return index if _files_intact(index) else None


@dataclass
class _Round:
    """What one generation round produced (in the staging directory)."""

    attempted: list[int] = field(default_factory=list)
    failed_plans: list[int] = field(default_factory=list)
    failed_conversion: list[int] = field(default_factory=list)
    failed_rollouts: list[int] = field(default_factory=list)
    h5: Path | None = None


def summary_line(index: DemoIndex) -> str:
    stats = index.length_stats
    lengths = (
        f", length {stats['min']}-{stats['max']} (median {stats['median']:g}, horizon "
        f"{index.max_episode_steps})"
        if stats
        else ""
    )
    failed = (
        f"{index.num_failed_plans} failed plans, {index.num_failed_conversion} failed conversions"
        if index.source == "motion_planning"
        else f"{index.num_failed_rollouts} unsuccessful rollouts"
    )
    kept_ok = "" if index.source == "motion_planning" else f" ({index.num_kept_successful} successful)"
    return (
        f"{index.task}: kept {index.num_kept}/{index.num_requested}{kept_ok}, {failed}, "
        f"{index.seconds_per_demo:.2f} s/demo{lengths} -> {index.path}{' (reused)' if index.reused else ''}"
    )
