"""Canonical observations: one layout for every task, so ONE multi-task policy can act in all of them.

ManiSkill's ``state_dict`` observation differs per task (PickCube has ``obj_pose`` and ``goal_pos``,
StackCube two cube poses, PushT a 7-joint arm). vla-razor maps it to fixed-width arrays:

=============  ==========  ================================================================
key            shape       content
=============  ==========  ================================================================
``proprio``    [25]        robot qpos padded to 9, qvel padded to 9, TCP pose (xyz + wxyz quaternion)
``state``      [32]        the task's other ``extra`` entries, flattened in ManiSkill's order, zero-padded
``state_mask`` [32]        1.0 where ``state`` holds a real value, 0.0 for padding
``task_id``    []          the task's index in the registry (its instruction is ``TASKS[...]``)
``rgb``        [H, W, 3]   optional: uint8 image from the base camera (``obs_mode="rgb"``)
=============  ==========  ================================================================

Every function here takes batched inputs (leading dim N, numpy or torch) and keeps the input's array type.
The canonical action is 7-D (end-effector delta pose + gripper); tasks with a 6-D action (PushT's
stick has no gripper) ignore the last entry.
"""

from __future__ import annotations

import numpy as np
import torch

from .registry import TaskSpec, task_index

QPOS_DIM = 9
QVEL_DIM = 9
TCP_POSE_DIM = 7
PROPRIO_DIM = QPOS_DIM + QVEL_DIM + TCP_POSE_DIM
STATE_DIM = 32
ACTION_DIM = 7


def _as_tensor(x) -> torch.Tensor:
    t = torch.as_tensor(x)
    return t.float() if t.dtype in (torch.float64, torch.bool, torch.float16) else t


def _pad(x: torch.Tensor, width: int, what: str) -> torch.Tensor:
    if x.shape[-1] > width:
        raise ValueError(f"{what} has {x.shape[-1]} entries, more than the canonical {width}")
    return torch.nn.functional.pad(x.float(), (0, width - x.shape[-1]))


def task_state(extra: dict) -> torch.Tensor:
    """The task's state entries (everything in ``extra`` but the TCP pose) flattened, ``[N, S]``; ``S`` is 0
    where the observation mode holds none (PushCube's goal is state-only, absent under ``rgb``: its state
    mask is then all zeros and the camera shows the goal)."""
    parts = []
    n = _as_tensor(extra["tcp_pose"]).shape[0]
    for key, value in extra.items():
        if key == "tcp_pose":
            continue
        v = _as_tensor(value)
        parts.append(v.reshape(v.shape[0], -1).float())
    if not parts:
        return torch.zeros(n, 0, device=_as_tensor(extra["tcp_pose"]).device)
    return torch.cat(parts, dim=-1)


def canonicalize(obs: dict, task: TaskSpec, rgb_key: str = "base_camera"):
    """Map a batched ManiSkill ``state_dict`` (or ``rgb``) observation to the canonical layout.

    Returns numpy arrays when the inputs are numpy, torch tensors (on the input's device) otherwise.
    """
    try:
        agent, extra = obs["agent"], obs["extra"]
        qpos, qvel, tcp = _as_tensor(agent["qpos"]), _as_tensor(agent["qvel"]), _as_tensor(extra["tcp_pose"])
    except KeyError as err:
        raise ValueError(
            f"not a ManiSkill state_dict observation of {task.name} (missing {err}); make the env with "
            "obs_mode='state_dict' or 'rgb'"
        ) from None
    is_numpy = isinstance(agent["qpos"], np.ndarray)
    state = task_state(extra)
    n = qpos.shape[0]
    out = {
        "proprio": torch.cat(
            [_pad(qpos, QPOS_DIM, "qpos"), _pad(qvel, QVEL_DIM, "qvel"), tcp.float()], dim=-1
        ),
        "state": _pad(state, STATE_DIM, f"{task.name} task state"),
        "state_mask": _pad(torch.ones_like(state), STATE_DIM, "mask"),
        "task_id": torch.full((n,), task_index(task.name), dtype=torch.int64, device=qpos.device),
    }
    if "sensor_data" in obs:
        out["rgb"] = _as_tensor(obs["sensor_data"][rgb_key]["rgb"])
    if is_numpy:
        return {k: v.cpu().numpy() for k, v in out.items()}
    return out


def to_task_action(action, task_action_dim: int):
    """Canonical 7-D actions ``[N, 7]`` -> the task's own action width (drops unused trailing entries)."""
    if action.shape[-1] != ACTION_DIM:
        raise ValueError(
            f"actions must have {ACTION_DIM} entries (canonical layout), got shape {tuple(action.shape)}"
        )
    return action[..., :task_action_dim]


class FlatStateLayout:
    """Where each canonical entry sits in ManiSkill's flat ``state`` vector, for one task.

    ManiSkill's ``obs_mode="state"`` is its ``state_dict`` flattened in dict order. Reading the
    canonical arrays out of it with precomputed gather indices costs two ``np.take`` calls per step,
    instead of rebuilding tensors from a nested dict, and gives exactly what :func:`canonicalize`
    gives (checked by :meth:`from_state_dict` on the sample it is built from).
    """

    def __init__(
        self,
        task: TaskSpec,
        proprio_index: np.ndarray,
        state_index: np.ndarray,
        state_width: int,
        flat_width: int,
    ):
        self.task = task
        self.flat_width = flat_width
        # Index ``flat_width`` points at an appended 0.0: the padding.
        self._proprio_index = proprio_index
        self._state_index = state_index
        self.state_mask = np.zeros(STATE_DIM, np.float32)
        self.state_mask[:state_width] = 1.0
        self.task_id = task_index(task.name)
        self._padded = np.zeros(flat_width + 1, np.float32)  # last slot stays 0.0: the padding

    @classmethod
    def from_state_dict(cls, state_dict: dict, task: TaskSpec) -> "FlatStateLayout":
        widths = []  # (group, key, width) in ManiSkill's flattening order
        for group in ("agent", "extra"):
            for key, value in state_dict[group].items():
                v = torch.as_tensor(value)
                widths.append((group, key, int(v.reshape(v.shape[0], -1).shape[1]) if v.dim() > 1 else 1))
        offsets, pos = {}, 0
        for group, key, width in widths:
            offsets[(group, key)] = np.arange(pos, pos + width)
            pos += width
        pad = pos

        def padded(index: np.ndarray, width: int, what: str) -> np.ndarray:
            if len(index) > width:
                raise ValueError(f"{what} has {len(index)} entries, more than the canonical {width}")
            return np.concatenate([index, np.full(width - len(index), pad)])

        proprio = np.concatenate(
            [
                padded(offsets[("agent", "qpos")], QPOS_DIM, "qpos"),
                padded(offsets[("agent", "qvel")], QVEL_DIM, "qvel"),
                offsets[("extra", "tcp_pose")],
            ]
        )
        state_parts = [
            offsets[(group, key)] for group, key, _ in widths if group == "extra" and key != "tcp_pose"
        ]
        state_raw = np.concatenate(state_parts)
        layout = cls(
            task, proprio, padded(state_raw, STATE_DIM, f"{task.name} task state"), len(state_raw), pos
        )
        # The fast path must agree with the reference mapping.
        flat = torch.cat(
            [
                torch.as_tensor(v).reshape(torch.as_tensor(v).shape[0], -1).float()
                for g in ("agent", "extra")
                for v in state_dict[g].values()
            ],
            dim=-1,
        )[0].numpy()
        fast, ref = layout(flat), canonicalize(state_dict, task)
        for key in ("proprio", "state", "state_mask"):
            if not np.allclose(fast[key], torch.as_tensor(ref[key])[0].cpu().numpy()):
                raise AssertionError(
                    f"flat-state layout of {task.name} disagrees with canonicalize on {key!r}"
                )
        return layout

    def __call__(self, flat_state: np.ndarray) -> dict[str, np.ndarray]:
        """Canonical observation of one sub-env from its flat state vector ``[flat_width]``."""
        if flat_state.shape != (self.flat_width,):
            raise ValueError(
                f"{self.task.name}: flat state must have shape ({self.flat_width},), got {flat_state.shape}"
            )
        padded = self._padded
        padded[: self.flat_width] = flat_state
        return {
            "proprio": padded.take(self._proprio_index),
            "state": padded.take(self._state_index),
            "state_mask": self.state_mask.copy(),
            "task_id": self.task_id,
        }


def random_observation(batch: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Synthetic canonical observations (standard-normal proprio/state, full mask, random task ids):
    for policy tests and benchmarks that do not need the simulator."""
    from .registry import TASKS

    g = torch.Generator().manual_seed(seed)
    return {
        "proprio": torch.randn(batch, PROPRIO_DIM, generator=g),
        "state": torch.randn(batch, STATE_DIM, generator=g),
        "state_mask": torch.ones(batch, STATE_DIM),
        "task_id": torch.randint(0, len(TASKS), (batch,), generator=g),
    }
