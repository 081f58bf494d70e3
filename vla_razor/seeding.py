"""Named random streams: every seed a loop derives from its ``seed`` is computed here, once.

A run's randomness comes from a few independent streams (episode resets, rollout sampling, minibatch
order, KL states, problems); each is a function of the run's seed and the iteration, so a resumed run
draws exactly what an uninterrupted one would, and two streams never share seeds in practice (the
multipliers are large primes, the offsets far apart).
"""

from __future__ import annotations

_RUN = 1_000_003  # seeds of one run's streams are spaced this far apart
_KL = 100_003
RANK_STRIDE = 7919
"""Offset between learner ranks' (and rollout workers') sampling seeds: the same streams, disjoint draws."""


def minibatches(seed: int) -> int:
    """The generator of minibatch order, bc noise and penalty samples (one per run, checkpointed)."""
    return seed


def episode_resets(seed: int, iteration: int, num_envs: int) -> int:
    """First reset seed of the episodes started at ``iteration`` (sub-env ``i`` adds ``i``)."""
    return seed * _RUN + iteration * num_envs


def group_resets(seed: int, iteration: int, num_groups: int) -> int:
    """First reset seed of GRPO's groups at ``iteration`` (group ``g`` adds ``g``; a group shares its
    seed)."""
    return seed * _RUN + iteration * num_groups


def rollout_sampling(seed: int, iteration: int) -> int:
    """Seed of the chain sampling of the rollout collected at ``iteration``."""
    return seed * _RUN + iteration + 1


def teacher_episodes(seed: int) -> int:
    """First reset seed of the episodes an RL teacher plays for SFT on RL data (episode ``i`` adds ``i``)."""
    return seed * _RUN + 500_000


def validation_episodes(eval_seed: int) -> int:
    """First reset seed of the validation episodes of an evaluation (episode ``i`` adds ``i``): disjoint from
    the scored episodes, which start at ``eval_seed``, so a checkpoint chosen on these is scored on others."""
    return eval_seed + 250_000


def kl_sampling(seed: int, iteration: int) -> int:
    """Seed of the base samples the KL to the base is estimated from at ``iteration``."""
    return seed * _KL + iteration


def problems(seed: int, step: int) -> int:
    """Seed of the LLM problems drawn at ``step`` (pretraining) or ``iteration`` (fine-tuning)."""
    return seed * _RUN + step


def kl_prompts(eval_seed: int, iteration: int) -> int:
    """Seed of the prompts the LLM track's KL to the base is measured on at ``iteration`` (disjoint from the
    evaluation problems, which start at ``eval_seed``)."""
    return eval_seed + 1_000_001 + iteration


def rank_sampling(seed: int, iteration: int, rank: int) -> int:
    """Seed of a learner rank's own sampling (its rollouts and its share of the penalty's base samples)
    from ``iteration`` on, when several ranks train one run (one rank uses the run's generator)."""
    return rollout_sampling(seed, iteration) + RANK_STRIDE * (rank + 1) + 31
