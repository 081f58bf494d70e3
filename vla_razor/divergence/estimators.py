"""Sample-based estimates (KL from log-probabilities, Jensen-Shannon between Gaussians) and
mean/standard-error summaries.

Use these only where the distributions are not explicit (e.g. the marginal of a whole action chunk,
or a model that exposes only log-probabilities of sampled tokens); where they are explicit, the exact
:func:`vla_razor.divergence.kl` is cheaper and has no estimator variance.

Given samples x ~ p and log r = log q(x) - log p(x), the estimators of KL(p || q) are
(Schulman, "Approximating KL divergence", 2020):

========  =========================  ==========  =================================================
name      per-sample value           bias        notes
========  =========================  ==========  =================================================
``k1``    -log r                     unbiased    high variance; individual values can be negative
``k2``    (log r)^2 / 2              biased      low variance; E[k2] = KL + O(KL^(3/2)) for close p, q
``k3``    (r - 1) - log r            unbiased    non-negative, low variance when p and q are close
========  =========================  ==========  =================================================

Samples must come from p (the first argument): for the project's forward KL KL(pi_0 || pi) that is
the base policy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

from .distributions import DiagGaussian, GaussianChain

Estimator = Literal["k1", "k2", "k3"]


MAX_LOG_RATIO = 50.0
"""k3's ratio term uses ``log r`` clamped at this value (r <= e^50, about 5e21) before the exponential."""


def kl_from_logprobs(
    logp: torch.Tensor, logq: torch.Tensor, estimator: Estimator = "k3", max_log_ratio: float = MAX_LOG_RATIO
) -> torch.Tensor:
    """Per-sample estimates of KL(p || q) from ``logp = log p(x)`` and ``logq = log q(x)``, x ~ p.

    Computed in float64 (the result too) and never inf for finite inputs: k1 and k2 are polynomials of
    ``log r`` (finite at any finite log-ratio; at +-1000, k2 is 5e5). k3's ``r = exp(log r)`` would
    overflow past ``log r`` of about 709, so its exponential sees ``log r`` clamped at ``max_log_ratio``:
    ``k3 = expm1(min(log r, M)) - log r``. Below ``M`` this is k3 exactly (expm1 keeps precision near
    r = 1); above it the sample is biased low, but stays finite, non-negative and increasing in
    ``log r``, so one outlier token or chain step cannot turn a mean, a penalty or its gradient into
    inf or NaN. (A sample with q(x) / p(x) > e^50 says the estimate is meaningless anyway: use the
    exact KL where the distributions are explicit.)
    """
    if logp.shape != logq.shape:
        raise ValueError(
            f"logp and logq must have the same shape, got {tuple(logp.shape)} and {tuple(logq.shape)}"
        )
    log_ratio = logq.double() - logp.double()
    if estimator == "k1":
        return -log_ratio
    if estimator == "k2":
        return 0.5 * log_ratio.square()
    if estimator == "k3":
        return torch.expm1(log_ratio.clamp(max=max_log_ratio)) - log_ratio
    raise ValueError(f"unknown KL estimator {estimator!r}; choose 'k1', 'k2' or 'k3'")


@dataclass(frozen=True)
class Estimate:
    """A sample mean with its standard error and sample count (what the metrics log)."""

    mean: float
    stderr: float
    n: int

    def as_metrics(self, name: str) -> dict[str, float]:
        """``{name: mean, name/stderr: ..., name/n: ...}``, e.g. ``kl/forward``."""
        return {name: self.mean, f"{name}/stderr": self.stderr, f"{name}/n": float(self.n)}


def mean_and_stderr(values: torch.Tensor, mask: torch.Tensor | None = None) -> Estimate:
    """Mean and standard error (sample std / sqrt(n)) of ``values`` over the entries ``mask`` keeps."""
    values = values.detach().double().reshape(-1)
    if mask is not None:
        values = values[mask.detach().reshape(-1).to(torch.bool)]
    n = values.numel()
    if n == 0:
        return Estimate(mean=float("nan"), stderr=float("nan"), n=0)
    mean = values.mean().item()
    stderr = values.std(unbiased=True).item() / math.sqrt(n) if n > 1 else float("nan")
    return Estimate(mean=mean, stderr=stderr, n=n)


def gaussian_js_estimate(
    p: DiagGaussian, q: DiagGaussian, generator: torch.Generator | None = None
) -> torch.Tensor:
    """A one-sample, reparameterised (so differentiable) estimate of the Jensen-Shannon divergence
    between diagonal Gaussians, which has no closed form:

        JS(p, q) = 1/2 E_p[log p - log m] + 1/2 E_q[log q - log m],   m = (p + q) / 2,

    one draw from p and one from q per Gaussian. For a :class:`GaussianChain` ``[..., K, D]`` it is the sum
    of the K per-step estimates (each step's JS lies in [0, ln 2]); returns the batch shape.
    """

    def step(d: DiagGaussian) -> DiagGaussian:  # per-step densities: the last dim is the event
        return DiagGaussian(d.mean, d.log_std)

    def half(a: DiagGaussian, b: DiagGaussian) -> torch.Tensor:
        x = a.rsample(generator)
        la, lb = step(a).log_prob(x), step(b).log_prob(x)
        return la - (torch.logaddexp(la, lb) - math.log(2.0))

    values = 0.5 * (half(p, q) + half(q, p))
    return values.sum(-1) if isinstance(p, GaussianChain) else values
