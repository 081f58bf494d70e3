"""Action chunking: one policy decision executes H environment actions."""

from __future__ import annotations

import gymnasium as gym
import numpy as np


class ActionChunkWrapper(gym.Wrapper):
    """Execute an action chunk ``[H, A]`` per ``step``.

    Rewards of the executed actions are summed. A termination or truncation inside the chunk stops it
    there: the remaining actions are dropped, and the returned observation is the one at the end of
    the episode. ``info["chunk_steps"]`` is the number of environment steps really taken (<= H),
    ``info["success"]`` the success flag of the last executed step and ``info["success_once"]``
    whether any executed step succeeded.
    """

    def __init__(self, env: gym.Env, chunk_size: int):
        super().__init__(env)
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        self.chunk_size = chunk_size
        low, high = env.action_space.low, env.action_space.high
        self.action_space = gym.spaces.Box(
            np.repeat(low[None], chunk_size, 0),
            np.repeat(high[None], chunk_size, 0),
            dtype=env.action_space.dtype,
        )

    def step(self, actions):
        actions = np.asarray(actions)
        if actions.shape != self.action_space.shape:
            raise ValueError(f"action chunk must have shape {self.action_space.shape}, got {actions.shape}")
        total_reward, success_once = 0.0, False
        for steps, action in enumerate(actions, start=1):
            obs, reward, terminated, truncated, info = self.env.step(action)
            total_reward += reward
            success_once |= bool(info.get("success", False))
            if terminated or truncated:
                break
        info = dict(info, chunk_steps=steps, success_once=success_once)
        return obs, total_reward, terminated, truncated, info
