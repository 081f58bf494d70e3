"""Whether RL has anything to reinforce on a task: how a policy's sampled outcomes spread within each
initial state.

A policy-gradient update moves a policy toward what its own samples did better than expected. From one
initial state, if every sampled episode succeeds, or every one fails, success says nothing about which
samples to prefer: only states with mixed outcomes carry a learning signal (GRPO's advantage is zero
everywhere else, and PPO's critic soon learns the state's value). ``outcome_spread`` plays ``group_size``
sampled episodes from each of ``states`` seeded initial states and reports, per state, the fraction that
succeeded; ``mixed`` is the fraction of states with both outcomes and ``signal`` the mean within-state
variance ``p (1 - p)`` (at most 0.25). A base whose failures are decided by the initial state (``mixed``
near 0 where it fails) leaves sparse-reward RL nothing to find by sampling.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from vla_razor.evaluation import check_world, policy_observations

from .grpo import collect_groups


@dataclass
class OutcomeSpread:
    """Per-state success fractions of a policy's sampled episodes on one task."""

    task: str
    seed: int
    """The first state's reset seed (state ``s`` is ``seed + s``)."""
    group_size: int
    per_state: list[float]
    """Fraction of the ``group_size`` sampled episodes from each state that succeeded."""

    @classmethod
    def from_successes(cls, task: str, seed: int, successes: np.ndarray) -> OutcomeSpread:
        """From a ``[states, group_size]`` array of episode successes."""
        successes = np.asarray(successes, dtype=float)
        if successes.ndim != 2 or successes.shape[1] < 2:
            raise ValueError(f"successes must be [states, group_size >= 2], got shape {successes.shape}")
        return cls(task, seed, successes.shape[1], [float(p) for p in successes.mean(1)])

    @property
    def states(self) -> int:
        return len(self.per_state)

    @property
    def success(self) -> float:
        """Mean success over every sampled episode."""
        return float(np.mean(self.per_state))

    @property
    def mixed(self) -> float:
        """Fraction of states whose sampled episodes both succeeded and failed."""
        return float(np.mean([0 < p < 1 for p in self.per_state]))

    @property
    def always(self) -> float:
        """Fraction of states where every sampled episode succeeded."""
        return float(np.mean([p == 1 for p in self.per_state]))

    @property
    def never(self) -> float:
        """Fraction of states where no sampled episode succeeded."""
        return float(np.mean([p == 0 for p in self.per_state]))

    @property
    def signal(self) -> float:
        """Mean within-state variance of success, ``p (1 - p)``: 0 when the state decides every outcome."""
        p = np.asarray(self.per_state)
        return float(np.mean(p * (1 - p)))

    def as_dict(self) -> dict:
        return {
            "task": self.task,
            "seed": self.seed,
            "states": self.states,
            "group_size": self.group_size,
            "success": self.success,
            "mixed": self.mixed,
            "always": self.always,
            "never": self.never,
            "signal": self.signal,
            "per_state": self.per_state,
        }


def outcome_spread(
    policy, task: str, states: int = 8, group_size: int = 8, seed: int = 20_000, sampling_seed: int = 0
) -> OutcomeSpread:
    """``group_size`` stochastic episodes of ``policy`` from each of ``states`` initial states (reset seeds
    ``seed`` .. ``seed + states - 1``; the default keeps clear of the evaluation seeds), all in one vector
    env, sampled with a generator seeded by ``sampling_seed``."""
    from vla_razor.envs import get_task, make_vec_env

    if states < 1 or group_size < 2:
        raise ValueError(f"need states >= 1 and group_size >= 2, got {states} and {group_size}")
    check_world(policy, task)
    chunk = policy.config.chunk_size
    env = make_vec_env(
        task, num_envs=states * group_size, backend="cpu", chunk_size=chunk, **policy_observations(policy)
    )
    was_training = policy.training
    policy.eval()
    try:
        seeds = [seed + s for s in range(states) for _ in range(group_size)]
        max_decisions = -(-get_task(task).max_episode_steps // chunk)
        generator = torch.Generator(policy.device).manual_seed(sampling_seed)
        group = collect_groups(env, policy, seeds, max_decisions, generator)
    finally:
        env.close()
        policy.train(was_training)
    return OutcomeSpread.from_successes(task, seed, group.success.reshape(states, group_size))
