"""SFT on a causal LM (`vla-razor llm finetune --algo sft`), read top to bottom.

Each iteration is one update: cross-entropy on the correct answers of ``num_prompts * group_size`` fresh
new-task problems (as many sequences as a GRPO iteration samples), plus the optional penalty toward the
base. With ``data: rl`` it is the paper's control: the answers are the responses ``rl_policy`` samples,
kept where they are correct, so SFT sees exactly the problems the RL policy solves, in its words. The
harness (:class:`~vla_razor.llm.harness.LLMFinetuneHarness`) measures the KL to the base, evaluates, snapshots
and checkpoints, exactly as on the robot track.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from vla_razor import seeding as streams
from vla_razor.errors import NoRLDataError

from .data import encode_batch, sample_responses
from .harness import LLMFinetuneConfig, LLMFinetuneHarness, token_log_probs
from .tasks import generate, is_correct


def teacher_batch(ft: LLMFinetuneHarness, problems: list, generator: torch.Generator) -> tuple[dict, float]:
    """The RL teacher's own correct responses to ``problems`` (where several forms are correct, its form),
    encoded for training, and the fraction it solved."""
    responses, ended = sample_responses(
        ft.teacher,
        ft.tokenizer,
        problems,
        ft.max_new,
        sample=True,
        temperature=ft.cfg.temperature,
        generator=generator,
    )
    solved = [
        i
        for i, (p, r, e) in enumerate(zip(problems, responses, ended))
        if e and is_correct(p, ft.tokenizer.decode(r, skip_special_tokens=True))
    ]
    if not solved:
        raise NoRLDataError(
            f"{ft.cfg.rl_policy} solved none of {len(problems)} {ft.task} problems at "
            f"iteration {ft.iteration + 1}: no RL data to clone"
        )
    batch = encode_batch(
        ft.tokenizer, [problems[i] for i in solved], [responses[i] for i in solved], [True] * len(solved)
    )
    return batch, len(solved) / len(problems)


def train(cfg: LLMFinetuneConfig, resume: bool = False) -> Path:
    ft = LLMFinetuneHarness(cfg, "sft" if cfg.data == "answers" else "sft-rl", resume=resume)
    policy = ft.policy
    optimizer = torch.optim.AdamW(policy.parameters(), lr=cfg.lr, weight_decay=0.0)
    generator = torch.Generator().manual_seed(streams.minibatches(cfg.seed))
    ft.restore({"policy": policy}, {"optimizer": optimizer}, generator)

    ft.start(cfg.iterations)
    try:
        while not ft.done:
            started, before = time.perf_counter(), ft.progress_count
            # 1. Fresh problems every iteration (a pure function of seed and iteration) and their answers.
            problems = generate(
                cfg.task, cfg.num_prompts * cfg.group_size, seed=streams.problems(cfg.seed, ft.iteration)
            )
            metrics: dict[str, float] = {}
            if ft.teacher is not None:
                batch, metrics["sft/rl_solved"] = teacher_batch(ft, problems, generator)
            else:
                batch = encode_batch(ft.tokenizer, problems)

            # 2. One cross-entropy step on the answer tokens.
            policy.train()
            sft_loss = -(token_log_probs(policy, batch).sum() / batch["response_mask"][:, 1:].sum())
            penalty_loss = ft.penalty_loss(batch)
            loss = sft_loss + penalty_loss
            ft.check_finite(**{"loss/sft": sft_loss, "loss/total": loss})
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.max_grad_norm)
            optimizer.step()

            # 3. Bookkeeping: KL to the base on fresh prompts, metrics, evaluation, checkpoint.
            ft.step(env_steps=int(batch["input_ids"].shape[0]))
            metrics.update(
                {"loss/sft": float(sft_loss.detach()), "loss/kl_penalty": float(penalty_loss.detach())}
            )
            metrics.update(ft.track_kl(ft.kl_problems()))
            metrics["time/iteration_s"] = time.perf_counter() - started
            ft.end_iteration(metrics, before)
    finally:
        ft.close()
    return ft.finish()
