"""What PPO and GRPO on the robot share: their common hyper-parameters."""

from __future__ import annotations

from dataclasses import dataclass

from vla_razor.harness import FinetuneConfig

from ..config import NonNegativeFloat, PositiveFloat, PositiveInt


@dataclass
class ClippedPolicyGradientConfig(FinetuneConfig):
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
    vectorization: str = "sync"
    """'sync' (sub-envs in this process) or 'async' (one process per sub-env)."""

    def __post_init__(self):
        super().__post_init__()
        if min(self.total_env_steps, self.update_epochs, self.num_minibatches) < 1 or self.clip_coef <= 0:
            raise ValueError(
                "total_env_steps, update_epochs and num_minibatches must be >= 1 and clip_coef > 0"
            )
        if self.vectorization not in ("sync", "async"):
            raise ValueError(f"vectorization must be 'sync' or 'async', got {self.vectorization!r}")
