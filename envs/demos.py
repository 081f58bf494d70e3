"""Expert demonstrations: generate them with ManiSkill's own tools, store them, load them canonically.

Two sources, chosen by the task's ``demo_source`` in the registry:

* ``motion_planning``: ManiSkill's motion-planning solutions
  (:mod:`mani_skill.examples.motionplanning.panda.solutions`), recorded exactly as ManiSkill's
  ``motionplanning/panda/run.py`` does (``pd_joint_pos`` control, :class:`RecordEpisode`), then
  converted by ManiSkill's replay tool (:mod:`mani_skill.trajectory.replay_trajectory`) to the target
  control mode (default ``pd_ee_delta_pose``) and the ``state_dict`` observation mode. A plan that the
  solver gives up on (returns -1 or raises) or whose last step is not a success is dropped and counted
  as a failed plan; a plan whose converted replay does not end in success is dropped and counted as a
  failed conversion. Seeds are tried in order (``seed``, ``seed + 1``, ...) until enough demos are
  kept, up to ``2 * num_episodes + 10`` attempts per call.
* ``rl_expert`` (no planner exists): :func:`train_rl_expert` trains a state-based stable-baselines3
  PPO expert directly in the target control mode, then rolls it out (deterministic actions) under
  :class:`RecordEpisode`. With ``keep="all"`` (the default) EVERY rollout is kept with its per-step
  and final ``success`` flag, because an expert trained on this CPU budget is weak and keeping only
  successes could leave nothing; filter with ``load_demos(..., successful_only=True)``. With
  ``keep="success"`` only successful rollouts are kept (up to the same attempt cap).

Layout, under ``out_dir/<TaskName>/<control_mode>/``::

    trajectory.state_dict.<control_mode>.physx_cpu.h5    ManiSkill's trajectory format (traj_<i> groups)
    trajectory.state_dict.<control_mode>.physx_cpu.json  ManiSkill's episode metadata (seeds, success, ...)
    index.json                                           vla-razor's summary (:class:`DemoIndex`), written last
    expert/ppo.zip, expert/expert.json                   the RL expert (rl_expert tasks only)

The trajectory files are assembled in a private staging directory and renamed into place, and
``index.json`` is written atomically after them, so the index is the completeness marker.

Episode length vs the task horizon: motion-planned demos are often LONGER than ManiSkill's default
horizons (PickCube's 20 demos take 49-91 steps against ManiSkill's 50; PlaceSphere's reach 282;
conversion to end-effector control can add steps too). They are KEPT whole and not truncated: cutting a demo at
the horizon would drop the part that reaches success. The index stores every episode's length,
length statistics and ``num_longer_than_horizon``, so the training and evaluation code can choose a
horizon from data (or filter demos by length). RL-expert rollouts are at most the horizon by
construction.

Re-running with the same arguments reuses what exists: when ``index.json`` matches the request
(task, control mode, observation mode, source, base seed, ManiSkill version, and for RL experts the
training budget and keep policy), its files are intact and it holds at least ``num_episodes`` demos,
nothing is generated (a larger existing set is returned whole). When it matches but holds fewer,
ONLY the missing demos are generated, from the next untried seed, and merged into the existing files.
Anything that does not match is regenerated from scratch.

Loading (:func:`load_demos`) gives per episode canonical observations (:func:`canonicalize`) with
``T + 1`` entries (the observation before every action plus the final one; ``obs[k][t]`` is what
``actions[t]`` was taken from) and canonical actions ``[T, 7]``: the end-effector delta pose and
gripper. Tasks whose robot has no gripper (PushT's stick, 6-D actions) get a zero appended as the
gripper entry, which :func:`to_task_action` drops again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import math
import os
import shutil
import statistics
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Literal

import gymnasium as gym
import numpy as np

from vla_razor.atomic import write_json
from vla_razor.errors import DemoError

from .observations import ACTION_DIM, canonicalize
from .registry import TaskSpec, get_task

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
# Control modes whose action is the canonical layout: EE delta position + axis-angle rotation + gripper.
CANONICAL_CONTROL_MODES = ("pd_ee_delta_pose", "pd_ee_target_delta_pose")

KeepPolicy = Literal["all", "success"]


class DemoFileError(DemoError):
    """A demonstration file is missing, incomplete or unreadable; the message says how to fix it."""


class DemoGenerationError(DemoError):
    """Demonstrations cannot be generated for this request (e.g. no planner for the task)."""


# ------------------------------------------------------------------------------------------------
# Data types
# ------------------------------------------------------------------------------------------------
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


# ------------------------------------------------------------------------------------------------
# Paths and small helpers
# ------------------------------------------------------------------------------------------------
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
    from .maniskill import import_maniskill

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
    """Silence the progress bars and prints of one of ManiSkill's tools (``module`` did ``from tqdm import tqdm``).

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


# ------------------------------------------------------------------------------------------------
# Reuse
# ------------------------------------------------------------------------------------------------
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


# ------------------------------------------------------------------------------------------------
# Generation
# ------------------------------------------------------------------------------------------------
@dataclass
class _Round:
    """What one generation round produced (in the staging directory)."""

    attempted: list[int] = field(default_factory=list)
    failed_plans: list[int] = field(default_factory=list)
    failed_conversion: list[int] = field(default_factory=list)
    failed_rollouts: list[int] = field(default_factory=list)
    h5: Path | None = None


def generate_demos(
    task: str,
    num_episodes: int,
    out_dir: str | Path = DEFAULT_OUT,
    control_mode: str = DEFAULT_CONTROL_MODE,
    seed: int = 0,
    progress: bool = True,
    rl_timesteps: int = DEFAULT_RL_TIMESTEPS,
    keep: KeepPolicy | None = None,
) -> DemoIndex:
    """Generate (or reuse) ``num_episodes`` expert demos of ``task``; returns the written index.

    ``rl_timesteps`` and ``keep`` only matter for ``rl_expert`` tasks (``keep`` defaults to "all" there;
    motion-planned demos are always successes).
    """
    spec = get_task(task)
    if num_episodes < 1:
        raise ValueError(f"num_episodes must be at least 1, got {num_episodes}")
    if spec.demo_source == "motion_planning":
        if keep == "all":
            raise ValueError("keep='all' is for rl_expert tasks; motion-planned demos are always successful")
        keep = "success"
        _solver(spec)  # fail before touching the disk when there is no planner
    else:
        keep = keep or "all"
    directory = demo_dir(spec, out_dir, control_mode)
    wanted = DemoIndex(
        task=spec.name,
        env_id=spec.env_id,
        control_mode=control_mode,
        obs_mode=OBS_MODE,
        source=spec.demo_source,
        base_seed=seed,
        trajectory_file=trajectory_name(control_mode),
        mani_skill_version=_mani_skill_version(),
        max_episode_steps=spec.max_episode_steps,
        next_seed=seed,
        keep=keep,
        expert={"total_timesteps": rl_timesteps} if spec.demo_source == "rl_expert" else None,
        path=directory,
    )
    index = _existing_index(directory, wanted)
    if index is not None and index.num_kept >= num_episodes:
        index.reused = True
        if index.max_episode_steps != spec.max_episode_steps:
            # The registry horizon changed: planned demos do not depend on it, only the statistics do.
            index.max_episode_steps = spec.max_episode_steps
            _update_stats(index)
            write_json(directory / INDEX_NAME, index.to_json())
        return index
    if index is None:
        index = wanted
        # A stale set (other seed, version, ...) must not be merged with the new one. The index goes
        # first: without it the directory reads as "generation did not finish", never as stale demos.
        (directory / INDEX_NAME).unlink(missing_ok=True)
        for suffix in (".h5", ".json"):
            index.trajectory_path.with_suffix(suffix).unlink(missing_ok=True)
    index.num_requested = num_episodes

    expert_path = None
    if spec.demo_source == "rl_expert":
        expert_path = train_rl_expert(
            spec.name, rl_timesteps, out_dir, control_mode, seed=seed, progress=progress
        )
        index.expert = json.loads((expert_path.parent / "expert.json").read_text())

    directory.mkdir(parents=True, exist_ok=True)
    max_attempts = 2 * num_episodes + 10
    attempts = 0
    start = time.perf_counter()
    while index.num_kept < num_episodes and attempts < max_attempts:
        staging = Path(tempfile.mkdtemp(dir=directory, prefix=".staging-"))
        try:
            seeds = range(index.next_seed, index.next_seed + max_attempts - attempts)
            need = num_episodes - index.num_kept
            if spec.demo_source == "motion_planning":
                rnd = _motion_planning_round(spec, seeds, need, control_mode, staging, progress)
            else:
                rnd = _rl_round(spec, expert_path, seeds, need, control_mode, keep, staging, progress)
            attempts += len(rnd.attempted)
            _merge_round(index, rnd, staging)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        index.seconds_total += time.perf_counter() - start
        start = time.perf_counter()
        _update_stats(index)
        write_json(directory / INDEX_NAME, index.to_json())
        if not rnd.attempted:
            break
    if index.num_kept < num_episodes:
        warnings.warn(
            f"{spec.name}: kept {index.num_kept} of {num_episodes} requested demos after {attempts} attempts "
            f"({index.num_failed_plans} failed plans, {index.num_failed_conversion} failed conversions, "
            f"{index.num_failed_rollouts} failed rollouts); re-run to try further seeds",
            stacklevel=2,
        )
    return index


def _merge_round(index: DemoIndex, rnd: _Round, staging: Path) -> None:
    """Merge the round's episodes after the existing ones and move the result into place."""
    from mani_skill.trajectory.merge_trajectory import merge_trajectories

    index.num_attempted += len(rnd.attempted)
    index.next_seed = max(rnd.attempted, default=index.next_seed - 1) + 1
    index.failed_plan_seeds += rnd.failed_plans
    index.failed_conversion_seeds += rnd.failed_conversion
    index.failed_rollout_seeds += rnd.failed_rollouts
    if rnd.h5 is None or not _episode_seeds(rnd.h5.with_suffix(".json")):
        return
    final = index.trajectory_path
    sources = [final, rnd.h5] if final.exists() else [rnd.h5]
    merged = staging / final.name
    merge_trajectories(str(merged), [str(s) for s in sources])  # renumbers traj_0..traj_{n-1}
    # The .h5 first: a crash between the two renames leaves an index/json disagreement that
    # _files_intact detects (and the index is only rewritten after both).
    os.replace(merged, final)
    os.replace(merged.with_suffix(".json"), final.with_suffix(".json"))


def _update_stats(index: DemoIndex) -> None:
    """Recompute the index's counts and statistics from the trajectory metadata on disk."""
    episodes = []
    json_path = index.trajectory_path.with_suffix(".json")
    if json_path.exists():
        episodes = json.loads(json_path.read_text())["episodes"]
    index.seeds = [int(ep["episode_seed"]) for ep in episodes]
    index.episode_lengths = [int(ep["elapsed_steps"]) for ep in episodes]
    index.num_kept = len(episodes)
    index.num_kept_successful = sum(bool(ep.get("success", False)) for ep in episodes)
    index.num_failed_plans = len(index.failed_plan_seeds)
    index.num_failed_conversion = len(index.failed_conversion_seeds)
    index.num_failed_rollouts = len(index.failed_rollout_seeds)
    index.length_stats = length_stats(index.episode_lengths)
    index.num_longer_than_horizon = sum(n > index.max_episode_steps for n in index.episode_lengths)
    attempted = max(index.num_attempted, 1)
    successes = (
        index.num_attempted - index.num_failed_plans - index.num_failed_conversion - index.num_failed_rollouts
    )
    index.success_rate = successes / attempted
    if index.source == "motion_planning":
        planned = index.num_attempted - index.num_failed_plans
        index.plan_success_rate = planned / attempted
        index.conversion_success_rate = (planned - index.num_failed_conversion) / planned if planned else None
    index.seconds_per_demo = index.seconds_total / index.num_kept if index.num_kept else math.nan


# -- motion planning -----------------------------------------------------------------------------
def _solver(spec: TaskSpec):
    from mani_skill.examples.motionplanning.panda.run import MP_SOLUTIONS

    if spec.env_id not in MP_SOLUTIONS:
        raise DemoGenerationError(
            f"ManiSkill has no motion-planning solution for {spec.env_id} (it has: {', '.join(sorted(MP_SOLUTIONS))})"
        )
    return MP_SOLUTIONS[spec.env_id]


def _motion_planning_round(
    spec: TaskSpec, seeds: range, need: int, control_mode: str, staging: Path, progress: bool
) -> _Round:
    rnd = _Round()
    plans = _plan(spec, seeds, need, staging, progress, rnd)
    if plans is None:
        return rnd
    converted = _convert(plans, control_mode, progress, spec.name)
    planned = _episode_seeds(plans.with_suffix(".json"))
    kept = set(_episode_seeds(converted.with_suffix(".json")))
    rnd.failed_conversion = [s for s in planned if s not in kept]
    rnd.h5 = converted
    return rnd


def _plan(spec: TaskSpec, seeds: range, need: int, staging: Path, progress: bool, rnd: _Round) -> Path | None:
    """Run ManiSkill's planner on successive seeds until ``need`` successful plans; record them in pd_joint_pos."""
    from mani_skill.utils.wrappers.record import RecordEpisode

    from vla_razor.progress import progress as progress_bar

    solve = _solver(spec)
    # As ManiSkill's run.py: joint-position control (what the planner outputs), no observations
    # (the replay records them), no rewards.
    env = RecordEpisode(
        _make_env(spec, "none", "pd_joint_pos"),
        output_dir=str(staging),
        trajectory_name="plans",
        save_video=False,
        record_reward=False,
        save_on_reset=False,
        source_type="motionplanning",
        source_desc="official motion planning solution from ManiSkill contributors",
    )
    kept = 0
    bar = progress_bar(total=need, desc=f"{spec.name} plans", unit="demo", disable=not progress, leave=False)
    try:
        for seed in seeds:
            rnd.attempted.append(seed)
            try:
                result = solve(env, seed=seed, debug=False, vis=False)
            except Exception as err:  # noqa: BLE001  (mplib raises on unreachable poses; run.py counts these too)
                bar.write(f"{spec.name} seed {seed}: planner error: {err}")
                result = -1
            ok = result != -1 and bool(result[-1]["success"].item())
            env.flush_trajectory(save=ok)
            if ok:
                kept += 1
                bar.update(1)
            else:
                rnd.failed_plans.append(seed)
            bar.set_postfix(failed=len(rnd.failed_plans))
            if kept == need:
                break
    finally:
        bar.close()
        env.close()
    return staging / "plans.h5" if kept else None


def _convert(plans: Path, control_mode: str, progress: bool, task: str) -> Path:
    """ManiSkill's replay tool: pd_joint_pos plans -> ``control_mode`` with state_dict observations."""
    from mani_skill.trajectory import replay_trajectory

    from vla_razor.progress import is_terminal

    args = replay_trajectory.Args(
        traj_path=str(plans),
        sim_backend=SIM_BACKEND,
        obs_mode=OBS_MODE,
        target_control_mode=control_mode,
        save_traj=True,
        # Start from the recorded first state (not just the seed), as ManiSkill recommends for conversion.
        use_first_env_state=True,
        # Drop replays that do not end in success; keep demos longer than the horizon (see module doc).
        allow_failure=False,
        discard_timeout=False,
        reward_mode=REWARD_MODE,
        record_rewards=True,
        num_envs=1,  # >1 forks worker processes of this one (SAPIEN is loaded): not safe in-process
    )
    if progress:
        print(f"{task}: converting plans to {control_mode} with ManiSkill's replay tool")
    with _quiet_tqdm(replay_trajectory, progress and is_terminal()):
        replay_trajectory.main(args)
    out = plans.with_name(f"plans.{OBS_MODE}.{control_mode}.{SIM_BACKEND}.h5")
    if not out.with_suffix(".json").exists():
        raise DemoGenerationError(f"ManiSkill's replay tool wrote no {out.with_suffix('.json')}")
    return out


# -- RL expert -----------------------------------------------------------------------------------
def _ppo_settings(total_timesteps: int) -> dict[str, Any]:
    """PPO settings after ManiSkill's own PPO baseline (short discount, 3x256 MLP, small initial std),
    with the rollout length shrunk for tiny (smoke) budgets so PPO still updates."""
    n_steps = int(min(2048, max(64, total_timesteps)))
    return dict(
        n_steps=n_steps,
        batch_size=min(256, n_steps),
        n_epochs=8,
        gamma=0.8,
        gae_lambda=0.9,
        learning_rate=3e-4,
        ent_coef=0.0,
        clip_range=0.2,
        target_kl=0.1,
        policy_kwargs=dict(net_arch=[256, 256, 256], log_std_init=-0.5),
    )


def train_rl_expert(
    task: str,
    total_timesteps: int,
    out_dir: str | Path = DEFAULT_OUT,
    control_mode: str = DEFAULT_CONTROL_MODE,
    seed: int = 0,
    progress: bool = True,
) -> Path:
    """Train (or reuse) a state-based PPO expert of ``task`` in ``control_mode``; returns ``expert/ppo.zip``.

    The env: ``obs_mode="state"`` (ManiSkill's flattened ``state_dict``), ``normalized_dense`` reward,
    the task's horizon, wrapped by ManiSkill's :class:`CPUGymWrapper` (numpy, unbatched) for SB3.
    """
    from mani_skill.utils.wrappers.gymnasium import CPUGymWrapper
    from stable_baselines3 import PPO
    from stable_baselines3.common.monitor import Monitor

    spec = get_task(task)
    expert_dir = demo_dir(spec, out_dir, control_mode) / "expert"
    model_path, meta_path = expert_dir / "ppo.zip", expert_dir / "expert.json"
    wanted = {
        "task": spec.name,
        "control_mode": control_mode,
        "total_timesteps": int(total_timesteps),
        "seed": seed,
        "algo": "stable-baselines3 PPO",
        "obs_mode": "state",
        "reward_mode": REWARD_MODE,
        "mani_skill_version": _mani_skill_version(),
    }
    if model_path.exists() and meta_path.exists():
        with contextlib.suppress(json.JSONDecodeError, OSError):
            meta = json.loads(meta_path.read_text())
            if all(meta.get(k) == v for k, v in wanted.items()):
                return model_path

    env = _SuccessLog(CPUGymWrapper(_make_env(spec, "state", control_mode, REWARD_MODE, horizon=True)))
    start = time.perf_counter()
    try:
        model = PPO(
            "MlpPolicy", Monitor(env), seed=seed, verbose=0, device="cpu", **_ppo_settings(total_timesteps)
        )
        model.learn(total_timesteps=int(total_timesteps), progress_bar=progress and _has_rich())
    finally:
        env.close()
    expert_dir.mkdir(parents=True, exist_ok=True)
    # SB3 writes the zip itself: save beside and rename, so a crash never leaves half a model.
    tmp = expert_dir / ".ppo.tmp.zip"
    model.save(str(tmp))
    os.replace(tmp, model_path)
    recent = env.successes[-100:]
    write_json(
        meta_path,
        {
            **wanted,
            "train_seconds": time.perf_counter() - start,
            "train_episodes": len(env.successes),
            "train_success_rate_last_100": sum(recent) / len(recent) if recent else None,
            "ppo": {k: v for k, v in _ppo_settings(total_timesteps).items() if k != "policy_kwargs"},
        },
    )
    return model_path


def _has_rich() -> bool:
    """SB3's progress bar needs tqdm and rich; skip the bar rather than fail without rich."""
    try:
        import rich  # noqa: F401
    except ImportError:
        return False
    return True


class _SuccessLog(gym.Wrapper):
    """Remembers ManiSkill's final ``success`` flag of every training episode (SB3's Monitor drops it)."""

    def __init__(self, env):
        super().__init__(env)
        self.successes: list[bool] = []

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        if terminated or truncated:
            self.successes.append(bool(info.get("success", False)))
        return obs, reward, terminated, truncated, info


def _rl_round(
    spec: TaskSpec,
    expert_path: Path,
    seeds: range,
    need: int,
    control_mode: str,
    keep: KeepPolicy,
    staging: Path,
    progress: bool,
) -> _Round:
    """Roll the expert out (deterministic) on successive seeds, recording state_dict observations."""
    import torch
    from mani_skill.utils import common
    from mani_skill.utils.wrappers.record import RecordEpisode
    from stable_baselines3 import PPO

    from vla_razor.progress import progress as progress_bar

    rnd = _Round()
    model = PPO.load(str(expert_path), device="cpu")
    env = RecordEpisode(
        _make_env(spec, OBS_MODE, control_mode, REWARD_MODE, horizon=True),
        output_dir=str(staging),
        trajectory_name="rollouts",
        save_video=False,
        record_reward=True,
        save_on_reset=False,
        source_type="rl",
        source_desc=f"vla-razor PPO state expert ({expert_path})",
    )
    kept = 0
    bar = progress_bar(
        total=need, desc=f"{spec.name} expert rollouts", unit="demo", disable=not progress, leave=False
    )
    try:
        for seed in seeds:
            rnd.attempted.append(seed)
            obs, _ = env.reset(seed=seed)
            while True:
                # The expert was trained on obs_mode="state", which is exactly the flattened state_dict.
                flat = common.flatten_state_dict(obs, use_torch=True).cpu().numpy()
                action, _ = model.predict(flat, deterministic=True)
                obs, _, terminated, truncated, info = env.step(torch.as_tensor(action, dtype=torch.float32))
                if bool(terminated.any()) or bool(truncated.any()):
                    break
            success = bool(info["success"].any())
            save = success or keep == "all"
            env.flush_trajectory(save=save)
            if not success:
                rnd.failed_rollouts.append(seed)
            if save:
                kept += 1
                bar.update(1)
            bar.set_postfix(failed=len(rnd.failed_rollouts))
            if kept == need:
                break
    finally:
        bar.close()
        env.close()
    rnd.h5 = staging / "rollouts.h5" if kept else None
    return rnd


# ------------------------------------------------------------------------------------------------
# Loading
# ------------------------------------------------------------------------------------------------
def _resolve(path: str | Path) -> tuple[Path, str | None, str]:
    """(h5 path, task name from the index if any, control mode) for a demo directory or .h5 file."""
    path = Path(path)
    if path.suffix == ".h5":
        control_mode = path.parent.name
        task = path.parent.parent.name
        if not path.exists():
            raise DemoFileError(f"demo file {path} is missing; {_regen_hint(task, control_mode)}")
        return path, None, control_mode
    control_mode, task = path.name, path.parent.name
    if not path.is_dir():
        raise DemoFileError(f"demo directory {path} does not exist; {_regen_hint(task, control_mode)}")
    hint = _regen_hint(task, control_mode)
    data = _read_json(path / INDEX_NAME, "demo index", f"the generation did not finish; {hint}")
    try:
        index = DemoIndex.from_json(data, path)
    except TypeError as err:
        raise DemoFileError(
            f"demo index {path / INDEX_NAME} is not a vla-razor demo index ({err}); {hint}"
        ) from err
    return index.trajectory_path, index.task, index.control_mode


def _read_group(group) -> dict[str, Any]:
    """A nested h5 group as nested dicts of numpy arrays, in the file's (= ManiSkill's) key order."""
    import h5py

    return {k: _read_group(v) if isinstance(v, h5py.Group) else v[()] for k, v in group.items()}


def canonical_actions(raw: np.ndarray) -> np.ndarray:
    """Task actions ``[T, A]`` (A <= 7) -> canonical ``[T, 7]``; a missing gripper entry is zero."""
    if raw.shape[-1] > ACTION_DIM:
        raise ValueError(f"actions have {raw.shape[-1]} entries, more than the canonical {ACTION_DIM}")
    return np.pad(raw.astype(np.float32), [(0, 0)] * (raw.ndim - 1) + [(0, ACTION_DIM - raw.shape[-1])])


def load_demos(path: str | Path, successful_only: bool = False) -> list[DemoEpisode]:
    """Load the demos of one task/control mode (its directory, or its ``.h5``) in the canonical layout."""
    import h5py

    h5_path, task_name, control_mode = _resolve(path)
    json_path = h5_path.with_suffix(".json")
    hint = _regen_hint(task_name or h5_path.parent.parent.name, control_mode)
    meta = _read_json(json_path, "demo metadata", hint)
    try:
        spec = get_task(task_name or meta["env_info"]["env_id"])
        episodes_meta = meta["episodes"]
    except (KeyError, TypeError) as err:
        raise DemoFileError(f"demo metadata {json_path} lacks {err}; {hint}") from err
    stored_mode = episodes_meta[0]["control_mode"] if episodes_meta else control_mode
    if stored_mode not in CANONICAL_CONTROL_MODES:
        raise DemoFileError(
            f"{h5_path} holds {stored_mode} actions; canonical actions are end-effector delta poses: "
            f"generate demos with --control-mode {DEFAULT_CONTROL_MODE}"
        )
    episodes = []
    try:
        with h5py.File(h5_path, "r") as f:
            for ep in episodes_meta:
                if successful_only and not ep.get("success", False):
                    continue
                episodes.append(
                    _load_episode(f[f"traj_{ep['episode_id']}"], ep, spec, stored_mode, h5_path, hint)
                )
    except (OSError, KeyError, ValueError) as err:  # h5py reports a corrupt file as OSError
        raise DemoFileError(
            f"demo file {h5_path} is unreadable ({type(err).__name__}: {err}); {hint}"
        ) from err
    return episodes


def _load_episode(
    group, ep: dict, spec: TaskSpec, control_mode: str, h5_path: Path, hint: str
) -> DemoEpisode:
    raw = group["actions"][()]
    obs = canonicalize(_read_group(group["obs"]), spec)
    steps = raw.shape[0]
    if obs["proprio"].shape[0] != steps + 1 or steps != int(ep["elapsed_steps"]):
        raise DemoFileError(
            f"demo file {h5_path} episode {ep['episode_id']} is inconsistent ({steps} actions, "
            f"{obs['proprio'].shape[0]} observations, {ep['elapsed_steps']} steps in the metadata); {hint}"
        )
    per_step = group["success"][()].astype(bool) if "success" in group else None
    return DemoEpisode(
        task=spec.name,
        episode_id=int(ep["episode_id"]),
        seed=int(ep["episode_seed"]),
        control_mode=control_mode,
        obs=obs,
        actions=canonical_actions(raw),
        raw_actions=raw,
        success=bool(ep.get("success", per_step[-1] if per_step is not None and steps else False)),
        success_per_step=per_step,
        rewards=group["rewards"][()] if "rewards" in group else None,
    )


# ------------------------------------------------------------------------------------------------
# CLI
# ------------------------------------------------------------------------------------------------
def summary_line(index: DemoIndex) -> str:
    stats = index.length_stats
    lengths = (
        f", length {stats['min']}-{stats['max']} (median {stats['median']:g}, horizon {index.max_episode_steps})"
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
