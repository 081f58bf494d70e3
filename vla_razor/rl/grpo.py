"""GRPO for chain policies: groups of episodes from identical initial states, no critic.

Each iteration resets ``num_groups`` groups of ``group_size`` sub-envs, every sub-env of a group with
the same seed (ManiSkill resets deterministically by seed, so a group shares its initial state), runs
every episode to its end, and scores it (success, or its summed reward). An episode's advantage is its
score normalised within its group; every decision and every denoising step of the episode shares it.
The update is PPO's clipped per-step ratio without a value function.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated, Literal

import numpy as np
import torch

from vla_razor import seeding as streams
from vla_razor.harness import RobotFinetuneHarness, RobotTaskFields
from vla_razor.policies.base import Chain
from vla_razor.policies.encoders import as_tensor_obs
from vla_razor.training import FinetuneFields, TrainerConfig

from ..config import PositiveInt, Range
from .config import ClippedUpdateFields
from .objective import clipped_surrogate, clipped_updates, group_advantages
from .rollout import per_step_log_prob


@dataclass
class GRPOConfig(ClippedUpdateFields, RobotTaskFields, FinetuneFields, TrainerConfig):
    """GRPO's config: the shared trainer fields, the fine-tuning and robot groups, the clipped update's
    fields and GRPO's own below."""

    defaults = dict(lr=3e-6, checkpoint_every=5)

    num_groups: PositiveInt = 4
    """Initial states per iteration."""
    group_size: Annotated[int, Range(ge=2)] = 8
    """Episodes per initial state (sub-envs = num_groups x group_size; a group normalises within itself)."""
    score: Literal["success", "return"] = "success"
    """Episode score: 'success' (binary, as in GRPO on verifiable rewards) or 'return' (summed dense
    reward)."""

    def __post_init__(self):
        super().__post_init__()
        if self.device != "cpu":
            raise ValueError(
                f"device={self.device!r}: GRPO runs on the CPU here; the GPU path is PPO's (docs/scaling.md)"
            )


@dataclass
class GroupRollout:
    """One episode per sub-env, its decisions flattened in the order they were taken."""

    obs: dict[str, torch.Tensor]
    """Observations of every decision ``[N, ...]``."""
    chains: Chain
    """The denoising chains sampled at those decisions."""
    log_probs: torch.Tensor
    """``[N, K]`` per-step log-probabilities of the chains under the sampling policy."""
    owner: torch.Tensor
    """``[N]`` the sub-env each decision belongs to."""
    returns: np.ndarray
    """``[num_envs]`` episode returns."""
    success: np.ndarray
    """``[num_envs]`` episode successes."""
    env_steps: int
    """Environment steps taken (every action of every chunk)."""


@torch.no_grad()
def collect_groups(
    env, policy, seeds: list[int], max_decisions: int, generator: torch.Generator
) -> GroupRollout:
    """One episode per sub-env from ``reset(seed=seeds)``, sampled stochastically by ``policy``."""
    obs, _ = env.reset(seed=seeds)
    n = len(seeds)
    alive = np.ones(n, bool)
    returns, success, env_steps = np.zeros(n), np.zeros(n, bool), 0
    obs_rows, chain_rows, log_prob_rows, owner = [], [], [], []
    for _ in range(max_decisions):
        if not alive.any():
            break
        tensor_obs = as_tensor_obs(obs)
        actions, chain = policy.sample(tensor_obs, "stochastic", generator=generator)
        rows = np.flatnonzero(alive)
        obs_rows.append({k: v[rows] for k, v in tensor_obs.items()})
        chain_rows.append(chain.points[rows])
        log_prob_rows.append(per_step_log_prob(chain.steps, chain.points)[rows])
        owner.append(torch.as_tensor(rows))
        obs, reward, terminated, truncated, info = env.step(actions.numpy())
        steps = info.get("chunk_steps", np.ones(n, int))
        env_steps += int(steps[alive].sum())
        returns[alive] += reward[alive]
        done = (terminated | truncated) & alive
        success[done] = np.asarray(info["success"])[done]
        alive &= ~done
    flat_obs = {k: torch.cat([o[k] for o in obs_rows]) for k in obs_rows[0]}
    return GroupRollout(
        obs=flat_obs,
        chains=Chain(torch.cat(chain_rows), True),
        log_probs=torch.cat(log_prob_rows),
        owner=torch.cat(owner),
        returns=returns,
        success=success,
        env_steps=env_steps,
    )


def train(cfg: GRPOConfig, resume: bool = False):
    from vla_razor.envs import get_task, make_vec_env

    ft = RobotFinetuneHarness(cfg, "grpo", resume=resume)
    policy, base = ft.policy, ft.base
    optimizer = torch.optim.Adam(policy.parameters(), lr=cfg.lr, eps=1e-5)
    generator = torch.Generator().manual_seed(streams.minibatches(cfg.seed))
    ft.restore({"policy": policy}, {"optimizer": optimizer}, generator)

    num_envs = cfg.num_groups * cfg.group_size
    chunk = policy.config.chunk_size
    env = make_vec_env(
        ft.task, num_envs=num_envs, backend="cpu", chunk_size=chunk, vectorization=cfg.vectorization
    )
    max_decisions = -(-get_task(ft.task).max_episode_steps // chunk)
    ft.start(cfg.total_env_steps, "env step")
    try:
        while not ft.done:
            started, before = time.perf_counter(), ft.progress_count
            # 1. Groups: every sub-env of group g starts from the same seed.
            first = streams.group_resets(cfg.seed, ft.iteration, cfg.num_groups)
            seeds = [first + g for g in range(cfg.num_groups) for _ in range(cfg.group_size)]
            policy.eval()
            group = collect_groups(env, policy, seeds, max_decisions, generator)
            obs, chains, behaviour_log_prob = group.obs, group.chains, group.log_probs
            rollout_s = time.perf_counter() - started
            outcome = group.success if cfg.score == "success" else group.returns
            scores = torch.as_tensor(outcome, dtype=torch.float32)
            # each decision carries the advantage of its episode within the episode's group
            advantages = group_advantages(scores.reshape(cfg.num_groups, cfg.group_size)).flatten()[
                group.owner
            ]

            with torch.no_grad():
                prepared = ft.penalty.prepare(base, obs, chains, generator)

            # 2. Clipped per-step ratio updates; decisions of unanimous groups carry zero advantage.
            policy.train()

            def minibatch_loss(index: torch.Tensor):
                mb_obs = {k: v[index] for k, v in obs.items()}
                mb_chain = Chain(chains.points[index], True)
                steps = policy.step_distributions(mb_obs, mb_chain)
                log_ratio = per_step_log_prob(steps, mb_chain.points) - behaviour_log_prob[index]
                loss, local = clipped_surrogate(log_ratio, advantages[index], cfg.clip_coef)
                local.update({"loss/policy": float(loss.detach()), "loss/kl_penalty": 0.0})
                if ft.penalty.active:
                    penalty, _ = ft.penalty.loss(
                        policy, obs, chains, prepared, index, current=steps, generator=generator
                    )
                    loss = loss + penalty
                    local["loss/kl_penalty"] = float(penalty.detach())
                ft.check_finite(**{"loss/total": loss})
                return loss, local

            stats, updates, epochs = clipped_updates(
                group.owner.shape[0],
                minibatch_loss,
                optimizer,
                [list(policy.parameters())],
                epochs=cfg.update_epochs,
                num_minibatches=cfg.num_minibatches,
                max_grad_norm=cfg.max_grad_norm,
                target_kl=cfg.target_kl,
                generator=generator,
            )
            stats["grpo/approx_kl"] = stats.pop("approx_kl", 0.0)
            stats["grpo/clipfrac"] = stats.pop("clipfrac", 0.0)

            ft.step(env_steps=group.env_steps)
            metrics = {k: v / max(updates, 1) for k, v in stats.items()}
            metrics.update(ft.track_kl(obs))
            metrics.update(
                {
                    "success/train": float(group.success.mean()),
                    "reward/episode_return": float(group.returns.mean()),
                    "grpo/informative_groups": float(
                        (scores.reshape(cfg.num_groups, -1).std(1) > 0).float().mean()
                    ),
                    "grpo/epochs": epochs,
                    "time/rollout_s": rollout_s,
                    "time/iteration_s": time.perf_counter() - started,
                }
            )
            ft.end_iteration(metrics, before)
    finally:
        ft.close()
        env.close()
    return ft.finish()
