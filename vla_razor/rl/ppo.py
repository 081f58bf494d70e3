"""PPO for chain policies (flow, diffusion, Gaussian), read top to bottom like a CleanRL script.

Two-layer MDP (DPPO): each decision samples a denoising chain whose last point is an action chunk;
every denoising step is scored with the decision's advantage, and the PPO ratio is taken per step
(``exp(log p_new(x_{k+1}|x_k) - log p_old(x_{k+1}|x_k))``, from the exact step Gaussians) so a
5-step, 56-dimensional chain does not multiply five ratios into one extreme number.

Data-parallel (``torchrun --nproc-per-node N``, vla_razor/training/distributed.py): each rank collects
its share of the sub-envs; every minibatch is drawn from the whole rollout with one shared generator, each
rank computes the loss of its part weighted by its share and the gradients are summed, so an update on N
ranks equals the update on one rank with the same total batch; metrics are reduced over the ranks.

Two different KLs appear here, with different names:
- ``ppo/approx_kl``: old vs new policy within an update (the trust region; early stopping);
- ``kl/forward``, ``kl/reverse``: the current policy vs the frozen BASE policy (the razor metrics).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Annotated, Literal

import torch

from vla_razor import seeding as streams
from vla_razor.evaluation import policy_observations
from vla_razor.harness import RobotFinetuneHarness, RobotTaskFields
from vla_razor.policies.base import Chain
from vla_razor.training import FinetuneFields, TrainerConfig
from vla_razor.training.distributed import DataParallel

from ..config import Fraction, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, Range
from .config import ClippedUpdateFields
from .objective import clipped_surrogate, clipped_updates
from .rollout import gae, per_step_log_prob
from .rollout_worker import InlineRollouts, OverlappedRollouts, RolloutSpec, split_spec


@dataclass
class PPOConfig(ClippedUpdateFields, RobotTaskFields, FinetuneFields, TrainerConfig):
    """PPO's config: the shared trainer fields, the fine-tuning and robot groups, the clipped update's
    fields and PPO's own below."""

    defaults = dict(lr=3e-6, checkpoint_every=5)

    num_envs: PositiveInt = 16
    """Parallel sub-envs of the new task."""
    num_decisions: PositiveInt = 16
    """Decisions (action chunks) per sub-env per iteration: a rollout is num_envs x num_decisions chunks."""
    reward_mode: Literal["sparse", "normalized_dense"] = "sparse"
    """ManiSkill reward: 'sparse' (success) or 'normalized_dense'. ManiSkill ends an episode on success, so
    under a dense reward (up to 1 per step) succeeding early forfeits the rest of the episode's reward;
    sparse reward makes success itself the objective."""
    reward_scale: PositiveFloat = 1.0
    """Multiplier on the summed chunk reward."""
    gamma: Annotated[float, Range(gt=0, le=1)] = 0.95
    """Discount per decision (one decision = one action chunk)."""
    gae_lambda: Fraction = 0.95
    """GAE lambda."""
    vf_coef: NonNegativeFloat = 0.5
    """Value-loss weight."""
    critic_lr: PositiveFloat = 3e-4
    """Critic learning rate (Adam)."""
    critic_warmup_iterations: NonNegativeInt = 2
    """Iterations at the start that train only the critic (the pretrained policy needs an adequate critic
    first)."""
    norm_advantages: bool = True
    """Normalise advantages per minibatch."""
    rollout_workers: NonNegativeInt = 0
    """0: rollouts in this process with the current weights (on-policy). N >= 1: N Ray actors (a local Ray,
    or the cluster at ``ray_address``), each owning num_envs / N sub-envs, collect the next iteration's
    rollout while this one updates (more cores). Each rollout then comes from the policy one update old and
    carries that policy's log-probs (vla_razor/rl/rollout_worker.py; see ``decoupled_clip``). Measured in
    docs/benchmarks.md."""
    decoupled_clip: bool = True
    """With rollout workers: clip the ratio around the learner's weights before the update (the proximal
    policy) and weight each term by pi_prox / pi_behaviour (decoupled PPO), instead of clipping around
    the stale behaviour policy, which clips part of every update away. No effect on-policy."""
    ray_address: str = ""
    """The Ray cluster to place the rollout actors on ('': a local Ray, or $RAY_ADDRESS; docs/scaling.md)."""
    worker_timeout_s: PositiveFloat = 600.0
    """Seconds a rollout worker may take for one rollout before it counts as hung and the run stops (a dead
    worker is noticed within a second)."""
    max_behaviour_weight: Annotated[float, Range(ge=1)] = 2.0
    """Upper bound on the per-step weight pi_prox / pi_behaviour of the decoupled objective."""
    sim_backend: Literal["cpu", "gpu"] = "cpu"
    """The new task's simulator: 'cpu' (ManiSkill's physx_cpu, one scene per sub-env) or 'gpu' (its batched
    physx_cuda: every sub-env in one GPU scene, rollouts kept on the GPU; needs device='cuda' and
    rollout_workers=0; docs/scaling.md)."""

    def __post_init__(self):
        super().__post_init__()
        decisions = self.num_envs * self.num_decisions
        if decisions < self.num_minibatches:
            raise ValueError("num_envs * num_decisions must be >= num_minibatches")
        if self.norm_advantages and decisions < 2 * self.num_minibatches:
            raise ValueError(
                "norm_advantages needs minibatches of at least 2 decisions: num_envs * num_decisions "
                f"({decisions}) must be >= 2 * num_minibatches ({self.num_minibatches})"
            )
        if self.rollout_workers and self.num_envs % self.rollout_workers:
            raise ValueError(
                f"rollout_workers must be 0 or divide num_envs ({self.num_envs}), got {self.rollout_workers}"
            )
        if self.sim_backend == "gpu" and (self.rollout_workers or not self.device.startswith("cuda")):
            raise ValueError(
                "sim_backend='gpu' steps every sub-env in this process on the GPU: it needs device='cuda' "
                f"and rollout_workers=0 (got device={self.device!r}, rollout_workers={self.rollout_workers})"
            )


@dataclass
class UpdateBatch:
    """One rank's share of an iteration's rollout, prepared for the update: ``num_decisions`` x
    ``local_envs`` decisions, flattened decision-major (``t * local_envs + env``)."""

    obs: dict[str, torch.Tensor]
    points: torch.Tensor
    """Chain points ``[L, K + 1, H, A]``."""
    clip_anchor: torch.Tensor
    """``[L, K]`` log-probs the ratio is clipped around (behaviour on-policy, proximal with workers)."""
    advantages: torch.Tensor
    returns: torch.Tensor
    num_decisions: int
    local_envs: int
    behaviour_weight: torch.Tensor | None = None
    """``[L, K]`` pi_prox / pi_behaviour (decoupled PPO), or None."""
    penalty: dict = field(default_factory=dict)
    """The KL penalty's per-iteration base quantities (``KLPenalty.prepare``)."""


def _normalise(adv: torch.Tensor, count: int, dp: DataParallel) -> torch.Tensor:
    """Advantages normalised over the whole minibatch (every rank's part of it)."""
    if not dp.active:
        return (adv - adv.mean()) / (adv.std() + 1e-8)
    total, squares = dp.sum_values([float(adv.double().sum()), float(adv.double().square().sum())])
    mean = total / count
    std = max((squares - count * mean * mean) / max(count - 1, 1), 0.0) ** 0.5
    return (adv - mean) / (std + 1e-8)


def rank_minibatch(chosen: torch.Tensor, local_envs: int, dp: DataParallel) -> torch.Tensor:
    """This rank's part of a minibatch of global decisions (``t * envs + env``, every rank's sub-envs side by
    side), as indices into its own rollout."""
    envs = local_envs * dp.world
    env = chosen % envs
    mine = env // local_envs == dp.rank
    return (chosen // envs)[mine] * local_envs + env[mine] % local_envs


def update(
    policy,
    critic,
    optimizer,
    batch: UpdateBatch,
    cfg: PPOConfig,
    generator: torch.Generator,
    update_policy: bool,
    dp: DataParallel = DataParallel(),
    penalty=None,
    sampler: torch.Generator | None = None,
    check_finite=None,
) -> tuple[dict[str, float], int, int]:
    """PPO's clipped-ratio updates over minibatches of the whole rollout (every rank's), stopping early on the
    trust region (:func:`~.objective.clipped_updates`); returns (summed stats, updates, epochs).
    ``generator`` (the same state on every rank) draws the minibatches; ``sampler`` (this rank's own) the
    penalty's samples."""
    sampler = sampler or generator
    total = batch.num_decisions * batch.local_envs * dp.world
    minibatch = max(1, total // cfg.num_minibatches)
    policy.train()

    def minibatch_loss(chosen: torch.Tensor):
        index = rank_minibatch(chosen, batch.local_envs, dp)
        share = index.numel() / minibatch if dp.active else 1.0  # the loss is a mean over the whole minibatch
        adv = batch.advantages[index]
        if update_policy and cfg.norm_advantages:
            adv = _normalise(adv, minibatch, dp)  # every rank takes part, holding samples or not
        local = dict.fromkeys(("approx_kl", "clipfrac", "loss/policy", "loss/value", "loss/kl_penalty"), 0.0)
        if not index.numel():
            return None, local
        mb_obs = {k: v[index] for k, v in batch.obs.items()}
        value_loss = 0.5 * (critic(mb_obs) - batch.returns[index]).square().mean()
        loss = cfg.vf_coef * value_loss
        if update_policy:
            mb_chain = Chain(batch.points[index], True)
            steps = policy.step_distributions(mb_obs, mb_chain)
            log_ratio = per_step_log_prob(steps, mb_chain.points) - batch.clip_anchor[index]
            weight = batch.behaviour_weight[index] if batch.behaviour_weight is not None else None
            policy_loss, surrogate = clipped_surrogate(log_ratio, adv, cfg.clip_coef, weight)
            loss = loss + policy_loss
            if penalty is not None and penalty.active:
                chains = Chain(batch.points, True)
                penalty_loss, _ = penalty.loss(
                    policy, batch.obs, chains, batch.penalty, index, current=steps, generator=sampler
                )
                loss = loss + penalty_loss
                local["loss/kl_penalty"] = float(penalty_loss.detach())
            local.update(surrogate, **{"loss/policy": float(policy_loss.detach())})
        if check_finite is not None:
            check_finite(**{"loss/value": value_loss, "loss/total": loss})
        local["loss/value"] = float(value_loss.detach())
        return loss * share, {k: v * share for k, v in local.items()}

    params = list(critic.parameters()) + (list(policy.parameters()) if update_policy else [])

    def summed_over_ranks(local: dict[str, float]) -> dict[str, float]:
        return dict(zip(local, dp.sum_values(list(local.values()))))

    stats, updates, epochs = clipped_updates(
        total,
        minibatch_loss,
        optimizer,
        [list(policy.parameters()), list(critic.parameters())],
        epochs=cfg.update_epochs,
        num_minibatches=cfg.num_minibatches,
        max_grad_norm=cfg.max_grad_norm,
        target_kl=cfg.target_kl if update_policy else 0.0,
        generator=generator,
        sync_gradients=(lambda: dp.sum_gradients(params)) if dp.active else None,
        reduce_stats=summed_over_ranks if dp.active else None,
    )
    stats["ppo/approx_kl"], stats["ppo/clipfrac"] = stats.pop("approx_kl", 0.0), stats.pop("clipfrac", 0.0)
    return stats, updates, epochs


def train(cfg: PPOConfig, resume: bool = False):
    from vla_razor.policies.critic import CriticConfig, ValueCritic

    ft = RobotFinetuneHarness(cfg, "ppo", resume=resume, data_parallel_ok=True)
    dp = ft.dp
    local_envs = dp.shard(cfg.num_envs)
    if cfg.rollout_workers and local_envs % cfg.rollout_workers:
        raise ValueError(
            f"rollout_workers ({cfg.rollout_workers}) must divide each rank's sub-envs ({local_envs})"
        )
    policy, base = ft.policy, ft.base
    critic_config = CriticConfig(hidden=policy.config.hidden, world=policy.config.world)
    critic = ValueCritic(critic_config, embed_language=False).to(ft.device)
    # The critic sees observations the way the policy does: reuse the base's normalisation statistics
    # (a LeRobot policy normalises in its own pre-processor: the critic keeps its own).
    if hasattr(policy, "obs_encoder"):
        critic.obs_encoder.load_state_dict(policy.obs_encoder.state_dict(), strict=False)
    optimizer = torch.optim.Adam(
        [{"params": policy.parameters(), "lr": cfg.lr}, {"params": critic.parameters(), "lr": cfg.critic_lr}],
        eps=1e-5,
    )
    generator = torch.Generator().manual_seed(streams.minibatches(cfg.seed))
    ft.restore({"policy": policy, "critic": critic}, {"optimizer": optimizer}, generator)
    dp.broadcast_module(policy)
    dp.broadcast_module(critic)
    # One rank samples with the run's generator; several each sample with their own (the minibatch
    # generator stays the same on every rank).
    # So does a policy on a GPU (sampling there needs a generator there).
    sampler = generator
    if dp.active or ft.device.type != "cpu":
        sampler = torch.Generator(ft.device).manual_seed(
            streams.rank_sampling(cfg.seed, ft.iteration, dp.rank)
        )

    # A resumed run starts fresh episodes, seeded by the iteration it resumes at. A rank owns a block of
    # sub-envs, seeded as the same sub-envs would be on one rank.
    spec = RolloutSpec(
        task=ft.task,
        num_envs=cfg.num_envs,
        chunk_size=policy.config.chunk_size,
        reward_mode=cfg.reward_mode,
        vectorization=cfg.vectorization,
        num_decisions=cfg.num_decisions,
        gamma=cfg.gamma,
        reward_scale=cfg.reward_scale,
        reset_seed=streams.episode_resets(cfg.seed, ft.iteration, cfg.num_envs),
        sampling_seed=streams.rollout_sampling(cfg.seed, ft.iteration),
        threads=torch.get_num_threads(),
        backend=cfg.sim_backend,
        **policy_observations(policy),
    )
    spec = split_spec(spec, dp.world)[dp.rank]
    if cfg.rollout_workers:
        rollouts = OverlappedRollouts(
            spec,
            policy,
            critic,
            workers=cfg.rollout_workers,
            timeout_s=cfg.worker_timeout_s,
            ray_address=cfg.ray_address or None,
        )
    else:
        rollouts = InlineRollouts(spec, sampler)
    decoupled = bool(cfg.rollout_workers and cfg.decoupled_clip)
    ft.start(cfg.total_env_steps, "env step")
    try:
        while not ft.done:
            started, before = time.perf_counter(), ft.progress_count
            # 1. Rollout (stochastic chains) with the current policy, or with the previous one from rollout
            #    workers.
            rollout = rollouts.next(policy, critic)
            rollout_s = time.perf_counter() - started
            flat_obs, chains = rollout.flat_obs(), rollout.flat_chains()

            # 2. Log-probs, values and advantages in one batched pass, before any update.
            #    behaviour: the policy that acted (it sampled the chains); proximal: the learner's weights now
            #    (the same policy on-policy; one update newer with rollout workers).
            behaviour_log_prob, behaviour_weight = rollout.flat_log_probs(), None
            with torch.no_grad():
                if decoupled:
                    proximal_log_prob = per_step_log_prob(
                        policy.step_distributions(flat_obs, chains), chains.points
                    )
                    behaviour_weight = (
                        (proximal_log_prob - behaviour_log_prob).exp().clamp(max=cfg.max_behaviour_weight)
                    )
                values = critic(flat_obs).reshape(cfg.num_decisions, local_envs)
                # bootstrap if not done: a time-limit truncation gets gamma * V(final observation)
                advantages, returns = gae(
                    rollout.rewards + rollout.bootstrap,
                    values,
                    rollout.dones,
                    critic(rollout.next_obs),
                    cfg.gamma,
                    cfg.gae_lambda,
                )
                batch = UpdateBatch(
                    obs=flat_obs,
                    points=chains.points,
                    # the ratio is clipped around the proximal policy (decoupled PPO) or the behaviour one
                    clip_anchor=proximal_log_prob if decoupled else behaviour_log_prob,
                    advantages=advantages.flatten(),
                    returns=returns.flatten(),
                    num_decisions=cfg.num_decisions,
                    local_envs=local_envs,
                    behaviour_weight=behaviour_weight,
                    penalty=ft.penalty.prepare(base, flat_obs, chains, sampler),
                )

            # 3. Clipped-ratio updates over minibatches, stopping early on the trust region.
            update_started = time.perf_counter()
            update_policy = ft.iteration >= cfg.critic_warmup_iterations
            stats, updates, epochs = update(
                policy,
                critic,
                optimizer,
                batch,
                cfg,
                generator,
                update_policy,
                dp=dp,
                penalty=ft.penalty,
                sampler=sampler,
                check_finite=ft.check_finite,
            )
            update_s = time.perf_counter() - update_started

            # 4. Bookkeeping: KL to the base on this iteration's states, metrics, evaluation, checkpoint.
            successes = rollout.episode_successes
            env_steps, episodes, succeeded = dp.sum_values(
                [rollout.env_steps, len(successes), sum(successes)]
            )
            ft.step(env_steps=int(env_steps))
            metrics = {k: v / max(updates, 1) for k, v in stats.items()}
            metrics.update(ft.track_kl(flat_obs))
            local = {"reward/mean_chunk": float(rollout.rewards.mean())}
            if behaviour_weight is not None:
                local["ppo/behaviour_weight"] = float(behaviour_weight.mean())
            metrics.update(dp.mean_metrics(local))
            if episodes:
                metrics["success/train"] = succeeded / episodes
            if dp.active:
                metrics["dist/ranks"] = dp.world
            metrics.update(
                {
                    "ppo/epochs": epochs,
                    "ppo/policy_updated": float(update_policy),
                    "time/rollout_s": rollout_s,
                    "time/update_s": update_s,
                    "time/iteration_s": time.perf_counter() - started,
                    "time/env_steps_per_s": env_steps / (time.perf_counter() - started),
                }
            )
            ft.end_iteration(metrics, before)
    finally:
        ft.close()
        rollouts.close()
    if dp.main:
        critic.save_pretrained(ft.run.path / "critic")
    return ft.finish()
