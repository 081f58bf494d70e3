"""Demonstrations from an RL expert (SB3 PPO on the dense reward) for tasks without a motion planner."""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any

import gymnasium as gym

from vla_razor.atomic import write_json
from vla_razor.progress import progress as progress_bar

from ..registry import TaskSpec, get_task
from .index import (
    DEFAULT_CONTROL_MODE,
    DEFAULT_OUT,
    OBS_MODE,
    REWARD_MODE,
    KeepPolicy,
    _make_env,
    _mani_skill_version,
    _Round,
    demo_dir,
)


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
