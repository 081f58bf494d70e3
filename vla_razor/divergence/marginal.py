"""The forward KL between the ACTION marginals of two Gaussian chains, estimated from base-sampled chains.

The chain KL (:func:`vla_razor.divergence.forward_kl` on a chain) is exact per chain but measures the
whole denoising path; the action ``a = x_K`` is a function of the path, so by the data-processing
inequality the chain KL upper-bounds the KL between the action marginals:

    KL(pi_0(a) || pi(a)) = KL_chain - E_{a ~ pi_0}[KL(pi_0(x_<K | a) || pi(x_<K | a))]  <=  KL_chain.

This module estimates the left-hand side. Per state, M chains are drawn from the base. Both marginal
densities at every sampled action ``a_i`` are mixtures over the chains' prefixes ``x^j_<K`` (the first
point ``x_0`` has the same law under both policies):

    pi_0(a_i) = E_{x_<K ~ pi_0}[ pi_0,K(a_i | x_{K-1}) ]           ~ 1/M sum_j p0_j(a_i)
    pi(a_i)   = E_{x_<K ~ pi_0}[ w(x_<K) pi_K(a_i | x_{K-1}) ]     ~ sum_j w_j p_j(a_i) / sum_j w_j

with ``w = pi(x_<K) / pi_0(x_<K)`` the exact chain-likelihood ratio of the prefix (importance weights,
self-normalised), ``p0_j``, ``p_j`` the two policies' last-step Gaussians at prefix j. The estimate is
``mean_i [log pi_0(a_i) - log pi(a_i)]``.

Bias and variance (tests/test_marginal_kl.py measures them against the closed form of a linear-Gaussian
chain): the estimator is consistent as M grows. At finite M, ``a_i``'s own prefix is among the M (so
no density is estimated as 0) and dominates both mixtures when the last step's noise is small against
the spread of the prefixes; then the estimate tends to the chain KL of the last step plus the prefix's
log-weight, that is, toward the chain KL. So in high dimension or with a sharp last step it sits
between the marginal KL and the chain KL, and the gap it reports against the chain KL is a lower bound
of the true gap.
"""

from __future__ import annotations

import math

import torch

from .distributions import DiagGaussian, GaussianChain
from .estimators import Estimate, mean_and_stderr


def _check(base: GaussianChain, policy: GaussianChain, points: torch.Tensor) -> None:
    if base.mean.shape != policy.mean.shape or base.mean.dim() != 4:
        raise ValueError(
            f"need two chains of shape [S, M, K, D] evaluated at the same points, got "
            f"{tuple(base.mean.shape)} and {tuple(policy.mean.shape)}"
        )
    s, m, k, d = base.mean.shape
    if points.shape != (s, m, k + 1, d):
        raise ValueError(f"points must be [S, M, K+1, D] = {(s, m, k + 1, d)}, got {tuple(points.shape)}")
    if m < 2:
        raise ValueError("need at least 2 chains per state to mix over prefixes")


def _last_step_log_densities(steps: GaussianChain, actions: torch.Tensor) -> torch.Tensor:
    """``[S, M(i), M(j)]``: log-density of action i under the last step of chain j (same state)."""
    log_std = steps.log_std.expand_as(steps.mean)[:, :, -1]
    kernel = DiagGaussian(steps.mean[:, None, :, -1], log_std[:, None])  # [S, 1, M(j), D]
    return kernel.log_prob(actions[:, :, None, :])  # broadcast to [S, M(i), M(j)]


def prefix_log_weights(base: GaussianChain, policy: GaussianChain, points: torch.Tensor) -> torch.Tensor:
    """``[S, M]``: log pi(x_<K) - log pi_0(x_<K) of every chain's prefix (every step but the last)."""
    inputs = points[:, :, 1:-1]  # outputs of steps 0..K-2
    keep = slice(0, base.num_steps - 1)
    p = GaussianChain(policy.mean[:, :, keep], policy.log_std.expand_as(policy.mean)[:, :, keep])
    p0 = GaussianChain(base.mean[:, :, keep], base.log_std.expand_as(base.mean)[:, :, keep])
    return p.log_prob(inputs) - p0.log_prob(inputs)


def marginal_forward_kl(base: GaussianChain, policy: GaussianChain, points: torch.Tensor) -> torch.Tensor:
    """Per-state estimate ``[S]`` of KL(pi_0(a|s) || pi(a|s)) between the action marginals.

    ``points`` ``[S, M, K+1, D]``: M chains per state sampled from the BASE (``points[:, :, k+1]`` the
    output of step k, the last point the action); ``base`` and ``policy``: the two policies' step
    Gaussians ``[S, M, K, D]`` at those points. Computed in float64."""
    _check(base, policy, points)
    base = GaussianChain(base.mean.double(), base.log_std.double())
    policy = GaussianChain(policy.mean.double(), policy.log_std.double())
    points = points.double()
    m = points.shape[1]
    actions = points[:, :, -1]
    log_w = prefix_log_weights(base, policy, points)  # [S, M(j)]
    log_p0 = torch.logsumexp(_last_step_log_densities(base, actions), dim=-1) - math.log(m)
    log_p = torch.logsumexp(
        log_w[:, None, :] + _last_step_log_densities(policy, actions), dim=-1
    ) - torch.logsumexp(log_w, dim=-1, keepdim=True)
    return (log_p0 - log_p).mean(-1)


def marginal_forward_kl_estimate(
    base: GaussianChain, policy: GaussianChain, points: torch.Tensor
) -> Estimate:
    """:func:`marginal_forward_kl` averaged over states, with its standard error over states."""
    return mean_and_stderr(marginal_forward_kl(base, policy, points))
