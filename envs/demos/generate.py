"""``generate_demos``: a task's demos, reused when they exist, topped up, planned or from an RL expert."""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path

from vla_razor.atomic import write_json

from ..metaworld import CONTROL_MODE as METAWORLD_CONTROL_MODE
from ..metaworld import metaworld_version
from ..registry import get_task
from .index import (
    DEFAULT_CONTROL_MODE,
    DEFAULT_OUT,
    DEFAULT_RL_TIMESTEPS,
    INDEX_NAME,
    OBS_MODE,
    DemoIndex,
    KeepPolicy,
    _episode_seeds,
    _existing_index,
    _mani_skill_version,
    _Round,
    demo_dir,
    length_stats,
    trajectory_name,
)
from .planning import _motion_planning_round, _solver, require_motion_planning
from .rl_expert import _rl_round, train_rl_expert
from .scripted import _scripted_round


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
    if spec.world == "metaworld":
        control_mode = METAWORLD_CONTROL_MODE  # Meta-World has one; the default names ManiSkill's
        keep = "success"
    elif spec.demo_source == "motion_planning":
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
        mani_skill_version=metaworld_version() if spec.world == "metaworld" else _mani_skill_version(),
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
    if spec.demo_source == "motion_planning":
        require_motion_planning()  # numpy 2 (.venv-lerobot): reuse works, planning does not
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
            elif spec.demo_source == "scripted":
                rnd = _scripted_round(spec, seeds, need, staging, progress)
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
    from mani_skill.utils.logging_utils import logger

    logger.setLevel(max(logger.level, logging.WARNING))  # its INFO line per merged file

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
