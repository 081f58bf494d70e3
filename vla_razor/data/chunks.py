"""Demonstrations as (observation, action chunk) pairs for behaviour cloning.

Every step t of every episode gives one sample: the canonical observation at t and the H actions
``a[t : t + H]``. Chunks that run past the episode's end are padded with "hold still" actions
(zero end-effector motion, the last gripper command), which is what the robot should do once the
task is done.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

OBS_KEYS = ("proprio", "state", "state_mask", "task_id")


def hold_padding(actions: np.ndarray, length: int) -> np.ndarray:
    """``length`` actions that keep the arm still with the last gripper command."""
    pad = np.zeros((length, actions.shape[-1]), actions.dtype)
    pad[:, -1] = actions[-1, -1]
    return pad


@dataclass
class ChunkDataset:
    obs: dict[str, torch.Tensor]
    """Canonical observations, each ``[N, ...]``."""
    actions: torch.Tensor
    """Action chunks ``[N, H, A]``."""
    task_counts: dict[str, int]
    """Episodes per task."""

    @classmethod
    def from_episodes(cls, episodes, chunk_size: int) -> "ChunkDataset":
        obs = {k: [] for k in OBS_KEYS}
        chunks, counts = [], {}
        for ep in episodes:
            T = ep.length
            padded = np.concatenate([ep.actions, hold_padding(ep.actions, chunk_size - 1)])
            index = np.arange(T)[:, None] + np.arange(chunk_size)[None]
            chunks.append(padded[index])
            for k in OBS_KEYS:
                obs[k].append(ep.obs[k][:T])  # the observation each chunk starts from
            counts[ep.task] = counts.get(ep.task, 0) + 1
        if not chunks:
            raise ValueError("no demonstration episodes to build a dataset from")
        tensors = {k: torch.as_tensor(np.concatenate(v)) for k, v in obs.items()}
        tensors["task_id"] = tensors["task_id"].long()
        for k in ("proprio", "state", "state_mask"):
            tensors[k] = tensors[k].float()
        return cls(tensors, torch.as_tensor(np.concatenate(chunks)).float(), counts)

    def __len__(self) -> int:
        return self.actions.shape[0]

    def batch(self, index: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        return {k: v[index] for k, v in self.obs.items()}, self.actions[index]
