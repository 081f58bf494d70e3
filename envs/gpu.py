"""ManiSkill's batched GPU simulation (``physx_cuda``) behind the same canonical vector interface.

All ``num_envs`` scenes live in one process on the GPU; observations, rewards and flags come back as
torch tensors on the GPU (no host copies). Only one task per GPU vector env: ManiSkill batches scenes
of the same task. Only importable work happens without CUDA; constructing it needs a CUDA device.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector.utils import batch_space

from .maniskill import (
    DEFAULT_CONTROL_MODE,
    ObsMode,
    RewardMode,
    import_maniskill,
    maniskill_kwargs,
    observation_space,
)
from .observations import ACTION_DIM, canonicalize, to_task_action
from .registry import TaskSpec
from .vulkan import require_vulkan


class ManiSkillGPUVectorEnv(gym.vector.VectorEnv):
    """``num_envs`` copies of one task in ManiSkill's GPU simulation, canonical observations.

    Autoreset follows Gymnasium's SAME_STEP mode like the CPU backend: when sub-envs finish, the
    returned observation is already the reset one and ``info["final_obs"]`` / ``info["final_info"]``
    (masked by ``info["_final_obs"]``) hold the last observation and info of the finished episode.

    With ``chunk_size > 1`` episodes ignore early terminations and run to the horizon (ManiSkill's
    ``ignore_terminations``), so every chunk boundary is aligned across sub-envs. When the horizon is not a
    multiple of the chunk size, the episode's last chunk is executed only up to the horizon, like the CPU
    backend's (``info["chunk_steps"]`` says how many of its actions ran). ``info["success_once"]`` reports
    success at any step of the episode.
    """

    metadata = {"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP}

    def __init__(
        self,
        task: TaskSpec,
        num_envs: int,
        obs_mode: ObsMode = "state",
        control_mode: str = DEFAULT_CONTROL_MODE,
        reward_mode: RewardMode = "normalized_dense",
        image_size: int = 64,
        chunk_size: int = 1,
        max_episode_steps: int | None = None,
        render_mode: str | None = None,
        render_size: int = 256,
        seed: int | None = None,
    ):
        if not torch.cuda.is_available():
            raise RuntimeError("the 'gpu' backend needs a CUDA device; use backend='cpu' on this machine")
        import_maniskill()
        from mani_skill.vector.wrappers.gymnasium import ManiSkillVectorEnv

        require_vulkan()
        self.task = task
        self._default_seed, self._reset_once = seed, False
        self.chunk_size = chunk_size
        horizon = max_episode_steps or task.max_episode_steps
        self.horizon, self._elapsed = horizon, 0
        kwargs = maniskill_kwargs(obs_mode, control_mode, reward_mode, image_size, render_mode, render_size)
        if obs_mode == "state":
            kwargs["obs_mode"] = "state_dict"  # batched tensors stay on the GPU; canonicalize them there
        raw = gym.make(
            task.env_id, num_envs=num_envs, sim_backend="physx_cuda", max_episode_steps=horizon, **kwargs
        )
        self._env = ManiSkillVectorEnv(
            raw, num_envs, auto_reset=True, ignore_terminations=chunk_size > 1, record_metrics=True
        )
        self._task_action_dim = int(raw.action_space.shape[-1])
        self.num_envs = num_envs
        self.device = self._env.device
        self.single_observation_space = observation_space(obs_mode, image_size)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        single_action = gym.spaces.Box(-1.0, 1.0, (ACTION_DIM,), np.float32)
        if chunk_size > 1:
            single_action = gym.spaces.Box(-1.0, 1.0, (chunk_size, ACTION_DIM), np.float32)
        self.single_action_space = single_action
        self.action_space = batch_space(single_action, num_envs)

    def _canonical(self, raw):
        return canonicalize(raw, self.task)

    def reset(self, *, seed=None, options=None):
        if seed is None and not self._reset_once:
            seed = self._default_seed
        self._reset_once = True
        self._elapsed = 0
        raw, info = self._env.reset(seed=seed, options=options)
        return self._canonical(raw), {"success": info.get("success")}

    def _step_once(self, actions: torch.Tensor):
        raw, reward, terminated, truncated, info = self._env.step(
            to_task_action(actions, self._task_action_dim)
        )
        # After an auto-reset ``info`` is the reset's; ManiSkill keeps the step's own info, for every
        # sub-env, in ``final_info``: success is the step just taken's, not the fresh reset's.
        step_info = info.get("final_info", info)
        episode = step_info.get("episode") or {}
        out = {"success": step_info.get("success"), "success_once": episode.get("success_once")}
        if "final_observation" in info:
            out["final_obs"] = self._canonical(info["final_observation"])
            out["_final_obs"] = info["_final_observation"]
            out["final_info"] = {"success": out["success"], "success_once": out["success_once"]}
        return self._canonical(raw), reward, terminated, truncated, out

    def step(self, actions):
        actions = torch.as_tensor(actions, dtype=torch.float32, device=self.device)
        if self.chunk_size == 1:
            return self._step_once(actions)
        # every sub-env's episode started together (terminations are ignored), so one count serves all
        steps = min(self.chunk_size, self.horizon - self._elapsed)
        total = torch.zeros(self.num_envs, device=self.device)
        for k in range(steps):
            obs, reward, terminated, truncated, info = self._step_once(actions[:, k])
            total += reward
        self._elapsed = 0 if bool((terminated | truncated).all()) else self._elapsed + steps
        info["chunk_steps"] = torch.full((self.num_envs,), steps, device=self.device)
        return obs, total, terminated, truncated, info

    def render(self):
        return self._env.render()

    def close(self):
        self._env.close()
