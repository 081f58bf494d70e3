"""The flow-matching VLA: Flow-SDE keeps the ODE's marginals, exact chain likelihoods, real observations."""

import math

import numpy as np
import pytest
import torch
import torch.distributions as td

from vla_razor.divergence import kl
from vla_razor.envs.observations import random_observation
from vla_razor.policies.factory import make_policy
from vla_razor.policies.flow import FlowConfig, FlowPolicy, flow_sde_step

MU = torch.tensor([0.6, -0.3], dtype=torch.float64)
S = 0.4  # target a ~ N(MU, S^2 I)


def exact_velocity(x: torch.Tensor, t: float) -> torch.Tensor:
    """E[eps - a | x_t] for x_t = (1 - t) a + t eps with a Gaussian target: the ideal rectified-flow field."""
    var = (1 - t) ** 2 * S**2 + t**2
    centred = x - (1 - t) * MU
    return (t - (1 - t) * S**2) / var * centred - MU


def integrate(
    n: int, steps: int, stop_at: float, kind: str, noise_level: float = 0.7, seed: int = 0
) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, generator=g, dtype=torch.float64)
    dt = 1.0 / steps
    for k in range(steps):
        t = 1.0 - k * dt
        if t <= stop_at + 1e-9:
            break
        v = exact_velocity(x, t)
        if kind == "ode":
            x = x - dt * v
        else:
            mean, std = flow_sde_step(x, v, torch.tensor(t, dtype=torch.float64), dt, noise_level)
            if kind == "sde_without_drift_correction":
                mean = x - dt * v
            x = mean + std * torch.randn(x.shape, generator=g, dtype=torch.float64)
    return x


@pytest.mark.parametrize("stop_at", [0.5, 0.0])
def test_flow_sde_keeps_the_ode_marginals(stop_at):
    """Tolerance: 0.04 on means and 6% on stds with 20k samples and 100 steps (sampling error ~0.003,
    Euler error a few 1e-3); dropping the SDE's drift correction misses by far more."""
    n, steps = 20_000, 100
    ode, sde = integrate(n, steps, stop_at, "ode"), integrate(n, steps, stop_at, "sde", seed=1)
    t = stop_at
    true_mean = (1 - t) * MU
    true_std = math.sqrt((1 - t) ** 2 * S**2 + t**2)
    for samples in (ode, sde):
        assert torch.allclose(samples.mean(0), true_mean, atol=0.04)
        assert torch.allclose(samples.std(0), torch.full((2,), true_std, dtype=torch.float64), rtol=0.06)
    wrong = integrate(n, steps, stop_at, "sde_without_drift_correction", seed=2)
    assert (wrong.std(0) / true_std - 1).abs().max() > 0.15  # the check has the power to catch a wrong step


@pytest.mark.parametrize("noise_method", ["sde", "noise"])
def test_chain_log_prob_is_the_sum_of_step_gaussians(noise_method):
    policy = FlowPolicy(
        FlowConfig(hidden=32, num_layers=1, chunk_size=4, num_steps=4, noise_method=noise_method),
        embed_language=False,
    )
    obs = random_observation(6)
    _, chain = policy.sample(obs, "stochastic", generator=torch.Generator().manual_seed(0))
    dists = policy.step_distributions(obs, chain)
    outputs = chain.points[:, 1:].flatten(2)
    independent = td.Normal(dists.mean, dists.log_std.exp()).log_prob(outputs).sum((-1, -2))
    torch.testing.assert_close(policy.log_prob(obs, chain), independent)
    if noise_method == "noise":
        std = dists.log_std.exp()
        assert (std >= 0.05 - 1e-6).all() and (std <= 0.5 + 1e-6).all()
        assert torch.allclose(std, torch.full_like(std, 0.2), rtol=1e-3)  # starts at noise_init_std


def test_sde_step_std_and_mean_in_the_policy_match_the_formula():
    cfg = FlowConfig(hidden=32, num_layers=1, chunk_size=2, num_steps=5, noise_level=0.5)
    policy = FlowPolicy(cfg, embed_language=False)
    obs = random_observation(3)
    _, chain = policy.sample(obs, "stochastic")
    dists = policy.step_distributions(obs, chain)
    dt = 0.2
    for k, t in enumerate([1.0, 0.8, 0.6, 0.4, 0.2]):
        t_sigma = min(t, 1 - dt)
        expected = 0.5 * math.sqrt(t_sigma / (1 - t_sigma)) * math.sqrt(dt)
        assert torch.allclose(dists.log_std[:, k].exp(), torch.tensor(expected), rtol=1e-5)


def test_deterministic_sampling_is_the_ode_and_reproducible():
    policy = FlowPolicy(FlowConfig(hidden=32, num_layers=1, chunk_size=4, num_steps=3), embed_language=False)
    obs = random_observation(4)
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    a1, c1 = policy.sample(obs, "deterministic", generator=g1)
    a2, _ = policy.sample(obs, "deterministic", generator=g2)
    assert torch.equal(a1, a2) and not c1.stochastic
    # each ODE step is x - dt * v(x, t)
    tokens = policy.encode(obs)
    v = policy.expert(c1.points[:, 0], torch.ones(4), tokens)
    torch.testing.assert_close(c1.points[:, 1], c1.points[:, 0] - v / 3)


@pytest.mark.slow  # trains a policy on real demonstrations: minutes
def test_bc_fits_demonstrated_chunks():
    torch.manual_seed(0)
    policy = FlowPolicy(FlowConfig(hidden=64, num_layers=2, chunk_size=4, num_steps=5), embed_language=False)
    obs = random_observation(32, seed=1)
    target = torch.tanh(obs["state"][:, :28].reshape(32, 4, 7))  # a deterministic function of the state
    opt = torch.optim.Adam(policy.parameters(), lr=2e-3)
    first = None
    for step in range(400):
        loss = policy.bc_loss(obs, target)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.25 * first
    actions, _ = policy.sample(obs, "deterministic", generator=torch.Generator().manual_seed(0))
    assert (actions - target).abs().mean() < 0.15


def test_policy_on_real_environment_observations_and_language():
    from vla_razor.envs import make_vec_env

    policy = make_policy("flow", {"hidden": 32, "num_layers": 1, "chunk_size": 4})
    table = policy.obs_encoder.instruction_table
    assert table.shape == (10, 384) and torch.allclose(table.norm(dim=-1), torch.ones(10), atol=1e-5)
    assert (table[0] - table[1]).abs().sum() > 0.1  # different instructions, different embeddings
    env = make_vec_env("smoke", num_envs=2, backend="cpu", seed=0, chunk_size=4)
    try:
        obs, _ = env.reset()
        actions, chain = policy.sample(obs)
        obs2, reward, *_ = env.step(actions.numpy())
    finally:
        env.close()
    assert actions.shape == (2, 4, 7) and np.isfinite(reward).all()
    frozen = make_policy("flow", policy.config, embed_language=False)
    frozen.load_state_dict(policy.state_dict())
    assert torch.equal(
        kl(frozen.step_distributions(obs, chain), policy.step_distributions(obs, chain)), torch.zeros(2)
    )


def test_bad_inputs_are_named():
    policy = FlowPolicy(FlowConfig(hidden=32, num_layers=1, chunk_size=4, num_steps=3), embed_language=False)
    obs = random_observation(2)
    with pytest.raises(ValueError, match=r"action chunks must be \[B, 4, 7\]"):
        policy.bc_loss(obs, torch.zeros(2, 5, 7))
    with pytest.raises(KeyError, match="state_mask"):
        policy.sample({k: v for k, v in obs.items() if k != "state_mask"})
    with pytest.raises(ValueError, match="mode must be"):
        policy.sample(obs, "greedy")
    _, chain = policy.sample(obs)
    other = FlowPolicy(FlowConfig(hidden=32, num_layers=1, chunk_size=4, num_steps=5), embed_language=False)
    with pytest.raises(ValueError, match=r"flow chain points must be \[B, 6, 4, 7\]"):
        other.log_prob(obs, chain)
    with pytest.raises(ValueError, match="hidden"):
        FlowConfig(hidden=30, num_heads=4)
    with pytest.raises(ValueError, match="unknown policy family 'vae'"):
        make_policy("vae")
