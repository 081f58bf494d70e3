"""The policy families (flow, diffusion, gaussian) and the value critic behind one interface.

Real models at tiny sizes (hidden 32, 1 layer, chunk 4) on canonical observations built directly, so
no simulator is needed. Policies skip the sentence encoder (embed_language=False) except in the one
test that checks the real instruction table.
"""

import copy
import json
import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from vla_razor.divergence import DiagGaussian, GaussianChain, kl
from vla_razor.envs.observations import random_observation
from vla_razor.envs.registry import TASKS
from vla_razor.errors import CheckpointError
from vla_razor.policies.base import Chain, ChainPolicy
from vla_razor.policies.critic import CriticConfig, ValueCritic
from vla_razor.policies.diffusion import DiffusionConfig, DiffusionPolicy, cosine_betas, linear_betas
from vla_razor.policies.factory import make_policy
from vla_razor.policies.serialization import CONFIG_NAME, WEIGHTS_NAME

TINY = {"hidden": 32, "num_layers": 1, "chunk_size": 4}
H, A = TINY["chunk_size"], 7
# variant id -> (family, extra config); the three families plus their other stochastic options
VARIANTS = {
    "flow_sde": ("flow", {}),
    "flow_noise": ("flow", {"noise_method": "noise"}),
    "diffusion": ("diffusion", {}),
    "gaussian": ("gaussian", {}),
    "gaussian_state_std": ("gaussian", {"state_dependent_std": True}),
}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # Tiny models: with 2 threads on the 2-core dev machine (often busy with other jobs), OpenMP
    # spin-waiting made each step up to ~50x slower than with 1 thread.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def build(variant: str, perturb: bool = True, **overrides) -> ChainPolicy:
    """A tiny policy; ``perturb`` jitters every parameter so the zero-initialised output heads do
    not make the policy ignore its observation (which would let obs-handling bugs pass)."""
    family, extra = VARIANTS[variant]
    torch.manual_seed(0)
    policy = make_policy(family, {**TINY, **extra, **overrides}, embed_language=False)
    if perturb:
        g = gen(1)
        with torch.no_grad():
            for p in policy.parameters():
                p.add_(0.1 * torch.randn(p.shape, generator=g))
    return policy


def num_steps(policy: ChainPolicy) -> int:
    return getattr(policy.config, "num_steps", 1)


def adam_bc_step(policy: ChainPolicy, obs, actions, lr=1e-2) -> None:
    opt = torch.optim.Adam(policy.parameters(), lr=lr)
    loss = policy.bc_loss(obs, actions, generator=gen(3))
    opt.zero_grad()
    loss.backward()
    opt.step()


# --- the interface, every family ------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("mode", ["stochastic", "deterministic"])
def test_shapes(variant, mode):
    policy, obs = build(variant), random_observation(5)
    K = num_steps(policy)
    actions, chain = policy.sample(obs, mode, generator=gen(0))
    assert actions.shape == (5, H, A)
    assert chain.points.shape == (5, K + 1, H, A) and chain.num_steps == K
    assert torch.equal(chain.actions, actions) and chain.stochastic == (mode == "stochastic")
    dists = policy.step_distributions(obs, chain)
    assert isinstance(dists, GaussianChain)
    assert dists.mean.shape == dists.log_std.shape == (5, K, H * A)
    assert policy.log_prob(obs, chain).shape == (5,)
    with pytest.raises(ValueError, match="chain points must be"):
        policy.step_distributions(obs, Chain(chain.points[:, :-1], True))  # one step short


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("mode", ["stochastic", "deterministic"])
def test_log_prob_is_the_sum_of_independent_step_log_densities(variant, mode):
    policy, obs = build(variant), random_observation(6)
    _, chain = policy.sample(obs, mode, generator=gen(0))
    dists = policy.step_distributions(obs, chain)
    reference = Normal(dists.mean, dists.log_std.exp()).log_prob(chain.points[:, 1:].flatten(2)).sum((1, 2))
    ours = policy.log_prob(obs, chain)
    assert torch.isfinite(ours).all()  # every step has a positive std, the last one too
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("variant", VARIANTS)
def test_step_distributions_are_the_steps_that_sample_takes(variant):
    """step_distributions (one batched pass) must evaluate the same step, at the same time, as sample."""
    policy, obs = build(variant), random_observation(64)
    if (
        variant != "flow_sde"
    ):  # Flow-SDE's deterministic mode is the ODE, whose step is not the SDE step's mean
        _, det = policy.sample(obs, "deterministic", generator=gen(0))
        dists = policy.step_distributions(obs, det)
        torch.testing.assert_close(dists.mean, det.points[:, 1:].flatten(2), rtol=1e-4, atol=1e-4)
    # A stochastic chain's outputs, standardised by its step Gaussians, are standard normal.
    _, sto = policy.sample(obs, "stochastic", generator=gen(1))
    dists = policy.step_distributions(obs, sto)
    z = (sto.points[:, 1:].flatten(2) - dists.mean) / dists.log_std.exp()
    assert abs(z.mean().item()) < 0.05 and abs(z.std().item() - 1.0) < 0.05


@pytest.mark.parametrize("variant", VARIANTS)
def test_kl_to_a_frozen_copy_is_zero_then_positive_after_a_bc_step(variant):
    policy, obs = build(variant), random_observation(8)
    frozen = copy.deepcopy(policy).requires_grad_(False)
    _, chain = policy.sample(obs, "stochastic", generator=gen(0))
    before = kl(policy.step_distributions(obs, chain), frozen.step_distributions(obs, chain))
    assert before.shape == (8,) and torch.equal(before, torch.zeros(8))
    adam_bc_step(policy, obs, torch.rand(8, H, A, generator=gen(2)) * 2 - 1)
    after = kl(policy.step_distributions(obs, chain), frozen.step_distributions(obs, chain))
    assert torch.isfinite(after).all() and (after > 0).all()


@pytest.mark.parametrize("variant", VARIANTS)
def test_save_and_load_round_trip_bit_exactly(variant, tmp_path):
    policy, obs = build(variant), random_observation(4)
    policy.save_pretrained(tmp_path)
    loaded = ChainPolicy.from_pretrained(tmp_path)
    assert type(loaded) is type(policy) and loaded.config == policy.config
    _, chain = policy.sample(obs, "stochastic", generator=gen(0))
    assert torch.equal(loaded.log_prob(obs, chain), policy.log_prob(obs, chain))
    for mode in ("deterministic", "stochastic"):
        assert torch.equal(
            loaded.sample(obs, mode, generator=gen(5))[0], policy.sample(obs, mode, generator=gen(5))[0]
        )
    assert type(policy).from_pretrained(tmp_path).family == policy.family  # the family's own loader too


@pytest.mark.parametrize("variant", ["flow_sde", "diffusion", "gaussian"])
def test_from_pretrained_refuses_corrupt_weights_and_unknown_config_keys(variant, tmp_path):
    build(variant).save_pretrained(tmp_path / "bad_weights")
    (tmp_path / "bad_weights" / WEIGHTS_NAME).write_bytes(b"\x00not a safetensors file" * 8)
    with pytest.raises(CheckpointError, match="cannot be read.*truncated or corrupt"):
        ChainPolicy.from_pretrained(tmp_path / "bad_weights")

    build(variant).save_pretrained(tmp_path / "bad_config")
    config_path = tmp_path / "bad_config" / CONFIG_NAME
    meta = json.loads(config_path.read_text())
    meta["config"]["num_stepz"] = 3
    config_path.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="unknown key 'config.num_stepz'"):
        ChainPolicy.from_pretrained(tmp_path / "bad_config")


@pytest.mark.parametrize("variant", VARIANTS)
def test_sampling_is_reproducible(variant):
    policy, obs = build(variant), random_observation(4)
    for mode in ("deterministic", "stochastic"):
        first, chain1 = policy.sample(obs, mode, generator=gen(7))
        again, chain2 = policy.sample(obs, mode, generator=gen(7))
        assert torch.equal(first, again) and torch.equal(chain1.points, chain2.points)
    # a different seed changes a stochastic sample, so the generator is really the source of noise
    assert not torch.equal(policy.sample(obs, "stochastic", generator=gen(8))[0], first)


def bc_targets(obs) -> torch.Tensor:
    """A fixed chunk per observation: a smooth deterministic function of two state entries, in [-0.6, 0.6]."""
    s = obs["state"]
    w = torch.linspace(-1, 1, H * A).reshape(H, A)
    return 0.6 * torch.tanh(s[:, 0, None, None] * w + s[:, 1, None, None] * w.flip(0))


# Measured on the 2-core dev machine, 1 thread (3 init seeds for flow and diffusion): CPU seconds;
# mean |deterministic sample - target| at the end (predicting 0 gives 0.267); and the loss ratio.
#   gaussian   300 steps   0.4 s     error 0.003          loss ratio > 1000
#   flow      1500 steps   6-9 s     error 0.022-0.024    loss ratio 31-33
#   diffusion 1500 steps   6-9 s     error 0.010-0.016    loss ratio 300-500
# The thresholds below (error < 0.08, ratio > 10) leave a 3x margin. (At 1000 steps one diffusion run
# still ended at error 0.18: fewer steps would be flaky.)
BC_STEPS = {"flow_sde": 1500, "diffusion": 1500, "gaussian": 300}


@pytest.mark.parametrize("variant", BC_STEPS)
def test_bc_fits_a_tiny_dataset(variant):
    policy, obs = build(variant, perturb=False), random_observation(64)
    targets = bc_targets(obs)

    def eval_loss():  # averaged over fixed noise draws: the chain losses are stochastic
        with torch.no_grad():
            return sum(policy.bc_loss(obs, targets, generator=gen(100 + s)).item() for s in range(8)) / 8

    initial = eval_loss()
    opt = torch.optim.Adam(policy.parameters(), lr=3e-3)
    g = gen(0)
    for _ in range(BC_STEPS[variant]):
        loss = policy.bc_loss(obs, targets, generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    final = eval_loss()
    assert initial / final > 10, (initial, final)
    actions, _ = policy.sample(obs, "deterministic", generator=gen(1))
    error = (actions - targets).abs().mean().item()
    assert error < 0.08 < targets.abs().mean().item(), error


# --- diffusion: the DDPM formulas against closed forms ----------------------------------------------


def test_beta_schedules_match_their_closed_forms():
    K, s = 10, 0.008
    policy = DiffusionPolicy(DiffusionConfig(**TINY, num_steps=K), embed_language=False)
    f = [math.cos((i / K + s) / (1 + s) * math.pi / 2) ** 2 for i in range(K + 1)]
    expected = torch.tensor([f[i] / f[0] for i in range(K)])  # the last beta is clipped at 0.999
    torch.testing.assert_close(policy.alpha_bar[:K], expected, rtol=1e-6, atol=1e-7)
    assert policy.betas[K].item() == pytest.approx(0.999)
    assert (policy.betas[1:] > 0).all() and (policy.betas[1:] <= 0.999).all()
    # linear: DDPM's 1e-4 .. 0.02 at K = 1000, and the same total noise for any K
    torch.testing.assert_close(
        linear_betas(1000), torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64), atol=2e-5, rtol=0.015
    )
    for k in (5, 10, 100):
        assert torch.prod(1 - linear_betas(k)).item() == pytest.approx(math.exp(-(0.1 + 19.9 / 2)), rel=1e-9)
    assert cosine_betas(K).shape == (K,)


@pytest.mark.parametrize("schedule", ["cosine", "linear"])
def test_forward_noising_and_posterior_match_bayes(schedule):
    K = 6
    policy = DiffusionPolicy(
        DiffusionConfig(**TINY, num_steps=K, beta_schedule=schedule), embed_language=False
    )
    betas = (cosine_betas(K) if schedule == "cosine" else linear_betas(K)).tolist()
    g = gen(0)
    x0, x, eps = (torch.randn(K, H, A, generator=g) for _ in range(3))
    i = torch.arange(1, K + 1)
    alpha_bar = [math.prod(1 - b for b in betas[:n]) for n in range(K + 1)]  # alpha_bar[0] = 1

    # q(x_i | x0), from the product of the single-step noising kernels
    ab = torch.tensor(alpha_bar[1:])[:, None, None]
    torch.testing.assert_close(policy.q_sample(x0, i, eps), ab.sqrt() * x0 + (1 - ab).sqrt() * eps)

    # q(x_{i-1} | x_i, x0) ∝ N(x_{i-1}; sqrt(ab_{i-1}) x0, 1 - ab_{i-1}) N(x_i; sqrt(alpha_i) x_{i-1},
    # beta_i): a product of Gaussians in x_{i-1}, precision-weighted.
    mean, var = policy.posterior(x0, x, i)
    for n in range(2, K + 1):
        prior_mean, prior_var = math.sqrt(alpha_bar[n - 1]) * x0[n - 1], 1 - alpha_bar[n - 1]
        alpha, beta = 1 - betas[n - 1], betas[n - 1]
        post_var = 1 / (1 / prior_var + alpha / beta)
        post_mean = post_var * (prior_mean / prior_var + math.sqrt(alpha) * x[n - 1] / beta)
        torch.testing.assert_close(mean[n - 1], post_mean, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(var[n - 1], torch.full_like(var[n - 1], post_var), rtol=1e-4, atol=1e-7)
    # the step into x_0 is deterministic given x0: mean x0, variance 0
    torch.testing.assert_close(mean[0], x0[0])
    assert torch.equal(var[0], torch.zeros_like(var[0]))


@pytest.mark.parametrize("clip_sample", [True, False])
def test_diffusion_steps_follow_the_ddpm_reverse_formula(clip_sample):
    """With a known noise estimate, every step's mean/std must be the DDPM posterior at x0_hat, at t = i/K."""
    K, min_std = 4, 0.1
    policy = DiffusionPolicy(
        DiffusionConfig(**TINY, num_steps=K, clip_sample=clip_sample, min_std=min_std), embed_language=False
    )
    policy.expert.forward = lambda x, t, tokens: 0.5 * x + t[:, None, None]  # eps_hat depends on the time too
    obs = random_observation(3)
    _, chain = policy.sample(obs, "stochastic", generator=gen(0))
    dists = policy.step_distributions(obs, chain)
    betas = cosine_betas(K).tolist()
    alpha_bar = [math.prod(1 - b for b in betas[:n]) for n in range(K + 1)]
    for k in range(K):
        n = K - k  # step k goes from index n to n - 1
        x = chain.points[:, k]
        eps_hat = 0.5 * x + n / K
        x0 = (x - math.sqrt(1 - alpha_bar[n]) * eps_hat) / math.sqrt(alpha_bar[n])
        x0 = x0.clamp(-1, 1) if clip_sample else x0
        var = betas[n - 1] * (1 - alpha_bar[n - 1]) / (1 - alpha_bar[n])
        mean = (
            betas[n - 1] * math.sqrt(alpha_bar[n - 1]) * x0
            + (1 - alpha_bar[n - 1]) * math.sqrt(1 - betas[n - 1]) * x
        ) / (1 - alpha_bar[n])
        torch.testing.assert_close(dists.mean[:, k], mean.flatten(1), rtol=1e-4, atol=1e-4)
        expected_std = max(math.sqrt(var), min_std)
        torch.testing.assert_close(
            dists.log_std[:, k].exp(), torch.full((3, H * A), expected_std), rtol=1e-5, atol=1e-6
        )
    assert (
        dists.log_std[:, -1].exp().allclose(torch.tensor(min_std))
    )  # the last step: posterior var 0, floored


# --- gaussian -------------------------------------------------------------------------------------


def test_gaussian_chain_kl_is_the_kl_of_the_action_gaussians():
    obs = random_observation(6)
    p, q = build("gaussian_state_std"), build("gaussian_state_std")
    with torch.no_grad():
        for param in q.parameters():
            param.add_(0.05 * torch.randn(param.shape, generator=gen(9)))
    _, chain = p.sample(obs, "stochastic", generator=gen(0))
    assert torch.equal(chain.points[:, 0], torch.zeros(6, H, A))  # the single step's dummy input
    chain_kl = kl(p.step_distributions(obs, chain), q.step_distributions(obs, chain))
    dp, dq = p.distribution(obs), q.distribution(obs)
    torch.testing.assert_close(
        chain_kl, kl(DiagGaussian(dp.mean, dp.log_std), DiagGaussian(dq.mean, dq.log_std))
    )
    reference = kl_divergence(Normal(dp.mean, dp.std), Normal(dq.mean, dq.std)).sum(-1)
    torch.testing.assert_close(chain_kl, reference, rtol=1e-4, atol=1e-5)
    assert (chain_kl > 0).all()


def test_gaussian_deterministic_mode_is_the_mean_and_bc_leaves_the_std_alone():
    policy, obs = build("gaussian"), random_observation(4)
    mean = policy.distribution(obs).mean.reshape(4, H, A)
    assert torch.equal(policy.sample(obs, "deterministic", generator=gen(0))[0], mean)
    assert torch.equal(policy.sample(obs, "deterministic", generator=gen(1))[0], mean)
    fresh = build("gaussian", perturb=False)
    torch.testing.assert_close(
        fresh.distribution(obs).std, torch.full((4, H * A), math.exp(-1.0))
    )  # init_log_std
    log_std = fresh.log_std_raw.detach().clone()
    adam_bc_step(fresh, obs, torch.rand(4, H, A, generator=gen(2)))
    assert torch.equal(fresh.log_std_raw, log_std)  # bc_loss is the MSE of the mean (see its docstring)


# --- the language table (the one test that loads the sentence encoder) ------------------------------


def test_real_instruction_table_differs_between_tasks_and_survives_saving(tmp_path):
    family, extra = VARIANTS["gaussian"]
    policy = make_policy(family, {**TINY, **extra}, embed_language=True)
    table = policy.obs_encoder.instruction_table
    assert table.shape == (len(TASKS), 384)
    torch.testing.assert_close(table.norm(dim=-1), torch.ones(len(TASKS)))
    cosine = table @ table.T
    assert (cosine - torch.eye(len(TASKS))).max() < 0.99  # no two tasks share an instruction embedding
    obs = random_observation(2)
    obs["task_id"] = torch.tensor([0, 1])
    obs["proprio"][1], obs["state"][1] = obs["proprio"][0], obs["state"][0]
    tokens = policy.encode(obs)
    assert not torch.allclose(tokens[0, 0], tokens[1, 0])  # the language token tells the tasks apart
    torch.testing.assert_close(tokens[0, 1:], tokens[1, 1:])  # and only the language token
    policy.save_pretrained(tmp_path)
    assert torch.equal(ChainPolicy.from_pretrained(tmp_path).obs_encoder.instruction_table, table)


# --- the value critic -------------------------------------------------------------------------------


def tiny_critic(seed: int = 0) -> ValueCritic:
    torch.manual_seed(seed)
    return ValueCritic(CriticConfig(hidden=32, num_layers=2), embed_language=False)


def test_critic_output_shape():
    assert tiny_critic()(random_observation(7)).shape == (7,)


def test_critic_fits_values():
    critic, obs = tiny_critic(), random_observation(64)
    values = obs["state"][:, 0] - 0.5 * obs["state"][:, 1] ** 2 + obs["proprio"][:, 0]
    opt = torch.optim.Adam(critic.parameters(), lr=3e-3)
    initial = torch.nn.functional.mse_loss(critic(obs), values).item()
    for _ in range(300):
        loss = torch.nn.functional.mse_loss(critic(obs), values)
        opt.zero_grad()
        loss.backward()
        opt.step()
    final = torch.nn.functional.mse_loss(critic(obs), values).item()
    assert final < initial / 20, (initial, final)


def test_critic_save_and_load(tmp_path):
    critic, obs = tiny_critic(), random_observation(5)
    critic.save_pretrained(tmp_path)
    loaded = ValueCritic.from_pretrained(tmp_path)
    assert loaded.config == critic.config
    assert torch.equal(loaded(obs), critic(obs))
    meta = json.loads((tmp_path / CONFIG_NAME).read_text())
    meta["config"]["hiden"] = 8
    (tmp_path / CONFIG_NAME).write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="unknown key 'config.hiden'"):
        ValueCritic.from_pretrained(tmp_path)
    build("gaussian").save_pretrained(tmp_path / "policy")
    with pytest.raises(CheckpointError, match="has no 'kind': not a vla-razor critic"):
        ValueCritic.from_pretrained(tmp_path / "policy")


# --- normalisation: the chain lives in normalised units, chains and densities in action units ----------


@pytest.mark.parametrize("variant", VARIANTS)
def test_action_normalisation_is_an_exact_affine_change_of_the_chain(variant):
    """Same weights and noise, with and without normalisation: the normalised policy's chain is
    ``center + scale * z`` of the plain one, and its log-density differs by the Jacobian
    ``-sum log scale`` per step and action."""
    plain = build(variant)
    scaled = copy.deepcopy(plain)
    obs = random_observation(6, seed=2)
    actions = 0.2 * torch.randn(500, H, A, generator=gen(4)) + torch.linspace(-0.5, 0.5, A)
    scaled.set_normalization({**obs, "task_id": obs["task_id"]}, actions)
    flat = actions.reshape(-1, A)
    low, high = flat.min(0).values, flat.max(0).values
    assert torch.allclose(scaled.action_center, (high + low) / 2) and torch.allclose(
        scaled.action_scale, (high - low) / 2
    )
    # the observation statistics are the same in both (only the action scale should differ here)
    plain.obs_encoder.load_state_dict(scaled.obs_encoder.state_dict())
    for mode in ("stochastic", "deterministic"):
        a_plain, chain_plain = plain.sample(obs, mode, generator=gen(5))
        a_scaled, chain_scaled = scaled.sample(obs, mode, generator=gen(5))
        assert torch.allclose(a_scaled, scaled.action_center + scaled.action_scale * a_plain, atol=1e-5)
        # every step output (the Gaussian family's step input is a fixed dummy of zeros)
        assert torch.allclose(
            chain_scaled.points[:, 1:], scaled.denormalize_actions(chain_plain.points[:, 1:]), atol=1e-5
        )
    _, chain_scaled = scaled.sample(obs, "stochastic", generator=gen(6))
    _, chain_plain = plain.sample(obs, "stochastic", generator=gen(6))
    jacobian = num_steps(plain) * H * scaled.action_scale.log().sum()
    assert torch.allclose(
        scaled.log_prob(obs, chain_scaled), plain.log_prob(obs, chain_plain) - jacobian, atol=1e-3
    )
    assert (
        kl(scaled.step_distributions(obs, chain_scaled), scaled.step_distributions(obs, chain_scaled))
        .abs()
        .max()
        == 0
    )


def test_state_is_normalised_per_task():
    policy = build("flow_sde", perturb=False)
    n = 400
    obs = random_observation(n, seed=3)
    obs["task_id"] = torch.tensor([0, 5] * (n // 2))
    obs["state"] = torch.where(
        obs["task_id"][:, None] == 0, obs["state"] * 0.1 + 2.0, obs["state"] * 3.0 - 1.0
    )
    obs["state_mask"] = torch.ones_like(obs["state"])
    policy.set_normalization(obs, torch.randn(n, H, A))
    enc = policy.obs_encoder
    for task, (mean, std) in {0: (2.0, 0.1), 5: (-1.0, 3.0)}.items():
        assert enc.state_mean[task].mean().item() == pytest.approx(mean, abs=0.05 * std + 0.02)
        assert enc.state_std[task].mean().item() == pytest.approx(std, rel=0.1)
    assert torch.equal(enc.state_mean[1], torch.zeros(enc.state_mean.shape[1]))  # absent tasks stay identity
    assert torch.equal(enc.state_std[1], torch.ones(enc.state_std.shape[1]))


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("mode", ["stochastic", "deterministic"])
def test_sampled_chain_carries_the_step_gaussians_it_came_from(variant, mode):
    policy = build(variant)
    obs = random_observation(5, seed=4)
    _, chain = policy.sample(obs, mode, generator=gen(2))
    again = policy.step_distributions(obs, chain)
    assert torch.allclose(chain.steps.mean, again.mean, atol=1e-5) and torch.allclose(
        chain.steps.log_std.expand_as(again.mean), again.log_std.expand_as(again.mean), atol=1e-5
    )
    if (
        mode == "stochastic"
    ):  # the points really are draws from those Gaussians: standardised residuals ~ N(0, 1)
        z = (chain.points[:, 1:].flatten(2) - chain.steps.mean) / chain.steps.std
        assert abs(z.mean().item()) < 0.2 and 0.8 < z.std().item() < 1.2


def test_from_pretrained_names_an_unknown_family(tmp_path):
    build("flow_sde").save_pretrained(tmp_path)
    meta = json.loads((tmp_path / CONFIG_NAME).read_text())
    (tmp_path / CONFIG_NAME).write_text(json.dumps({**meta, "family": "transformer"}))
    with pytest.raises(ValueError, match="unknown policy family 'transformer'; known: "):
        ChainPolicy.from_pretrained(tmp_path)
