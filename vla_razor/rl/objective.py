"""The policy-gradient objectives every RL loop shares, on both tracks: the clipped surrogate (per
denoising step on the robot, per token on the LLM), group-normalised advantages (GRPO) and the minibatch
update loop around them (:func:`clipped_updates`)."""

from __future__ import annotations

from collections.abc import Callable

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


def clipped_updates(
    size: int,
    minibatch_loss: Callable[[torch.Tensor], tuple[torch.Tensor | None, dict[str, float]]],
    optimizer: torch.optim.Optimizer,
    clip_groups: list[list[torch.nn.Parameter]],
    *,
    epochs: int,
    num_minibatches: int,
    max_grad_norm: float,
    target_kl: float,
    generator: torch.Generator,
    sync_gradients: Callable[[], None] | None = None,
    reduce_stats: Callable[[dict[str, float]], dict[str, float]] | None = None,
) -> tuple[dict[str, float], int, int]:
    """The update loop every clipped policy-gradient algorithm runs (PPO, GRPO; robot and LLM): ``epochs``
    passes over ``size`` samples in ``num_minibatches`` minibatches of ``size // num_minibatches`` (drawn in a
    random order from ``generator``; the remainder of an epoch's order is left out, a different one each
    epoch), each: the loss of ``minibatch_loss(index)`` (None when this rank holds none of the minibatch),
    backward, ``sync_gradients`` (data parallel), each parameter group's gradient norm clipped to
    ``max_grad_norm``, a step. Stops after an epoch whose minibatches so far average an approximate KL
    (``stats["approx_kl"]``) above ``target_kl`` (0: never). Returns the per-minibatch stats summed
    (``reduce_stats`` first sums each minibatch's over ranks), the number of updates and of epochs run."""
    minibatch = max(1, size // num_minibatches)
    stats: dict[str, float] = {}
    updates = epoch = 0
    for epoch in range(1, epochs + 1):
        order = torch.randperm(size, generator=generator) if num_minibatches > 1 else torch.arange(size)
        for start in range(0, size - minibatch + 1, minibatch):
            optimizer.zero_grad(set_to_none=True)
            loss, local = minibatch_loss(order[start : start + minibatch])
            if loss is not None:
                loss.backward()
            if sync_gradients is not None:
                sync_gradients()
            for group in clip_groups:
                torch.nn.utils.clip_grad_norm_(group, max_grad_norm)
            optimizer.step()
            for key, value in (reduce_stats(local) if reduce_stats else local).items():
                stats[key] = stats.get(key, 0.0) + value
            updates += 1
        if target_kl and updates and stats.get("approx_kl", 0.0) / updates > target_kl:
            break
    return stats, updates, epoch
