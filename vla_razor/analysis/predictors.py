"""Candidate predictors of forgetting: how far a fine-tuned policy moved from its base.

Each is a function of (base policy, fine-tuned policy, new-task states) alone, so RL and SFT runs are
measured identically:

- ``kl/forward``  E_s[KL(pi_0(.|s) || pi(.|s))], chains sampled from the base (the razor's predictor);
- ``kl/reverse``  E_s[KL(pi(.|s) || pi_0(.|s))], chains sampled from the fine-tuned policy;
- ``kl/forward_action``  the forward KL between the action marginals (not the whole denoising chains),
  estimated with the chains' exact likelihoods (:mod:`vla_razor.divergence.marginal`; at most the chain KL);
- ``weights/l2_change``  ||theta - theta_0||_2 over all trainable parameters;
- ``weights/update_density``  fraction of parameter entries that moved by more than
  ``1e-3 * (|theta_0| + 1e-8)`` (one minus the "update sparsity" of RL-fine-tuned LLMs);
- ``features/change``  1 - linear CKA between the base's and the policy's observation features.

The states are the new task's, as the base policy meets them: observations of the base's own
stochastic rollouts on fixed seeds, computed once per base and cached beside its weights.
"""

from __future__ import annotations

from pathlib import Path

import torch

from vla_razor.atomic import atomic_path

PREDICTORS = (
    "kl/forward",
    "kl/reverse",
    "kl/forward_action",
    "weights/l2_change",
    "weights/update_density",
    "features/change",
)
DENSITY_RELATIVE_TOLERANCE = 1e-3


def weight_change(base: torch.nn.Module, policy: torch.nn.Module) -> dict[str, float]:
    """L2 norm of the parameter change and the fraction of entries that changed (parameters only, not
    buffers)."""
    base_params = dict(base.named_parameters())
    squared, moved, total = 0.0, 0, 0
    for name, p in policy.named_parameters():
        if name not in base_params:
            raise ValueError(f"parameter {name} is not in the base policy: not fine-tuned from this base")
        p0 = base_params[name].detach()
        if p0.shape != p.shape:
            raise ValueError(f"parameter {name} has shape {tuple(p.shape)}, the base's {tuple(p0.shape)}")
        delta = (p.detach() - p0).double()
        squared += float((delta**2).sum())
        moved += int((delta.abs() > DENSITY_RELATIVE_TOLERANCE * (p0.abs().double() + 1e-8)).sum())
        total += p0.numel()
    return {"weights/l2_change": squared**0.5, "weights/update_density": moved / max(total, 1)}


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear centred kernel alignment of two feature matrices ``[n, d1]`` and ``[n, d2]``
    (Kornblith et al. 2019):
    ||Y_c^T X_c||_F^2 / (||X_c^T X_c||_F ||Y_c^T Y_c||_F); 1 for identical features up to rotation and
    scale."""
    if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(
            f"need feature matrices [n, d] with the same n, got {tuple(x.shape)} and {tuple(y.shape)}"
        )
    x = (x - x.mean(0)).double()
    y = (y - y.mean(0)).double()
    cross = torch.linalg.matrix_norm(y.T @ x) ** 2
    norm = torch.linalg.matrix_norm(x.T @ x) * torch.linalg.matrix_norm(y.T @ y)
    return float(cross / norm) if norm > 0 else float("nan")


@torch.no_grad()
def feature_change(base, policy, states: dict) -> float:
    """1 - linear CKA of the observation features (``encode``) of the base and the policy on ``states``."""
    was_training = policy.training
    policy.eval()
    try:
        return 1.0 - linear_cka(base.encode(states).flatten(1), policy.encode(states).flatten(1))
    finally:
        policy.train(was_training)


def measure_predictors(base, policy, states: dict, kl_states: int = 512, seed: int = 0) -> dict[str, float]:
    """Every predictor of :data:`PREDICTORS` (with the KLs' standard errors) for one fine-tuned policy."""
    from vla_razor.base_kl import measure_action_kl, measure_kl_to_base

    out = measure_kl_to_base(base, policy, states, kl_states, seed=seed)
    out.update(measure_action_kl(base, policy, states, seed=seed))
    out.update(weight_change(base, policy))
    out["features/change"] = feature_change(base, policy, states)
    return out


def task_states(
    base_dir: str | Path, task: str, episodes: int = 16, seed: int = 20_000
) -> dict[str, torch.Tensor]:
    """Observations of the base policy's stochastic rollouts on ``task`` (``episodes`` episodes from
    ``seed``), cached in ``<base_dir>/razor_cache`` keyed by the weights' hash."""
    from safetensors.torch import load_file, save_file

    from vla_razor.evaluation import evaluate_task
    from vla_razor.policies import ChainPolicy
    from vla_razor.retention.evaluate import weights_hash

    base_dir = Path(base_dir)
    cache = (
        base_dir
        / "razor_cache"
        / f"states-{task}-{episodes}ep-seed{seed}-{weights_hash(base_dir)}.safetensors"
    )
    if cache.exists():
        try:
            return load_file(cache)
        except Exception:  # noqa: BLE001 - a damaged cache is recomputed
            pass
    policy = ChainPolicy.from_pretrained(base_dir)
    observations: list[dict] = []
    evaluate_task(policy, task, episodes, seed=seed, mode="stochastic", observations=observations)
    states = {k: torch.cat([o[k] for o in observations]).contiguous() for k in observations[0]}
    cache.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(cache) as tmp:
        save_file(states, str(tmp))
    return states
