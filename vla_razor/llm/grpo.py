"""GRPO on a causal LM (`vla-razor llm finetune --algo grpo`), read top to bottom.

Each iteration: ``num_prompts`` fresh new-task prompts, ``group_size`` responses each sampled from the
current policy, a binary reward (the exact answer), advantages normalised within each group (no critic),
then ``update_epochs`` passes of the clipped token-level surrogate against the sampling policy, plus the
optional penalty toward the base. The harness (:class:`~vla_razor.llm.harness.LLMFinetuneHarness`) measures
``kl/forward`` and ``kl/reverse`` to the base every iteration and evaluates, snapshots and checkpoints on
its schedule, exactly as on the robot track.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from vla_razor import seeding as streams
from vla_razor.rl.objective import clipped_surrogate, clipped_updates, group_advantages

from .data import encode_batch, sample_responses
from .harness import LLMFinetuneConfig, LLMFinetuneHarness, token_log_probs
from .tasks import generate, is_correct


def train(cfg: LLMFinetuneConfig, resume: bool = False) -> Path:
    if cfg.data == "rl":
        raise ValueError("data: rl is the SFT-on-RL-data control: use --algo sft")
    ft = LLMFinetuneHarness(cfg, "grpo", resume=resume)
    policy, tokenizer = ft.policy, ft.tokenizer
    optimizer = torch.optim.AdamW(policy.parameters(), lr=cfg.lr, weight_decay=0.0)
    generator = torch.Generator().manual_seed(streams.minibatches(cfg.seed))
    ft.restore({"policy": policy}, {"optimizer": optimizer}, generator)

    ft.start(cfg.iterations)
    try:
        while not ft.done:
            started, before = time.perf_counter(), ft.progress_count
            # 1. Groups: fresh problems every iteration (a pure function of seed and iteration), each prompt
            #    answered group_size times by the current policy.
            problems = generate(cfg.task, cfg.num_prompts, seed=streams.problems(cfg.seed, ft.iteration))
            prompts = [p for p in problems for _ in range(cfg.group_size)]
            policy.eval()
            responses, ended = sample_responses(
                policy,
                tokenizer,
                prompts,
                ft.max_new,
                sample=True,
                temperature=cfg.temperature,
                generator=generator,
            )
            texts = [tokenizer.decode(r, skip_special_tokens=True) for r in responses]
            rewards = torch.tensor(
                [float(e and is_correct(p, t)) for p, t, e in zip(prompts, texts, ended)], device=ft.device
            )
            grouped = rewards.view(cfg.num_prompts, cfg.group_size)
            advantages = group_advantages(grouped).flatten()
            batch = encode_batch(tokenizer, prompts, responses, ended)
            mask = batch["response_mask"][:, 1:].float()
            rollout_s = time.perf_counter() - started

            # 2. Clipped token-ratio updates; responses of unanimous groups carry zero advantage.
            #    One minibatch of every response per epoch.
            policy.train()
            behaviour: dict[str, torch.Tensor] = {}

            def minibatch_loss(index: torch.Tensor):
                log_prob = token_log_probs(policy, batch)
                if not behaviour:  # before the first step the policy is the one that sampled the responses
                    behaviour["log_prob"] = log_prob.detach()
                policy_loss, local = clipped_surrogate(
                    log_prob - behaviour["log_prob"], advantages, cfg.clip_coef, mask=mask
                )
                penalty_loss = ft.penalty_loss(batch)
                loss = policy_loss + penalty_loss
                ft.check_finite(**{"loss/total": loss})
                local["loss/policy"] = float(policy_loss.detach())
                local["loss/kl_penalty"] = float(penalty_loss.detach())
                return loss, local

            stats, updates, _ = clipped_updates(
                len(prompts),
                minibatch_loss,
                optimizer,
                [list(policy.parameters())],
                epochs=cfg.update_epochs,
                num_minibatches=1,
                max_grad_norm=cfg.max_grad_norm,
                target_kl=0.0,
                generator=generator,
            )
            stats["grpo/approx_kl"], stats["grpo/clipfrac"] = stats.pop("approx_kl"), stats.pop("clipfrac")

            # 3. Bookkeeping: KL to the base on fresh prompts, metrics, evaluation, checkpoint.
            ft.step(env_steps=len(prompts))
            metrics = {k: v / updates for k, v in stats.items()}
            metrics.update(ft.track_kl(ft.kl_problems()))
            metrics.update(
                {
                    "success/train": float(rewards.mean()),
                    "reward/mean": float(rewards.mean()),
                    "tokens/sampled": float(mask.sum()),
                    "grpo/informative_groups": float((grouped.std(1) > 0).float().mean()),
                    "time/rollout_s": rollout_s,
                    "time/iteration_s": time.perf_counter() - started,
                }
            )
            ft.end_iteration(metrics, before)
    finally:
        ft.close()
    return ft.finish()
