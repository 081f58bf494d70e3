"""What PPO and GRPO share: their common hyper-parameters and the clipped per-step surrogate."""

from __future__ import annotations

from dataclasses import dataclass

import torch

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
    """Stop the iteration's epochs once the old-vs-new approximate KL (per step, nats) exceeds this; 0: never."""
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


def clipped_surrogate(
    log_ratio: torch.Tensor,
    advantages: torch.Tensor,
    clip: float,
    behaviour_weight: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """PPO's clipped objective (as a loss) for per-step log-ratios ``[B, K]`` and per-decision
    advantages ``[B]`` (every denoising step shares its decision's advantage), with the old-vs-new
    approximate KL (k3) and the clipped fraction.

    ``behaviour_weight`` ``[B, K]`` (no gradient) is the decoupled objective for stale rollouts
    (Hilton et al., 2022): ``log_ratio`` is then taken against the proximal policy (the learner's
    weights before this update) and each term is weighted by pi_prox / pi_behaviour, so the clip
    bounds this update's step and not the staleness of the data."""
    ratio = log_ratio.exp()
    adv = advantages[:, None]
    terms = torch.max(-adv * ratio, -adv * ratio.clamp(1 - clip, 1 + clip))
    loss = (terms * behaviour_weight).mean() if behaviour_weight is not None else terms.mean()
    with torch.no_grad():
        stats = {
            "approx_kl": float(((ratio - 1) - log_ratio).mean()),
            "clipfrac": float(((ratio - 1).abs() > clip).float().mean()),
        }
    return loss, stats
