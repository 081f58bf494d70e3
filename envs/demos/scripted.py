"""Demonstrations from Meta-World's scripted experts, recorded in ManiSkill's trajectory layout.

Each seed's episode runs in :class:`~vla_razor.envs.metaworld.MetaWorldTaskEnv` (the env training and
evaluation use, so a demo replays there exactly) with the expert reading Meta-World's raw observation. An
episode is kept when it ends in success within the task's horizon. The files follow ManiSkill's format
(``traj_<i>`` groups, a JSON of episodes with their seeds), so the store, top-ups and the merge are the
ones ManiSkill's demos use; ``obs`` holds the raw 39-number observations (``[T + 1, 39]``), ``actions``
Meta-World's 4-D actions.
"""

from __future__ import annotations

import warnings

import numpy as np

from vla_razor.atomic import write_json
from vla_razor.progress import progress as progress_bar

from ..metaworld import ACTION_WIDTH, CONTROL_MODE, MetaWorldTaskEnv, scripted_expert
from ..observations import ACTION_DIM
from ..registry import TaskSpec
from .index import _Round


def _scripted_round(spec: TaskSpec, seeds: range, need: int, staging, progress: bool) -> _Round:
    """Run the scripted expert on successive seeds until ``need`` successful episodes are recorded."""
    import h5py

    rnd = _Round()
    env = MetaWorldTaskEnv(spec.name)
    expert = scripted_expert(spec.name)
    path = staging / "rollouts.h5"
    episodes = []
    bar = progress_bar(
        total=need, desc=f"{spec.name} scripted expert", unit="demo", disable=not progress, leave=False
    )
    try:
        with h5py.File(path, "w") as f:
            for seed in seeds:
                rnd.attempted.append(seed)
                env.reset(seed=seed)
                raws, actions, rewards, successes = [env.raw_obs.copy()], [], [], []
                while True:
                    with warnings.catch_warnings():  # "constants may be too high": it clips, as we do
                        warnings.simplefilter("ignore")
                        action = np.clip(expert.get_action(env.raw_obs), -1.0, 1.0).astype(np.float32)
                    canonical = np.zeros(ACTION_DIM, np.float32)
                    canonical[:ACTION_WIDTH] = action
                    _, reward, terminated, truncated, info = env.step(canonical)
                    raws.append(env.raw_obs.copy())
                    actions.append(action)
                    rewards.append(reward)
                    successes.append(info["success"])
                    if terminated or truncated:
                        break
                if not successes[-1]:
                    rnd.failed_rollouts.append(seed)
                    continue
                group = f.create_group(f"traj_{len(episodes)}")
                group.create_dataset("obs", data=np.asarray(raws, np.float32))
                group.create_dataset("actions", data=np.asarray(actions, np.float32))
                group.create_dataset("rewards", data=np.asarray(rewards, np.float32))
                group.create_dataset("success", data=np.asarray(successes, bool))
                episodes.append(
                    {
                        "episode_id": len(episodes),
                        "episode_seed": seed,
                        "control_mode": CONTROL_MODE,
                        "elapsed_steps": len(actions),
                        "success": True,
                    }
                )
                bar.update(1)
                bar.set_postfix(failed=len(rnd.failed_rollouts))
                if len(episodes) == need:
                    break
    finally:
        bar.close()
        env.close()
    meta = {
        "env_info": {"env_id": spec.env_id, "max_episode_steps": spec.max_episode_steps},
        "source_type": "scripted",
        "source_desc": "Meta-World's scripted policy (metaworld.policies)",
        "episodes": episodes,
    }
    write_json(path.with_suffix(".json"), meta)
    rnd.h5 = path if episodes else None
    return rnd
