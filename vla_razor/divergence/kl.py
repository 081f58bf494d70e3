"""Exact divergences between two distributions of the same family.

Direction convention (the project's headline metric): the **forward KL** is KL(pi_0 || pi), the
base (reference) policy first, expectation under the base. In this module ``p`` is always the first
argument: ``kl(p, q) = KL(p || q) = E_p[log p - log q]``. :func:`forward_kl` and :func:`reverse_kl`
spell the convention out with ``base`` and ``policy`` arguments.

Gaussian chains: the KL between two chains evaluated at the same intermediate points is the sum of
per-step Gaussian KLs. Averaged over chains sampled from p, it is the exact KL between the two chain
(path) distributions, which upper-bounds the KL between their final action marginals
(data-processing inequality).
"""

from __future__ import annotations

from typing import Callable, Literal, Union

import torch

from .distributions import Categorical, DiagGaussian, GaussianChain
from .token_kl import categorical_kl

Distribution = Union[Categorical, DiagGaussian, GaussianChain]
Reduction = Literal["none", "sum", "mean", "sequence_mean"]


def reduce(
    values: torch.Tensor, mask: torch.Tensor | None = None, reduction: Reduction = "none"
) -> torch.Tensor:
    """Reduce per-position divergences ``values`` (shape ``[..., T]`` for sequences) under ``mask``.

    - ``none``: the values, with masked-out positions set to 0.
    - ``sum``: the sum over unmasked positions.
    - ``mean``: the mean over unmasked positions (every token weighs the same: "token mean").
    - ``sequence_mean``: the sum over the last dim (the tokens of one sequence: the KL of the whole
      sequence) averaged over the leading dims (the sequences).
    An all-masked input gives 0 for ``sum``/``mean`` (no NaN from 0/0).
    """
    if mask is not None:
        if mask.shape != values.shape:
            raise ValueError(
                f"mask shape {tuple(mask.shape)} must equal the divergence shape {tuple(values.shape)}"
            )
        values = values.masked_fill(~mask.to(torch.bool), 0.0)
    if reduction == "none":
        return values
    if reduction == "sum":
        return values.sum()
    if reduction == "mean":
        count = values.numel() if mask is None else mask.to(torch.bool).sum()
        return values.sum() / torch.clamp(torch.as_tensor(count, dtype=values.dtype), min=1)
    if reduction == "sequence_mean":
        if values.dim() < 1:
            raise ValueError("sequence_mean needs values of shape [..., T]")
        return values.sum(-1).mean()
    raise ValueError(f"unknown reduction {reduction!r}; choose one of none, sum, mean, sequence_mean")


def _gaussian_kl_elementwise(p: DiagGaussian, q: DiagGaussian) -> torch.Tensor:
    """Per-dimension KL(N(m_p, s_p) || N(m_q, s_q)), computed from log-stds.

    log(s_q/s_p) + (s_p^2 + (m_p - m_q)^2) / (2 s_q^2) - 1/2
      = 0.5 * (expm1(2d) - 2d) + 0.5 * ((m_p - m_q) / s_q)^2   with d = log s_p - log s_q,
    which is exactly 0 for equal inputs and keeps full precision for nearby Gaussians.
    """
    d = p.log_std - q.log_std
    z = (p.mean - q.mean) * torch.exp(-q.log_std)
    return 0.5 * (torch.expm1(2.0 * d) - 2.0 * d) + 0.5 * z.square()


def _check_same_family(p, q) -> None:
    for dist in (p, q):
        if not isinstance(dist, (Categorical, DiagGaussian)):
            raise TypeError(
                "expected a vla_razor.divergence distribution (Categorical, DiagGaussian, GaussianChain), "
                f"got {type(dist).__name__}"
            )
    if type(p) is not type(q):
        raise TypeError(
            f"cannot compare a {type(p).__name__} with a {type(q).__name__}: both must be of the same family"
        )
    if isinstance(p, DiagGaussian) and p.event_shape != q.event_shape:
        what = "[K, D] (steps, action dims)" if isinstance(p, GaussianChain) else "[D]"
        raise ValueError(
            f"{type(p).__name__} event shapes differ: {tuple(p.event_shape)} vs {tuple(q.event_shape)}; both "
            f"must be {what}"
        )
    if isinstance(p, Categorical) and p.logits.shape[-1] != q.logits.shape[-1]:
        raise ValueError(
            f"Categorical vocabularies differ: {p.logits.shape[-1]} vs {q.logits.shape[-1]} categories"
        )


def kl(
    p: Distribution,
    q: Distribution,
    mask: torch.Tensor | None = None,
    reduction: Reduction = "none",
    per_step: bool = False,
) -> torch.Tensor:
    """Exact KL(p || q), batched over leading dims and summed over event dims (and chain steps).

    Args:
        p, q: two distributions of the same family. Batch shapes broadcast.
        mask: optional bool mask of the batch shape (e.g. response tokens ``[B, T]``); masked positions
            are not computed (categoricals) and count as 0.
        reduction: see :func:`reduce`; ``none`` returns the batch shape.
        per_step: for :class:`GaussianChain`, return ``[..., K]`` (one KL per denoising step) instead
            of the sum over steps.
    """
    _check_same_family(p, q)
    if isinstance(p, Categorical):
        zp, zq = torch.broadcast_tensors(p.logits, q.logits)
        values = categorical_kl(zp, zq, mask=mask)
    else:
        per_dim = _gaussian_kl_elementwise(p, q)
        if isinstance(p, GaussianChain) and per_step:
            values = per_dim.sum(-1)
        else:
            values = p._sum_event(per_dim)
        if per_step and mask is not None:
            raise ValueError("per_step=True returns [..., K]; apply the mask to the result instead")
    return reduce(values, mask, reduction)


def forward_kl(base: Distribution, policy: Distribution, **kwargs) -> torch.Tensor:
    """KL(base || policy) = KL(pi_0 || pi): the razor metric's direction.

    Exact per input. Its expectation over inputs must use inputs (states, prefixes, chain points)
    sampled from the BASE policy: E_{x ~ pi_0}[KL(pi_0(.|x) || pi(.|x))].
    """
    return kl(base, policy, **kwargs)


def reverse_kl(base: Distribution, policy: Distribution, **kwargs) -> torch.Tensor:
    """KL(policy || base) = KL(pi || pi_0), the direction RL frameworks usually log; expectation over
    inputs sampled from the current policy."""
    return kl(policy, base, **kwargs)


# --- f-divergences for categoricals -------------------------------------------------------------

FDivergenceKind = Union[
    Literal["forward_kl", "reverse_kl", "js", "tv", "chi2"], Callable[[torch.Tensor], torch.Tensor]
]


def f_divergence(
    p: Categorical,
    q: Categorical,
    kind: FDivergenceKind = "forward_kl",
    mask: torch.Tensor | None = None,
    reduction: Reduction = "none",
) -> torch.Tensor:
    """Exact f-divergence D_f(p || q) = sum_x q(x) f(p(x) / q(x)) between two categoricals.

    With p the base policy and q the fine-tuned one:
      - ``forward_kl``: KL(p || q)                       (f(t) = t log t)
      - ``reverse_kl``: KL(q || p)                       (f(t) = -log t)
      - ``js``: Jensen-Shannon, 0.5 KL(p||m) + 0.5 KL(q||m), m = (p+q)/2; in [0, ln 2]
      - ``tv``: total variation, 0.5 sum |p - q|; in [0, 1]     (f(t) = |t - 1| / 2)
      - ``chi2``: Pearson chi-square, sum (p - q)^2 / q        (f(t) = (t - 1)^2)
      - a callable ``f``: a convex generator with f(1) = 0, applied to the ratio t = p/q. It is
        evaluated where q > 0; categories where q = 0 < p are reported as +inf (the limit for every
        generator that grows superlinearly; use a named kind for others).
    Returns the batch shape (or a reduction of it, see :func:`reduce`).
    """
    _check_same_family(p, q)
    if not isinstance(p, Categorical):
        if kind in ("forward_kl", "reverse_kl"):
            return (
                kl(p, q, mask=mask, reduction=reduction)
                if kind == "forward_kl"
                else kl(q, p, mask=mask, reduction=reduction)
            )
        raise TypeError(
            f"f_divergence kind {kind!r} has no closed form for {type(p).__name__}; "
            "estimate it from samples (gaussian_js_estimate for js, kl_from_logprobs for KL) or use "
            "kind='forward_kl'/'reverse_kl'"
        )
    if kind == "forward_kl":
        return kl(p, q, mask=mask, reduction=reduction)
    if kind == "reverse_kl":
        return kl(q, p, mask=mask, reduction=reduction)

    lp, lq = torch.broadcast_tensors(p.log_probs, q.log_probs)
    pp, qq = lp.exp(), lq.exp()
    if kind == "js":
        lm = torch.logaddexp(lp, lq) - torch.log(torch.tensor(2.0, dtype=lp.dtype))
        half_p = (pp * (lp - lm)).masked_fill(pp == 0, 0.0)
        half_q = (qq * (lq - lm)).masked_fill(qq == 0, 0.0)
        values = 0.5 * (half_p + half_q).sum(-1)
    elif kind == "tv":
        values = 0.5 * (pp - qq).abs().sum(-1)
    elif kind == "chi2":
        # sum p^2/q - 1, from log-space so a tiny q does not overflow before it is divided.
        ratio_terms = torch.exp(2.0 * lp - lq).masked_fill(pp == 0, 0.0)
        values = ratio_terms.sum(-1) - 1.0
    elif callable(kind):
        positive_q = qq > 0
        t = torch.exp(lp - lq).masked_fill(~positive_q, 1.0)
        terms = (qq * kind(t)).masked_fill(~positive_q, 0.0)
        support_gap = (~positive_q & (pp > 0)).any(-1)
        values = terms.sum(-1).masked_fill(support_gap, float("inf"))
    else:
        raise ValueError(
            f"unknown f-divergence kind {kind!r}; choose forward_kl, reverse_kl, js, tv, chi2 or pass a "
            "generator f(t)"
        )
    return reduce(values, mask, reduction)
