"""Rollouts of a chain policy in a vector env, and generalised advantage estimation.

The two-layer MDP of chain policies (DPPO): the outer MDP is the environment, one decision per action
chunk; the inner one is the denoising chain that produced the chunk. A rollout stores, for every
decision, the observation, the whole chain, the chunk's summed reward and the episode flags; the
per-step log-probabilities and values are computed afterwards in one batched pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from vla_razor.divergence import DiagGaussian
from vla_razor.policies.base import Chain
from vla_razor.policies.encoders import as_tensor_obs


def per_step_log_prob(steps: DiagGaussian, points: torch.Tensor) -> torch.Tensor:
    """``[B, K]`` log-density of each step output ``points[:, k + 1]`` under step k's Gaussian."""
    return DiagGaussian(steps.mean, steps.log_std).log_prob(points[:, 1:].flatten(2))


@dataclass
class Rollout:
    """``T`` decisions of ``N`` sub-envs; tensors are ``[T, N, ...]``."""

    obs: dict[str, torch.Tensor]
    chains: torch.Tensor
    """Chain points ``[T, N, K + 1, H, A]``."""
    log_probs: torch.Tensor
    """``[T, N, K]``: each denoising step's log-density under the policy that sampled it (PPO's old
    policy)."""
    rewards: torch.Tensor
    """Summed chunk rewards (times ``reward_scale``): the environment's, nothing added."""
    bootstrap: torch.Tensor
    """``gamma * V(final_obs)`` where an episode was truncated by its time limit, else 0: added to the
    rewards for the advantages, so a time limit does not look like a failure to the value function."""
    dones: torch.Tensor
    """The episode ended (terminated or truncated) with this decision."""
    next_obs: dict[str, torch.Tensor]
    """Observation after the last decision (to bootstrap from)."""
    env_steps: int
    """Environment steps really taken (chunks cut short by an episode's end count their executed part)."""
    episode_successes: list[bool]
    """Outcome of every episode that ended during the rollout."""

    @property
    def num_decisions(self) -> int:
        return self.rewards.numel()

    def flat_obs(self) -> dict[str, torch.Tensor]:
        return {k: v.flatten(0, 1) for k, v in self.obs.items()}

    def flat_chains(self) -> Chain:
        return Chain(self.chains.flatten(0, 1), stochastic=True)

    def flat_log_probs(self) -> torch.Tensor:
        return self.log_probs.flatten(0, 1)


@torch.no_grad()
def collect(
    env,
    policy,
    obs: dict,
    num_decisions: int,
    generator: torch.Generator,
    critic=None,
    gamma: float = 0.99,
    reward_scale: float = 1.0,
):
    """Run ``num_decisions`` stochastic decisions in every sub-env from ``obs``; returns (rollout, last obs).

    Truncated episodes (time limit) get the critic's value of their final observation in
    ``rollout.bootstrap`` (kept apart from the rewards).
    """
    device = policy.device
    # The GPU backend (ManiSkill's physx_cuda) takes and returns tensors on its device: the whole rollout
    # stays there. The CPU backend takes numpy actions and returns numpy arrays.
    tensor_env = getattr(env, "device", None) is not None
    obs_steps, chains, log_probs, rewards, dones = [], [], [], [], []
    truncated_at: list[tuple[int, torch.Tensor, dict]] = []
    env_steps, successes = 0, []
    for t in range(num_decisions):
        tensor_obs = as_tensor_obs(obs, device)
        actions, chain = policy.sample(tensor_obs, "stochastic", generator=generator)
        obs_steps.append(tensor_obs)
        chains.append(chain.points)
        log_probs.append(per_step_log_prob(chain.steps, chain.points))
        step_actions = actions if actions.shape[1] > 1 else actions[:, 0]
        obs, reward, terminated, truncated, info = env.step(
            step_actions if tensor_env else step_actions.cpu().numpy()
        )
        terminated, truncated = _flags(terminated, device), _flags(truncated, device)
        done = terminated | truncated
        if "chunk_steps" in info:
            env_steps += int(torch.as_tensor(info["chunk_steps"]).sum())
        else:
            env_steps += len(done)
        rewards.append(torch.as_tensor(reward).to(device, torch.float32) * reward_scale)
        dones.append(done)
        successes += _flags(info["success"], device)[done].tolist()
        cut = truncated & ~terminated
        if cut.any():
            rows = torch.nonzero(cut).flatten()
            final = as_tensor_obs(info["final_obs"], device)
            truncated_at.append((t, rows, {k: v[rows] for k, v in final.items()}))
    rewards = torch.stack(rewards)
    bootstrap = torch.zeros_like(rewards)
    if critic is not None:
        for t, rows, final in truncated_at:
            bootstrap[t, rows] = gamma * critic(final).float()
    rollout = Rollout(
        obs={k: torch.stack([o[k] for o in obs_steps]) for k in obs_steps[0]},
        chains=torch.stack(chains),
        log_probs=torch.stack(log_probs),
        rewards=rewards,
        bootstrap=bootstrap,
        dones=torch.stack(dones),
        next_obs=as_tensor_obs(obs, device),
        env_steps=env_steps,
        episode_successes=successes,
    )
    return rollout, obs


def _flags(x, device) -> torch.Tensor:
    """Per-sub-env booleans (numpy or torch) as a bool tensor on ``device``."""
    return torch.as_tensor(x).to(device, torch.bool)


def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    dones: torch.Tensor,
    next_value: torch.Tensor,
    gamma: float,
    lam: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over ``[T, N]``; returns (advantages, returns).

    ``dones[t]`` means decision t ended its episode: no bootstrapping across it (the next observation
    belongs to a new episode).
    """
    T = rewards.shape[0]
    advantages = torch.zeros_like(rewards)
    last = torch.zeros_like(next_value)
    for t in reversed(range(T)):
        following = next_value if t == T - 1 else values[t + 1]
        alive = 1.0 - dones[t].float()
        delta = rewards[t] + gamma * following * alive - values[t]
        last = delta + gamma * lam * alive * last
        advantages[t] = last
    return advantages, advantages + values
