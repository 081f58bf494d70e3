"""The action-marginal forward KL estimator against the closed form of a linear-Gaussian chain.

A chain x_0 ~ N(0, 1), x_{k+1} ~ N(a_k x_k + b_k, s_k^2) (per dimension) has Gaussian marginals with
closed-form moments, so both the marginal KL (torch.distributions' Normal KL) and the chain KL are exact."""

from __future__ import annotations

import math

import pytest
import torch

from vla_razor.divergence import GaussianChain, forward_kl
from vla_razor.divergence.marginal import marginal_forward_kl, marginal_forward_kl_estimate

K = 4


def linear_chain(d: int, shift: float, slope: float, last_std: float, device=torch.float64):
    """Per-step (a_k, b_k, s_k) ``[K, d]`` of a chain whose last step has std ``last_std``."""
    a = torch.full((K, d), 0.8, dtype=device) * slope
    b = torch.linspace(0.0, 1.0, d, dtype=device).expand(K, d) * shift
    s = torch.tensor([0.6, 0.5, 0.4, last_std], dtype=device)[:, None].expand(K, d)
    return a, b, s


def sample(params, states: int, chains: int, generator: torch.Generator) -> torch.Tensor:
    a, b, s = params
    x = torch.randn(states, chains, a.shape[1], generator=generator, dtype=torch.float64)
    points = [x]
    for k in range(K):
        x = a[k] * x + b[k] + s[k] * torch.randn(x.shape, generator=generator, dtype=torch.float64)
        points.append(x)
    return torch.stack(points, dim=2)  # [S, M, K+1, d]


def steps_at(params, points: torch.Tensor) -> GaussianChain:
    a, b, s = params
    mean = a * points[:, :, :-1] + b
    return GaussianChain(mean, s.log().expand_as(mean))


def marginal(params):
    a, b, s = params
    m, v = torch.zeros(a.shape[1], dtype=torch.float64), torch.ones(a.shape[1], dtype=torch.float64)
    for k in range(K):
        m, v = a[k] * m + b[k], a[k] ** 2 * v + s[k] ** 2
    return torch.distributions.Normal(m, v.sqrt())


def exact_marginal_kl(p, q) -> float:
    return float(torch.distributions.kl_divergence(marginal(p), marginal(q)).sum())


def exact_chain_kl(p, q) -> float:
    """Sum over steps of E_{x_k ~ p}[KL(N(a x + b, s) || N(a' x + b', s'))], from p's moments of x_k."""
    (a, b, s), (a2, b2, s2) = p, q
    m, v = torch.zeros(a.shape[1], dtype=torch.float64), torch.ones(a.shape[1], dtype=torch.float64)
    total = torch.zeros((), dtype=torch.float64)
    for k in range(K):
        da, db = a[k] - a2[k], b[k] - b2[k]
        mean_sq = da**2 * (v + m**2) + 2 * da * db * m + db**2
        total += (torch.log(s2[k] / s[k]) + (s[k] ** 2 + mean_sq) / (2 * s2[k] ** 2) - 0.5).sum()
        m, v = a[k] * m + b[k], a[k] ** 2 * v + s[k] ** 2
    return float(total)


def estimate(p, q, states: int, chains: int, seed: int = 0):
    points = sample(p, states, chains, torch.Generator().manual_seed(seed))
    return marginal_forward_kl_estimate(steps_at(p, points), steps_at(q, points), points)


@pytest.mark.parametrize("d", [1, 3])
def test_marginal_kl_converges_to_the_closed_form(d):
    base, policy = linear_chain(d, 0.0, 1.0, 0.3), linear_chain(d, 0.5, 1.1, 0.35)
    exact = exact_marginal_kl(base, policy)
    chain = exact_chain_kl(base, policy)
    assert chain > exact * 1.2  # the two quantities differ here, so the test tells them apart
    est = estimate(base, policy, states=200, chains=256)
    assert abs(est.mean - exact) < 4 * est.stderr + 0.02 * exact, (est, exact, chain)


def test_the_chain_kl_helper_is_the_exact_chain_kl():
    base, policy = linear_chain(2, 0.0, 1.0, 0.3), linear_chain(2, 0.5, 1.1, 0.35)
    points = sample(base, 2000, 8, torch.Generator().manual_seed(1))
    per_chain = forward_kl(steps_at(base, points), steps_at(policy, points))
    assert float(per_chain.mean()) == pytest.approx(exact_chain_kl(base, policy), rel=0.03)


def test_bias_shrinks_with_more_chains_and_stays_below_the_chain_kl():
    base, policy = linear_chain(1, 0.0, 1.0, 0.1), linear_chain(1, 0.8, 1.2, 0.1)
    exact, chain = exact_marginal_kl(base, policy), exact_chain_kl(base, policy)
    biases = [estimate(base, policy, states=300, chains=m, seed=2).mean - exact for m in (2, 16, 256)]
    assert biases[0] > biases[1] > biases[2] >= -0.05 * exact, biases
    assert exact + biases[0] < chain  # even at 2 chains it is below the chain KL (the upper bound)


def test_identical_policies_give_zero_and_the_shapes_are_checked():
    base = linear_chain(2, 0.3, 1.0, 0.2)
    points = sample(base, 5, 6, torch.Generator().manual_seed(3))
    steps = steps_at(base, points)
    assert torch.allclose(
        marginal_forward_kl(steps, steps, points), torch.zeros(5, dtype=torch.float64), atol=1e-12
    )
    with pytest.raises(ValueError, match="K\\+1"):
        marginal_forward_kl(steps, steps, points[:, :, 1:])
    with pytest.raises(ValueError, match="at least 2 chains"):
        marginal_forward_kl(
            *(GaussianChain(x.mean[:, :1], x.log_std[:, :1]) for x in (steps, steps)), points[:, :1]
        )


def test_an_extreme_policy_gives_a_finite_estimate():
    base, far = linear_chain(2, 0.0, 1.0, 0.05), linear_chain(2, 30.0, 3.0, 0.05)
    points = sample(base, 4, 8, torch.Generator().manual_seed(4))
    values = marginal_forward_kl(steps_at(base, points), steps_at(far, points), points)
    assert torch.isfinite(values).all() and (values > 100).all()
    assert math.isfinite(float(values.mean()))
