"""What PPO and GRPO on the robot share: the clipped-surrogate update's hyper-parameters."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..config import NonNegativeFloat, PositiveFloat, PositiveInt


@dataclass
class ClippedUpdateFields:
    """Fields of the robot's clipped policy-gradient trainers (PPO, GRPO): budget, epochs, minibatches,
    clip and early stop."""

    total_env_steps: PositiveInt = 300_000
    """Environment steps (not decisions) to train for."""
    update_epochs: PositiveInt = 4
    """Passes over the iteration's decisions."""
    num_minibatches: PositiveInt = 4
    """Minibatches per pass."""
    clip_coef: PositiveFloat = 0.2
    """Ratio clip (per denoising step)."""
    target_kl: NonNegativeFloat = 0.2
    """Stop the iteration's epochs once the old-vs-new approximate KL (per step, nats) exceeds this;
    0: never."""
    vectorization: Literal["sync", "async"] = "sync"
    """'sync' (sub-envs in this process) or 'async' (one process per sub-env)."""
