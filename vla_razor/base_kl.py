"""The KL to the frozen base policy: measured every iteration, and optionally penalised.

For chain policies (every step a Gaussian) the KL between two policies' chain distributions
decomposes by the chain rule into per-step Gaussian KLs at the chain's own points:

    KL(P || Q) = E_{x_0..x_K ~ P} [ sum_k KL(p_k(. | x_k, s) || q_k(. | x_k, s)) ]

so averaging the exact per-step KLs over chains sampled from P is an unbiased estimate of the chain
KL, with no log-ratio noise. The chain KL upper-bounds the KL of the action marginals (the data
processing inequality: the action is a function of the chain), so ``kl/forward`` never under-states
how far the action distribution moved.

- ``kl/forward`` = E_s[KL(pi_0(.|s) || pi(.|s))], chains sampled from the BASE policy (the razor metric).
- ``kl/reverse`` = E_s[KL(pi(.|s) || pi_0(.|s))], chains sampled from the current policy.
"""

from __future__ import annotations

import copy

import torch

from vla_razor.divergence import GaussianChain, forward_kl, gaussian_js_estimate, mean_and_stderr, reverse_kl
from vla_razor.divergence.penalty import KLPenaltyConfig, PenaltyCoefficient

__all__ = ["KLPenalty", "KLPenaltyConfig", "freeze", "measure_action_kl", "measure_kl_to_base"]


def freeze(policy: torch.nn.Module) -> torch.nn.Module:
    """A frozen copy: eval mode, no gradients (the base policy of fine-tuning)."""
    base = copy.deepcopy(policy).eval()
    for p in base.parameters():
        p.requires_grad_(False)
    return base


def _generators(seed: int, policy) -> tuple[torch.Generator, torch.Generator]:
    """(the state subsampler's generator, the chain sampler's): one CPU generator for a policy on the CPU;
    the sampler's on the policy's GPU otherwise."""
    picker = torch.Generator().manual_seed(seed)
    device = getattr(policy, "device", torch.device("cpu"))
    if torch.device(device).type == "cpu":
        return picker, picker
    return picker, torch.Generator(device).manual_seed(seed)


def _subsample(obs: dict, count: int, generator: torch.Generator) -> dict:
    n = len(next(iter(obs.values())))
    if count >= n:
        return obs
    index = torch.randperm(n, generator=generator)[:count]
    return {k: v[index] for k, v in obs.items()}


@torch.no_grad()
def chain_kl(sampler, p, q, obs: dict, generator: torch.Generator | None = None) -> torch.Tensor:
    """Per-state chain KL(p || q) ``[B]`` on one chain per state sampled from ``sampler`` (= p for an
    unbiased estimate of KL(p || q))."""
    _, chain = sampler.sample(obs, "stochastic", generator=generator)
    # The sampler's own step Gaussians come with the chain: one network pass fewer.
    p_steps = chain.steps if p is sampler and chain.steps is not None else p.step_distributions(obs, chain)
    q_steps = chain.steps if q is sampler and chain.steps is not None else q.step_distributions(obs, chain)
    return forward_kl(p_steps, q_steps)


@torch.no_grad()
def measure_kl_to_base(base, policy, obs: dict, max_states: int = 256, seed: int = 0) -> dict[str, float]:
    """``kl/forward`` and ``kl/reverse`` (with standard errors and sample counts) on ``obs``.

    One chain per state for each direction; the standard error is over states (it includes the
    spread between states, which is what an average over states should report).
    """
    picker, generator = _generators(seed, base)
    states = _subsample(obs, max_states, picker)
    was_training = policy.training
    policy.eval()
    try:
        forward = chain_kl(base, base, policy, states, generator)
        reverse = chain_kl(policy, policy, base, states, generator)
    finally:
        policy.train(was_training)
    out = {}
    for name, values in (("forward", forward), ("reverse", reverse)):
        est = mean_and_stderr(values)
        out[f"kl/{name}"], out[f"kl/{name}_stderr"] = est.mean, est.stderr
    out["kl/states"] = int(forward.shape[0])
    return out


@torch.no_grad()
def measure_action_kl(
    base, policy, obs: dict, max_states: int = 64, chains: int = 32, seed: int = 0
) -> dict[str, float]:
    """The forward KL between the ACTION marginals, ``kl/forward_action`` (with its standard error), and the
    chain KL on the same base chains, ``kl/forward_chain``: ``chains`` base-sampled chains per state on up to
    ``max_states`` of ``obs`` (:func:`vla_razor.divergence.marginal.marginal_forward_kl`)."""
    from vla_razor.divergence.marginal import marginal_forward_kl

    picker, generator = _generators(seed, base)
    states = _subsample(obs, max_states, picker)
    n = len(next(iter(states.values())))
    repeated = {k: v.repeat_interleave(chains, 0) for k, v in states.items()}
    was_training = policy.training
    policy.eval()
    try:
        _, chain = base.sample(repeated, "stochastic", generator=generator)
        on_policy = policy.step_distributions(repeated, chain)
    finally:
        policy.train(was_training)
    base_steps = chain.steps

    def per_state(x: torch.Tensor) -> torch.Tensor:
        return x.reshape(n, chains, *x.shape[1:])

    points = per_state(chain.points.flatten(2))
    marginal = marginal_forward_kl(
        GaussianChain(per_state(base_steps.mean), per_state(base_steps.log_std.expand_as(base_steps.mean))),
        GaussianChain(per_state(on_policy.mean), per_state(on_policy.log_std.expand_as(on_policy.mean))),
        points,
    )
    chain_kl_values = forward_kl(base_steps, on_policy).reshape(n, chains).double().mean(1)
    out = {}
    for name, values in (("kl/forward_action", marginal), ("kl/forward_chain", chain_kl_values)):
        est = mean_and_stderr(values)
        out[name], out[f"{name}_stderr"] = est.mean, est.stderr
    return out


class KLPenalty(PenaltyCoefficient):
    """The penalty toward the base policy in a chain policy's fine-tuning loss, with its (adaptive)
    coefficient (:class:`~vla_razor.divergence.penalty.PenaltyCoefficient`)."""

    @torch.no_grad()
    def prepare(self, base, obs: dict, chains, generator: torch.Generator | None = None) -> dict:
        """Per-iteration base quantities for the states ``obs`` ``[N]`` and their rollout ``chains``:
        base step Gaussians on the rollout's chains (reverse, js), base-sampled chains with their base
        step Gaussians (forward), and the critical-state weights."""
        if not self.active:
            return {}
        out = {}
        if self.config.direction == "forward":
            _, base_chain = base.sample(obs, "stochastic", generator=generator)
            d = base_chain.steps
            out.update(base_points=base_chain.points, base_mean=d.mean, base_log_std=d.log_std)
        else:
            d = base.step_distributions(obs, chains)
            out.update(base_mean=d.mean, base_log_std=d.log_std)
        n = out["base_mean"].shape[0]
        if self.config.critical_weighting:
            m = self.config.critical_samples
            repeated = {k: v.repeat_interleave(m, 0) for k, v in obs.items()}
            actions, _ = base.sample(repeated, "stochastic", generator=generator)
            spread = actions.reshape(n, m, -1).std(1).mean(-1)
            out["weight"] = (spread.median() / spread.clamp(min=1e-8)).clamp(max=1.0)
        else:
            out["weight"] = torch.ones(n)
        return out

    def loss(
        self,
        policy,
        obs: dict,
        chains,
        prepared: dict,
        index: torch.Tensor,
        current: GaussianChain | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(coef * weighted mean divergence, the unweighted mean divergence) on minibatch ``index``.

        ``current``: the policy's step Gaussians on the rollout chains of the minibatch, when the
        caller has them already (the PPO ratio needs them too)."""
        base = GaussianChain(prepared["base_mean"][index], prepared["base_log_std"][index])
        direction = self.config.direction
        if direction == "forward":
            from vla_razor.policies.base import Chain

            mb_obs = {k: v[index] for k, v in obs.items()}
            on_base = policy.step_distributions(mb_obs, Chain(prepared["base_points"][index], True))
            values = forward_kl(base, on_base)
        else:
            if current is None:
                from vla_razor.policies.base import Chain

                mb_obs = {k: v[index] for k, v in obs.items()}
                current = policy.step_distributions(mb_obs, Chain(chains.points[index], True))
            values = (
                reverse_kl(base, current)
                if direction == "reverse"
                else gaussian_js_estimate(base, current, generator)
            )
        weighted = (prepared["weight"][index].to(values.device) * values).mean()
        return self.coef * weighted, values.mean().detach()
