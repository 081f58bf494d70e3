"""One ManiSkill3 task as a plain Gymnasium env with canonical observations (CPU simulation).

This is the sub-environment of the CPU vector env: ManiSkill's ``physx_cpu`` backend with one
scene, its batched torch outputs turned into unbatched numpy values, observations mapped to the
canonical layout of :mod:`vla_razor.envs.observations`, and ``info["success"]`` always present.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
from typing import Any, Literal

import gymnasium as gym
import numpy as np
import torch

from .observations import ACTION_DIM, PROPRIO_DIM, STATE_DIM, FlatStateLayout, canonicalize
from .registry import TASKS, get_task, task_index
from .vulkan import require_vulkan

ObsMode = Literal["state", "rgb"]
RewardMode = Literal["normalized_dense", "dense", "sparse"]
DEFAULT_CONTROL_MODE = "pd_ee_delta_pose"


def import_maniskill() -> None:
    """Import ManiSkill (registering its tasks) with its routine warnings silenced.

    ManiSkill logs a warning per env for the CUDA render-device fallback and for actors without an
    initial pose: noise on a CPU machine that buries progress bars. Set VLA_RAZOR_MANISKILL_WARNINGS=1
    to keep them.
    """
    import mani_skill.envs  # noqa: F401
    from mani_skill.utils.logging_utils import logger

    if os.environ.get("VLA_RAZOR_MANISKILL_WARNINGS") != "1":
        logger.setLevel(logging.ERROR)


def observation_space(obs_mode: ObsMode = "state", image_size: int = 64) -> gym.spaces.Dict:
    """The canonical observation space, shared by every task."""
    spaces = {
        "proprio": gym.spaces.Box(-np.inf, np.inf, (PROPRIO_DIM,), np.float32),
        "state": gym.spaces.Box(-np.inf, np.inf, (STATE_DIM,), np.float32),
        "state_mask": gym.spaces.Box(0.0, 1.0, (STATE_DIM,), np.float32),
        "task_id": gym.spaces.Discrete(len(TASKS)),
    }
    if obs_mode == "rgb":
        spaces["rgb"] = gym.spaces.Box(0, 255, (image_size, image_size, 3), np.uint8)
    return gym.spaces.Dict(spaces)


def maniskill_kwargs(
    obs_mode: ObsMode,
    control_mode: str,
    reward_mode: RewardMode,
    image_size: int,
    render_mode: str | None,
    render_size: int,
) -> dict[str, Any]:
    """Keyword arguments for ``gym.make(<ManiSkill id>, ...)`` shared by the CPU and GPU backends."""
    if obs_mode not in ("state", "rgb"):
        raise ValueError(f"obs_mode must be 'state' or 'rgb', got {obs_mode!r}")
    if reward_mode not in ("normalized_dense", "dense", "sparse"):
        raise ValueError(f"reward_mode must be 'normalized_dense', 'dense' or 'sparse', got {reward_mode!r}")
    kwargs: dict[str, Any] = dict(
        obs_mode="state" if obs_mode == "state" else "rgb",
        control_mode=control_mode,
        reward_mode=reward_mode,
        render_mode=render_mode,
    )
    if obs_mode == "rgb":
        kwargs["sensor_configs"] = dict(width=image_size, height=image_size)
    if render_mode is not None:
        kwargs["human_render_camera_configs"] = dict(width=render_size, height=render_size)
    return kwargs


def _item(x) -> Any:
    """The value of a one-element tensor/array (ManiSkill returns batch-1 tensors on CPU)."""
    return x.item() if isinstance(x, (torch.Tensor, np.ndarray)) else x


_freeze_depth = 0
_FROZEN_AT_IMPORT = gc.get_freeze_count()


@contextlib.contextmanager
def frozen_python_heap():
    """ManiSkill calls ``gc.collect()`` whenever an env is built or closed (to release GPU memory). With
    torch and transformers loaded that walks some 350k objects, about 0.3 s a call, half the time of a
    short evaluation. Frozen objects are skipped by the collector, so it only scans what is new; the
    heap is unfrozen afterwards (nothing is kept from collection for good). No-op when nested, or when
    someone else froze the heap: Python 3.12 starts with a few hundred objects already frozen, so that is
    "more frozen than when this module was imported", not "any"."""
    global _freeze_depth
    if _freeze_depth or gc.get_freeze_count() > _FROZEN_AT_IMPORT:
        yield
        return
    _freeze_depth += 1
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
        _freeze_depth -= 1


class ManiSkillTaskEnv(gym.Env):
    """A single ManiSkill task (CPU physics) with canonical observations and 7-D canonical actions.

    Actions are normalized to [-1, 1] per dimension; ManiSkill's controller clips them to its bounds.
    """

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(
        self,
        task: str,
        obs_mode: ObsMode = "state",
        control_mode: str = DEFAULT_CONTROL_MODE,
        reward_mode: RewardMode = "normalized_dense",
        image_size: int = 64,
        render_mode: str | None = None,
        render_size: int = 256,
        max_episode_steps: int | None = None,
    ):
        import_maniskill()
        self.task = get_task(task)
        require_vulkan()
        self.max_episode_steps = max_episode_steps or self.task.max_episode_steps
        with frozen_python_heap():
            self._env = gym.make(
                self.task.env_id,
                num_envs=1,
                sim_backend="physx_cpu",
                render_backend="cpu",
                max_episode_steps=self.max_episode_steps,
                **maniskill_kwargs(obs_mode, control_mode, reward_mode, image_size, render_mode, render_size),
            )
        self.render_mode = render_mode
        self.obs_mode = obs_mode
        self._layout = None
        if obs_mode == "state":
            # Learn where the canonical entries sit in the flat state vector, once.
            base = self._env.unwrapped
            self._env.reset(seed=0)
            self._layout = FlatStateLayout.from_state_dict(
                base._get_obs_state_dict(base.get_info()), self.task
            )
        self.observation_space = observation_space(obs_mode, image_size)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (ACTION_DIM,), np.float32)
        self._task_id = task_index(self.task.name)
        self._task_action_dim = int(self._env.action_space.shape[-1])

    @property
    def instruction(self) -> str:
        return self.task.instruction

    @property
    def control_freq(self) -> int:
        """Actions per simulated second (ManiSkill's ``control_freq``): a dataset's fps."""
        return int(self._env.unwrapped.control_freq)

    def _obs(self, raw) -> dict[str, np.ndarray]:
        if self._layout is not None:
            return self._layout(raw[0].numpy())
        canonical = canonicalize(raw, self.task)
        out = {}
        for key, value in canonical.items():
            arr = value[0].cpu().numpy()
            out[key] = arr if key in ("rgb", "task_id") else arr.astype(np.float32, copy=False)
        out["task_id"] = int(out["task_id"])
        return out

    def _info(self, raw_info: dict) -> dict[str, Any]:
        info = {"success": bool(_item(raw_info.get("success", False))), "task_id": self._task_id}
        if "fail" in raw_info:
            info["fail"] = bool(_item(raw_info["fail"]))
        return info

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        raw, raw_info = self._env.reset(seed=seed, options=options)
        return self._obs(raw), self._info(raw_info)

    def step(self, action):
        action = np.asarray(action, dtype=np.float32)
        if action.shape != (ACTION_DIM,):
            raise ValueError(f"{self.task.name}: action must have shape ({ACTION_DIM},), got {action.shape}")
        # ManiSkill's controllers clip normalized actions to their bounds themselves.
        task_action = action[: self._task_action_dim]
        raw, reward, terminated, truncated, raw_info = self._env.step(torch.from_numpy(task_action)[None])
        return (
            self._obs(raw),
            float(_item(reward)),
            bool(_item(terminated)),
            bool(_item(truncated)),
            self._info(raw_info),
        )

    def render(self):
        frame = self._env.render()
        if isinstance(frame, torch.Tensor):
            frame = frame.cpu().numpy()
        return frame[0] if frame is not None and frame.ndim == 4 else frame

    def close(self):
        with frozen_python_heap():
            self._env.close()
