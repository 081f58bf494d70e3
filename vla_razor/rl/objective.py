"""The policy-gradient objectives every RL loop shares, on both tracks: the clipped surrogate (per
denoising step on the robot, per token on the LLM) and group-normalised advantages (GRPO)."""

from __future__ import annotations

import torch


def group_advantages(scores: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """``[G, S]`` scores -> advantages normalised within each group (zero where a group is unanimous)."""
    mean = scores.mean(1, keepdim=True)
    std = scores.std(1, keepdim=True, unbiased=False)
    return (scores - mean) / (std + eps)


def clipped_surrogate(
    log_ratio: torch.Tensor,
    advantages: torch.Tensor,
    clip: float,
    behaviour_weight: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """PPO's clipped objective (as a loss) for log-ratios ``[B, K]`` (K denoising steps, or tokens) and
    per-sample advantages ``[B]`` (every step of a sample shares its advantage), with the old-vs-new
    approximate KL (k3) and the clipped fraction.

    ``behaviour_weight`` ``[B, K]`` (no gradient) is the decoupled objective for stale rollouts
    (Hilton et al., 2022): ``log_ratio`` is then taken against the proximal policy (the learner's
    weights before this update) and each term is weighted by pi_prox / pi_behaviour, so the clip
    bounds this update's step and not the staleness of the data.

    ``mask`` ``[B, K]`` (tokens: 1 on response tokens) averages each sample over its own valid entries,
    then over samples, so a long response weighs as much as a short one; the statistics average over the
    valid entries."""
    ratio = log_ratio.exp()
    adv = advantages[:, None]
    terms = torch.max(-adv * ratio, -adv * ratio.clamp(1 - clip, 1 + clip))
    if behaviour_weight is not None:
        terms = terms * behaviour_weight
    if mask is None:
        loss, valid = terms.mean(), torch.ones_like(terms, dtype=torch.bool)
    else:
        loss = ((terms * mask).sum(-1) / mask.sum(-1).clamp(min=1)).mean()
        valid = mask.bool()
    with torch.no_grad():
        any_valid = bool(valid.any())
        stats = {
            "approx_kl": float(((ratio - 1) - log_ratio)[valid].mean()) if any_valid else 0.0,
            "clipfrac": float(((ratio - 1).abs() > clip)[valid].float().mean()) if any_valid else 0.0,
        }
    return loss, stats
