"""The divergence core against independent references: torch.distributions, scipy, closed forms."""

import math

import numpy as np
import pytest
import scipy.spatial.distance
import scipy.special
import scipy.stats
import torch
import torch.distributions as td

from vla_razor.divergence import (
    Categorical,
    DiagGaussian,
    GaussianChain,
    categorical_kl,
    f_divergence,
    forward_kl,
    kl,
    kl_from_logprobs,
    mean_and_stderr,
    reverse_kl,
)


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(0)


def rand_logits(gen, *shape, scale=3.0, dtype=torch.float64):
    return torch.randn(*shape, generator=gen, dtype=dtype) * scale


# --- categorical ----------------------------------------------------------------------------------


def test_categorical_kl_matches_torch_distributions(gen):
    zp, zq = rand_logits(gen, 4, 7, 50), rand_logits(gen, 4, 7, 50)
    ours = kl(Categorical(zp), Categorical(zq))
    ref = td.kl_divergence(td.Categorical(logits=zp), td.Categorical(logits=zq))
    assert ours.shape == (4, 7)
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-12)


def test_categorical_kl_matches_scipy_entropy(gen):
    zp, zq = rand_logits(gen, 30), rand_logits(gen, 30)
    p, q = torch.softmax(zp, -1).numpy(), torch.softmax(zq, -1).numpy()
    assert kl(Categorical(zp), Categorical(zq)).item() == pytest.approx(scipy.stats.entropy(p, q), rel=1e-10)


@pytest.mark.parametrize("chunk_elements", [1, 7, 64, 10_000])
def test_chunking_does_not_change_values_or_gradients(gen, chunk_elements):
    zp = rand_logits(gen, 3, 5, 11).requires_grad_()
    zq = rand_logits(gen, 3, 5, 11).requires_grad_()
    weights = torch.rand(3, 5, generator=gen, dtype=torch.float64)
    ours = categorical_kl(zp, zq, chunk_elements=chunk_elements)
    (ours * weights).sum().backward()
    g_ours = zp.grad.clone(), zq.grad.clone()
    zp.grad = zq.grad = None
    ref = td.kl_divergence(td.Categorical(logits=zp), td.Categorical(logits=zq))
    (ref * weights).sum().backward()
    torch.testing.assert_close(ours, ref)
    torch.testing.assert_close(g_ours[0], zp.grad)
    torch.testing.assert_close(g_ours[1], zq.grad)


def test_categorical_kl_gradcheck(gen):
    zp = rand_logits(gen, 2, 3, 5, scale=1.0).requires_grad_()
    zq = rand_logits(gen, 2, 3, 5, scale=1.0).requires_grad_()
    mask = torch.tensor([[True, False, True], [False, True, True]])
    assert torch.autograd.gradcheck(lambda a, b: categorical_kl(a, b, chunk_elements=7), (zp, zq))
    assert torch.autograd.gradcheck(lambda a, b: categorical_kl(a, b, mask=mask, chunk_elements=7), (zp, zq))


def test_identities_kl_self_zero_and_nonnegative(gen):
    zp = rand_logits(gen, 100, 20)
    zq = rand_logits(gen, 100, 20)
    assert kl(Categorical(zp), Categorical(zp)).abs().max() < 1e-12
    assert (kl(Categorical(zp), Categorical(zq)) >= 0).all()
    # shift invariance of logits
    torch.testing.assert_close(
        kl(Categorical(zp + 5.0), Categorical(zq - 2.0)), kl(Categorical(zp), Categorical(zq))
    )


def test_extreme_logits_are_stable():
    zp = torch.tensor([[1000.0, 0.0, -1000.0]])
    zq = torch.tensor([[0.0, 1000.0, -1000.0]])
    value = kl(Categorical(zp), Categorical(zq))
    assert torch.isfinite(value).all()
    assert value.item() == pytest.approx(1000.0, rel=1e-5)


def test_masked_categories_and_support_gap():
    ninf = float("-inf")
    zp = torch.tensor([[0.0, 0.0, ninf], [0.0, 0.0, 0.0]], dtype=torch.float64)
    zq = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, ninf]], dtype=torch.float64)
    value = kl(Categorical(zp), Categorical(zq))
    p0 = np.array([0.5, 0.5, 0.0])
    q0 = scipy.special.softmax([0.0, 1.0, 0.0])
    assert value[0].item() == pytest.approx(scipy.stats.entropy(p0, q0), rel=1e-10)
    assert value[1].item() == math.inf  # p puts mass where q has none


def test_nan_inputs_propagate():
    zp = torch.tensor([[0.0, float("nan")]])
    assert torch.isnan(kl(Categorical(zp), Categorical(torch.zeros(1, 2)))).all()


def test_token_mask_and_reductions(gen):
    zp, zq = rand_logits(gen, 2, 4, 9), rand_logits(gen, 2, 4, 9)
    zp[0, 3] = float("nan")  # padding garbage under the mask must not leak
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]], dtype=torch.bool)
    full = td.kl_divergence(td.Categorical(logits=zp.nan_to_num()), td.Categorical(logits=zq))
    per_token = kl(Categorical(zp), Categorical(zq), mask=mask)
    torch.testing.assert_close(per_token, full * mask)
    assert kl(Categorical(zp), Categorical(zq), mask=mask, reduction="sum").item() == pytest.approx(
        (full * mask).sum().item()
    )
    assert kl(Categorical(zp), Categorical(zq), mask=mask, reduction="mean").item() == pytest.approx(
        (full * mask).sum().item() / 5
    )
    assert kl(Categorical(zp), Categorical(zq), mask=mask, reduction="sequence_mean").item() == pytest.approx(
        (full * mask).sum(-1).mean().item()
    )
    zp_leaf = zp.clone().requires_grad_()
    kl(Categorical(zp_leaf), Categorical(zq), mask=mask, reduction="sum").backward()
    assert torch.isfinite(zp_leaf.grad).all()
    assert (zp_leaf.grad[~mask] == 0).all()


def test_all_masked_mean_is_zero_not_nan(gen):
    zp, zq = rand_logits(gen, 2, 3, 4), rand_logits(gen, 2, 3, 4)
    value = kl(Categorical(zp), Categorical(zq), mask=torch.zeros(2, 3, dtype=torch.bool), reduction="mean")
    assert value.item() == 0.0


def test_half_precision_logits_are_computed_in_float32(gen):
    zp, zq = rand_logits(gen, 8, 100, dtype=torch.float32), rand_logits(gen, 8, 100, dtype=torch.float32)
    ours = kl(Categorical(zp.bfloat16()), Categorical(zq.bfloat16()))
    ref = td.kl_divergence(
        td.Categorical(logits=zp.bfloat16().float()), td.Categorical(logits=zq.bfloat16().float())
    )
    assert ours.dtype == torch.float32
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-5)


# --- f-divergences --------------------------------------------------------------------------------


def _np(z):
    return torch.softmax(z, -1).numpy()


def test_f_divergences_against_scipy_and_closed_forms(gen):
    zp, zq = rand_logits(gen, 5, 12), rand_logits(gen, 5, 12)
    p, q = _np(zp), _np(zq)
    P, Q = Categorical(zp), Categorical(zq)
    js_ref = scipy.spatial.distance.jensenshannon(p, q, axis=-1) ** 2  # scipy returns sqrt(JS), natural log
    np.testing.assert_allclose(f_divergence(P, Q, "js").numpy(), js_ref, rtol=1e-8)
    np.testing.assert_allclose(f_divergence(P, Q, "tv").numpy(), 0.5 * np.abs(p - q).sum(-1), rtol=1e-10)
    np.testing.assert_allclose(f_divergence(P, Q, "chi2").numpy(), ((p - q) ** 2 / q).sum(-1), rtol=1e-8)
    np.testing.assert_allclose(
        f_divergence(P, Q, "forward_kl").numpy(), scipy.stats.entropy(p, q, axis=-1), rtol=1e-10
    )
    np.testing.assert_allclose(
        f_divergence(P, Q, "reverse_kl").numpy(), scipy.stats.entropy(q, p, axis=-1), rtol=1e-10
    )


def test_general_generator_reproduces_named_kinds(gen):
    zp, zq = rand_logits(gen, 6, 9), rand_logits(gen, 6, 9)
    P, Q = Categorical(zp), Categorical(zq)
    torch.testing.assert_close(
        f_divergence(P, Q, lambda t: t * torch.log(t)), f_divergence(P, Q, "forward_kl")
    )
    torch.testing.assert_close(f_divergence(P, Q, lambda t: -torch.log(t)), f_divergence(P, Q, "reverse_kl"))
    torch.testing.assert_close(f_divergence(P, Q, lambda t: 0.5 * (t - 1).abs()), f_divergence(P, Q, "tv"))
    torch.testing.assert_close(f_divergence(P, Q, lambda t: (t - 1) ** 2), f_divergence(P, Q, "chi2"))


def test_f_divergence_bounds(gen):
    # Nearly disjoint supports push JS to ln 2 and TV to 1, never past.
    zp = torch.tensor([[50.0, -50.0], [0.0, 0.0]], dtype=torch.float64)
    zq = torch.tensor([[-50.0, 50.0], [0.0, 0.0]], dtype=torch.float64)
    js = f_divergence(Categorical(zp), Categorical(zq), "js")
    tv = f_divergence(Categorical(zp), Categorical(zq), "tv")
    assert js[0].item() == pytest.approx(math.log(2), rel=1e-9) and js[1].item() == pytest.approx(
        0.0, abs=1e-15
    )
    assert tv[0].item() == pytest.approx(1.0, rel=1e-9) and tv[1].item() == pytest.approx(0.0, abs=1e-15)
    many_p, many_q = rand_logits(gen, 500, 8, scale=10.0), rand_logits(gen, 500, 8, scale=10.0)
    assert (f_divergence(Categorical(many_p), Categorical(many_q), "js") <= math.log(2) + 1e-12).all()
    assert (f_divergence(Categorical(many_p), Categorical(many_q), "tv") <= 1 + 1e-12).all()


def test_f_divergence_errors():
    P = Categorical(torch.zeros(3))
    with pytest.raises(ValueError, match="unknown f-divergence kind 'hellinger'"):
        f_divergence(P, P, "hellinger")
    g = DiagGaussian(torch.zeros(2), torch.zeros(2))
    with pytest.raises(TypeError, match="no closed form"):
        f_divergence(g, g, "js")


# --- Gaussians and chains -------------------------------------------------------------------------


def test_diag_gaussian_kl_matches_torch_distributions(gen):
    m0, m1 = (
        torch.randn(5, 3, generator=gen, dtype=torch.float64),
        torch.randn(5, 3, generator=gen, dtype=torch.float64),
    )
    s0, s1 = (
        torch.randn(5, 3, generator=gen, dtype=torch.float64) * 0.5,
        torch.randn(5, 3, generator=gen, dtype=torch.float64) * 0.5,
    )
    ours = kl(DiagGaussian(m0, s0), DiagGaussian(m1, s1))
    ref = td.kl_divergence(td.Normal(m0, s0.exp()), td.Normal(m1, s1.exp())).sum(-1)
    torch.testing.assert_close(ours, ref)
    ref_mvn = td.kl_divergence(
        td.MultivariateNormal(m0, torch.diag_embed(s0.exp() ** 2)),
        td.MultivariateNormal(m1, torch.diag_embed(s1.exp() ** 2)),
    )
    torch.testing.assert_close(ours, ref_mvn)


def test_gaussian_kl_tiny_differences_keep_precision():
    m = torch.zeros(1, dtype=torch.float32)
    value = kl(DiagGaussian(m, torch.tensor([1e-4])), DiagGaussian(m, torch.zeros(1)))
    # closed form for equal means: 0.5*(e^{2d} - 1 - 2d) ~= d^2 for small d
    assert value.item() == pytest.approx(1e-8, rel=1e-3)
    assert kl(DiagGaussian(m, torch.zeros(1)), DiagGaussian(m, torch.zeros(1))).item() == 0.0


def test_gaussian_log_prob_and_entropy_match_torch(gen):
    m, s = (
        torch.randn(4, 3, generator=gen, dtype=torch.float64),
        torch.randn(4, 3, generator=gen, dtype=torch.float64) * 0.3,
    )
    x = torch.randn(4, 3, generator=gen, dtype=torch.float64)
    ref = td.Independent(td.Normal(m, s.exp()), 1)
    torch.testing.assert_close(DiagGaussian(m, s).log_prob(x), ref.log_prob(x))
    torch.testing.assert_close(DiagGaussian(m, s).entropy(), ref.entropy())


def test_length_one_chain_equals_gaussian_kl(gen):
    m0, m1 = torch.randn(6, 4, generator=gen), torch.randn(6, 4, generator=gen)
    s0, s1 = torch.randn(6, 4, generator=gen) * 0.2, torch.randn(6, 4, generator=gen) * 0.2
    chain = kl(GaussianChain(m0[:, None], s0[:, None]), GaussianChain(m1[:, None], s1[:, None]))
    torch.testing.assert_close(chain, kl(DiagGaussian(m0, s0), DiagGaussian(m1, s1)))


def test_chain_kl_is_sum_of_step_kls_and_log_prob_sums_steps(gen):
    K, D = 5, 3
    m0, m1 = torch.randn(2, K, D, generator=gen), torch.randn(2, K, D, generator=gen)
    s0, s1 = torch.randn(2, K, D, generator=gen) * 0.2, torch.randn(2, K, D, generator=gen) * 0.2
    c0, c1 = GaussianChain(m0, s0), GaussianChain(m1, s1)
    per_step = kl(c0, c1, per_step=True)
    assert per_step.shape == (2, K)
    steps = torch.stack([kl(c0.step(k), c1.step(k)) for k in range(K)], -1)
    torch.testing.assert_close(per_step, steps)
    torch.testing.assert_close(kl(c0, c1), steps.sum(-1))
    x = torch.randn(2, K, D, generator=gen)
    torch.testing.assert_close(c0.log_prob(x), sum(c0.step(k).log_prob(x[:, k]) for k in range(K)))


def test_two_step_linear_gaussian_chain_kl_bounds_marginal_kl():
    """On x0 ~ N(0,1), x1|x0 ~ N(a1 x0 + b1, s1^2), x2|x1 ~ N(a2 x1 + b2, s2^2):
    the chain KL (per-step Gaussians along chains sampled from p) matches its closed form and is
    >= the exact KL between the final marginals of x2 (data processing)."""
    P = dict(a1=0.9, b1=0.2, s1=0.5, a2=1.1, b2=-0.1, s2=0.3)
    Q = dict(a1=0.7, b1=-0.1, s1=0.6, a2=0.8, b2=0.3, s2=0.4)
    g = torch.Generator().manual_seed(1)
    n = 200_000
    x0 = torch.randn(n, 1, generator=g, dtype=torch.float64)
    x1 = P["a1"] * x0 + P["b1"] + P["s1"] * torch.randn(n, 1, generator=g, dtype=torch.float64)

    def chain(par):
        mean = torch.stack([par["a1"] * x0 + par["b1"], par["a2"] * x1 + par["b2"]], dim=1)  # [n, 2, 1]
        log_std = torch.log(torch.tensor([[par["s1"]], [par["s2"]]], dtype=torch.float64)).expand_as(mean)
        return GaussianChain(mean, log_std)

    est = mean_and_stderr(kl(chain(P), chain(Q)))

    def step_kl(sp, sq, mean_sq_diff):
        return math.log(sq / sp) + (sp**2 + mean_sq_diff) / (2 * sq**2) - 0.5

    ex1, ex1sq = P["b1"], P["a1"] ** 2 + P["s1"] ** 2 + P["b1"] ** 2
    da1, db1, da2, db2 = P["a1"] - Q["a1"], P["b1"] - Q["b1"], P["a2"] - Q["a2"], P["b2"] - Q["b2"]
    closed = step_kl(P["s1"], Q["s1"], da1**2 + db1**2) + step_kl(
        P["s2"], Q["s2"], da2**2 * ex1sq + 2 * da2 * db2 * ex1 + db2**2
    )
    assert abs(est.mean - closed) < 4 * est.stderr

    def marginal(par):
        mean = par["a2"] * par["b1"] + par["b2"]
        var = par["a2"] ** 2 * (par["a1"] ** 2 + par["s1"] ** 2) + par["s2"] ** 2
        return mean, math.sqrt(var)

    (mp, sp), (mq, sq) = marginal(P), marginal(Q)
    marginal_kl = td.kl_divergence(td.Normal(mp, sp), td.Normal(mq, sq)).item()
    assert closed >= marginal_kl
    assert est.mean - 4 * est.stderr >= marginal_kl


def test_forward_and_reverse_helpers_name_directions(gen):
    base = Categorical(rand_logits(gen, 10))
    policy = Categorical(rand_logits(gen, 10))
    torch.testing.assert_close(
        forward_kl(base, policy),
        td.kl_divergence(td.Categorical(logits=base.logits), td.Categorical(logits=policy.logits)),
    )
    torch.testing.assert_close(
        reverse_kl(base, policy),
        td.kl_divergence(td.Categorical(logits=policy.logits), td.Categorical(logits=base.logits)),
    )
    assert not torch.allclose(forward_kl(base, policy), reverse_kl(base, policy))


def test_family_and_shape_errors_are_clear():
    with pytest.raises(TypeError, match="same family"):
        kl(Categorical(torch.zeros(3)), DiagGaussian(torch.zeros(3), torch.zeros(3)))
    with pytest.raises(ValueError, match="event shapes differ"):
        kl(
            GaussianChain(torch.zeros(2, 5, 3), torch.zeros(2, 5, 3)),
            GaussianChain(torch.zeros(2, 4, 3), torch.zeros(2, 4, 3)),
        )
    with pytest.raises(ValueError, match="vocabularies differ"):
        kl(Categorical(torch.zeros(2, 3)), Categorical(torch.zeros(2, 4)))
    with pytest.raises(ValueError, match="mask shape"):
        kl(
            Categorical(torch.zeros(2, 3)),
            Categorical(torch.zeros(2, 3)),
            mask=torch.ones(3, dtype=torch.bool),
        )
    with pytest.raises(ValueError, match=r"\[\.\.\., K, D\]"):
        GaussianChain(torch.zeros(3), torch.zeros(3))
    with pytest.raises(TypeError, match="floating-point"):
        Categorical(torch.zeros(3, dtype=torch.long))


# --- sample estimators ----------------------------------------------------------------------------


@pytest.mark.parametrize("estimator", ["k1", "k3"])
def test_unbiased_estimators_agree_with_exact_kl(estimator):
    g = torch.Generator().manual_seed(2)
    p = td.Normal(torch.tensor(0.0, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64))
    q = td.Normal(torch.tensor(0.4, dtype=torch.float64), torch.tensor(1.3, dtype=torch.float64))
    x = p.mean + p.stddev * torch.randn(100_000, generator=g, dtype=torch.float64)
    est = mean_and_stderr(kl_from_logprobs(p.log_prob(x), q.log_prob(x), estimator))
    exact = td.kl_divergence(p, q).item()
    assert abs(est.mean - exact) < 4 * est.stderr
    assert est.n == 100_000


def test_k2_is_biased_but_close_and_k3_nonnegative():
    torch.manual_seed(3)  # td.Normal.sample draws from the global generator
    p = td.Normal(torch.tensor(0.0, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64))
    q = td.Normal(torch.tensor(0.1, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64))
    x = p.sample((200_000,))
    logp, logq = p.log_prob(x), q.log_prob(x)
    exact = td.kl_divergence(p, q).item()  # 0.005
    # For equal variances, log r = -(0.1 x - 0.005) in closed form: E[k2] = 0.5 (0.01 + 0.005^2)
    assert mean_and_stderr(kl_from_logprobs(logp, logq, "k2")).mean == pytest.approx(
        0.5 * (0.01 + 0.005**2), rel=0.02
    )
    assert exact == pytest.approx(0.005)
    assert (kl_from_logprobs(logp, logq, "k3") >= 0).all()
    assert (kl_from_logprobs(logp, logq, "k1") < 0).any()  # k1 samples can be negative


def test_estimators_do_not_overflow_on_large_log_ratios():
    from vla_razor.divergence.estimators import MAX_LOG_RATIO

    logp = torch.tensor([0.0, 0.0, 0.0, 0.0], dtype=torch.float32)
    logq = torch.tensor([30.0, -100.0, 1e-7, 100.0], dtype=torch.float32)
    k3 = kl_from_logprobs(logp, logq, "k3")
    assert torch.isfinite(k3).all()
    assert k3[0].item() == pytest.approx(math.exp(30) - 1 - 30, rel=1e-12)  # below the clamp: k3 exactly
    assert k3[1].item() == pytest.approx(math.expm1(-100) + 100, rel=1e-12)
    assert k3[2].item() == pytest.approx(0.5e-14, rel=1e-3)  # expm1 keeps precision near r = 1
    assert k3[3].item() == pytest.approx(
        math.expm1(MAX_LOG_RATIO) - 100, rel=1e-12
    )  # above: the clamped ratio


@pytest.mark.parametrize("estimator", ["k1", "k2", "k3"])
def test_every_estimator_stays_finite_with_finite_gradients_at_log_ratios_of_1000(estimator):
    log_ratio = torch.tensor(
        [-1000.0, -709.5, -1.0, 0.0, 1.0, 709.5, 1000.0], dtype=torch.float64, requires_grad=True
    )
    values = kl_from_logprobs(torch.zeros(7, dtype=torch.float64), log_ratio, estimator)
    assert torch.isfinite(values).all() and torch.isfinite(values.sum())
    # a mean over a million such samples is still finite (the clamp bounds k3's ratio term by e^50)
    assert math.isfinite(values.abs().max().item() * 1e6)
    values.sum().backward()
    assert torch.isfinite(log_ratio.grad).all()
    if estimator != "k1":
        assert (values >= 0).all()
        ordered = values.detach()[
            3:
        ]  # k2 and k3 grow with |log r| on each side of 0 (monotone, clamp or not)
        assert (ordered[1:] >= ordered[:-1]).all()
    assert values[3].item() == 0.0


def test_estimator_errors():
    with pytest.raises(ValueError, match="unknown KL estimator 'k4'"):
        kl_from_logprobs(torch.zeros(2), torch.zeros(2), "k4")
    with pytest.raises(ValueError, match="same shape"):
        kl_from_logprobs(torch.zeros(2), torch.zeros(3))


def test_mean_and_stderr_against_numpy(gen):
    values = torch.randn(1000, generator=gen, dtype=torch.float64)
    mask = torch.rand(1000, generator=gen) > 0.3
    est = mean_and_stderr(values, mask)
    kept = values[mask].numpy()
    assert est.mean == pytest.approx(kept.mean())
    assert est.stderr == pytest.approx(kept.std(ddof=1) / math.sqrt(len(kept)))
    assert est.n == len(kept)
    assert est.as_metrics("kl/forward") == {
        "kl/forward": est.mean,
        "kl/forward/stderr": est.stderr,
        "kl/forward/n": float(est.n),
    }


# --- numerics at the extremes ---------------------------------------------------------------------


def test_exact_kls_stay_finite_and_non_negative_at_extreme_logits():
    from vla_razor.divergence import Categorical, categorical_kl, kl

    g = torch.Generator().manual_seed(11)
    for scale in (1e3, 1e4, 1e6):
        zp = scale * torch.randn(64, 50, generator=g)
        zq = scale * torch.randn(64, 50, generator=g)
        for dtype in (torch.float32, torch.float64):
            exact = kl(Categorical(zp.to(dtype)), Categorical(zq.to(dtype)))
            assert torch.isfinite(exact).all() and (exact >= 0).all()
            # the reference in float64 log space (torch.distributions says inf here: q's probabilities
            # underflow)
            lp, lq = torch.log_softmax(zp.double(), -1), torch.log_softmax(zq.double(), -1)
            ref = (lp.exp() * (lp - lq)).sum(-1)
            torch.testing.assert_close(
                exact.double(), ref, rtol=1e-4 if dtype == torch.float32 else 1e-10, atol=1e-6 * scale
            )
        chunked = categorical_kl(zp, zq)
        assert torch.isfinite(chunked).all() and (chunked >= 0).all()
    same = 1e6 * torch.randn(8, 50, generator=g)
    assert (kl(Categorical(same), Categorical(same)) == 0).all()


def test_exact_gaussian_kls_stay_finite_and_non_negative_at_tiny_standard_deviations():
    from vla_razor.divergence import DiagGaussian, GaussianChain, kl

    mean = torch.tensor([0.0, 1e-3, 10.0, -5.0], dtype=torch.float64)
    for log_std in (-20.0, -40.0):  # std 2e-9, 4e-18: the variance ratio spans far beyond float32's range
        p = DiagGaussian(mean, torch.full_like(mean, log_std))
        q = DiagGaussian(mean + 1e-6, torch.full_like(mean, log_std + 3.0))
        for a, b in ((p, q), (q, p)):
            exact = kl(a, b)
            ref = td.kl_divergence(td.Normal(a.mean, a.log_std.exp()), td.Normal(b.mean, b.log_std.exp()))
            assert torch.isfinite(exact).all() and (exact >= 0).all()
            torch.testing.assert_close(exact, ref.sum(-1), rtol=1e-9, atol=0)  # a DiagGaussian sums its dims
        f32 = kl(
            DiagGaussian(p.mean.float(), p.log_std.float()), DiagGaussian(q.mean.float(), q.log_std.float())
        )
        assert torch.isfinite(f32).all() and (f32 >= 0).all()
    chain = GaussianChain(torch.zeros(2, 5, 3), torch.full((2, 5, 3), -30.0))
    assert (kl(chain, chain) == 0).all()
