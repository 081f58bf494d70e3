"""Demonstrations from ManiSkill's motion-planning solutions, converted to the canonical control mode."""

from __future__ import annotations

from pathlib import Path

import numpy

from vla_razor.progress import is_terminal
from vla_razor.progress import progress as progress_bar

from ..registry import TaskSpec
from .index import (
    OBS_MODE,
    REWARD_MODE,
    SIM_BACKEND,
    DemoGenerationError,
    _episode_seeds,
    _make_env,
    _quiet_tqdm,
    _Round,
)


def require_motion_planning() -> None:
    """Raise :class:`DemoGenerationError` where ManiSkill's motion planner cannot run: mplib 0.1.1
    segfaults under numpy 2 (it would kill the process, not raise), e.g. in ``.venv-lerobot``."""
    if int(numpy.__version__.split(".")[0]) >= 2:
        raise DemoGenerationError(
            f"motion-planning demonstrations need numpy<2 (mplib crashes on numpy {numpy.__version__}); "
            "generate them in the main environment (`.venv/bin/vla-razor demos --task ...`): both "
            "environments read the demos it writes"
        )


def _solver(spec: TaskSpec):
    from mani_skill.examples.motionplanning.panda.run import MP_SOLUTIONS

    if spec.env_id not in MP_SOLUTIONS:
        raise DemoGenerationError(
            f"ManiSkill has no motion-planning solution for {spec.env_id} (it has: "
            f"{', '.join(sorted(MP_SOLUTIONS))})"
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
    """Run ManiSkill's planner on successive seeds until ``need`` successful plans; record them in
    pd_joint_pos."""
    from mani_skill.utils.wrappers.record import RecordEpisode

    require_motion_planning()
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
