"""`vla-razor llm finetune --algo grpo|sft`: fine-tune the base LM on the new task, tracking the KL to the base.

One loop for both algorithms, readable top to bottom; an iteration is one update:

- **GRPO**: ``num_prompts`` new-task prompts, ``group_size`` responses each sampled from the current
  policy, binary reward (exact answer), advantages normalised within each group, the clipped token-level
  surrogate (the ratio to the sampling policy), no critic;
- **SFT**: cross-entropy on the correct answers of ``num_prompts * group_size`` new-task problems (the
  same number of sequences per iteration as GRPO).

Every iteration logs ``kl/forward`` (responses sampled from the base) and ``kl/reverse`` (from the
policy) through the divergence core's exact categorical KL, masked to the response tokens. Periodic
evaluation measures greedy accuracy on the new task and on every prior task (``retention/<task>``)
and saves a snapshot (``snapshots/iter_N``); the end writes ``eval/final.json`` with forgetting
against the base. Optional penalty toward the base: the exact token KL, forward or reverse, with
``critical_weighting`` lowering it on tokens where the base is unsure (low max-probability), the
critical tokens of "Ignore the KL Penalty!".
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch

from vla_razor.atomic import write_json
from vla_razor.errors import NonFiniteError, NoRLDataError
from vla_razor.progress import progress
from vla_razor.rundir import RunDir

from ..config import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt
from .data import batch_device, encode_batch, evaluate_accuracy, sample_responses
from .kl import measure_token_kl, response_logits
from .tasks import NEW_TASK, PRIOR_TASKS, generate, get_task, is_correct


@dataclass
class LLMFinetuneConfig:
    name: str = ""
    """Run directory name under ``runs_dir`` (default: ``llm-<algo>-<task>``)."""
    runs_dir: str = "runs"
    """Where run directories go."""
    base: str = "runs/llm-base/policy"
    """The base model: any local Hugging Face checkpoint directory with its tokenizer."""
    task: str = NEW_TASK
    """The new task."""
    prior_tasks: list[str] = field(default_factory=lambda: list(PRIOR_TASKS))
    """The retention suite."""
    lr: PositiveFloat = 1e-4
    """Learning rate (AdamW)."""
    iterations: PositiveInt = 100
    """Updates."""
    num_prompts: PositiveInt = 16
    """New-task prompts per iteration."""
    group_size: PositiveInt = 8
    """GRPO: responses per prompt (SFT trains on num_prompts * group_size answers per iteration)."""
    temperature: PositiveFloat = 1.0
    """GRPO sampling temperature."""
    clip_coef: PositiveFloat = 0.2
    """GRPO: clip range of the token ratio."""
    update_epochs: PositiveInt = 2
    """GRPO: passes over each iteration's responses."""
    max_grad_norm: PositiveFloat = 1.0
    """Global gradient-norm clip."""
    data: Literal["answers", "rl"] = "answers"
    """SFT's data: 'answers' (the correct answers of fresh new-task problems) or 'rl' (the paper's control:
    responses sampled from ``rl_policy`` at ``temperature``, kept where correct, so SFT sees exactly the
    problems the RL policy solves)."""
    rl_policy: str = ""
    """data: rl: the GRPO-fine-tuned policy directory to sample from."""
    kl_prompts: PositiveInt = 64
    """New-task prompts per iteration on which the KL to the base is measured."""
    kl_penalty: Literal["none", "forward", "reverse"] = "none"
    """Penalty toward the base on the training responses (none: the paper's setting)."""
    kl_coef: NonNegativeFloat = 0.05
    """Penalty coefficient."""
    critical_weighting: bool = False
    """Scale each token's penalty by the base's confidence (max-probability), so critical tokens explore."""
    eval_every: NonNegativeInt = 10
    """Iterations between evaluations (0: only at the end)."""
    eval_problems: PositiveInt = 100
    """Held-out problems per task per evaluation."""
    final_eval_problems: PositiveInt = 200
    """Held-out problems per task in the final evaluation."""
    checkpoint_every: PositiveInt = 10
    """Iterations between checkpoints."""
    seed: NonNegativeInt = 0
    """Seed of prompts, sampling and initialisation of the optimizer state."""
    eval_seed: NonNegativeInt = 10_000
    """Seed of held-out problems."""
    threads: NonNegativeInt = 0
    """torch threads (0: torch's default)."""
    device: str = "cpu"
    """cpu, cuda or auto (cuda when available)."""

    def __post_init__(self):
        for task in [self.task, *self.prior_tasks]:
            get_task(task)
        self.prior_tasks = [t for t in self.prior_tasks if t != self.task]
        if min(self.iterations, self.num_prompts, self.group_size, self.update_epochs, self.kl_prompts) < 1:
            raise ValueError("iterations, num_prompts, group_size, update_epochs and kl_prompts must be >= 1")
        if self.lr <= 0 or self.temperature <= 0:
            raise ValueError("lr and temperature must be > 0")
        if self.data not in ("answers", "rl"):
            raise ValueError(f"data must be 'answers' or 'rl', got {self.data!r}")
        if self.data == "rl" and not self.rl_policy:
            raise ValueError("data: rl needs rl_policy=<a GRPO run's policy directory>")


SMOKE = dict(
    iterations=2,
    num_prompts=2,
    group_size=2,
    kl_prompts=4,
    eval_every=1,
    eval_problems=4,
    final_eval_problems=4,
    checkpoint_every=1,
    base="runs/llm-base-smoke/policy",
)


def token_log_probs(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """``[B, T-1]`` log-probability of each next token (zero outside the response)."""
    logits = response_logits(model, batch)
    logp = torch.log_softmax(logits, -1).gather(-1, batch["input_ids"][:, 1:, None]).squeeze(-1)
    return logp * batch["response_mask"][:, 1:]


def group_advantages(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """(r - group mean) / (group std + 1e-6), per group of ``group_size`` consecutive responses."""
    groups = rewards.view(-1, group_size)
    return (
        (groups - groups.mean(1, keepdim=True)) / (groups.std(1, unbiased=False, keepdim=True) + 1e-6)
    ).view(-1)


def kl_penalty(policy, base, batch: dict[str, torch.Tensor], cfg: LLMFinetuneConfig) -> torch.Tensor:
    """Mean over sequences of the summed (optionally confidence-weighted) exact token KL to the base."""
    from vla_razor.divergence import categorical_kl

    mask = batch["response_mask"][:, 1:]
    logits = response_logits(policy, batch)
    with torch.no_grad():
        base_logits = response_logits(base, batch)
    per_token = (
        categorical_kl(base_logits, logits, mask)
        if cfg.kl_penalty == "forward"
        else categorical_kl(logits, base_logits, mask)
    )
    if cfg.critical_weighting:
        per_token = per_token * torch.softmax(base_logits, -1).amax(-1)  # low where the base is unsure
    return per_token.sum(-1).mean()


def train(cfg: LLMFinetuneConfig, algo: str, resume: bool = False) -> Path:
    from .model import load_policy, place

    if algo not in ("grpo", "sft"):
        raise ValueError(f"unknown LLM fine-tuning algorithm {algo!r}: grpo or sft")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    policy, tokenizer = load_policy(cfg.base)
    place(policy, tokenizer, cfg.device)
    base = copy.deepcopy(policy).eval().requires_grad_(False)
    if cfg.data == "rl" and algo != "sft":
        raise ValueError("data: rl is the SFT-on-RL-data control: use --algo sft")
    teacher = None
    if cfg.data == "rl":
        teacher, _ = load_policy(cfg.rl_policy)
        place(teacher, tokenizer, cfg.device)
        teacher.eval().requires_grad_(False)
    run = RunDir.create(
        cfg.runs_dir, cfg.name or f"llm-{algo}{'-rl' if teacher else ''}-{cfg.task}", cfg, resume=resume
    )
    optimizer = torch.optim.AdamW(policy.parameters(), lr=cfg.lr, weight_decay=0.0)
    generator = torch.Generator().manual_seed(cfg.seed)
    iteration = 0
    found = run.load_latest_checkpoint()
    if found is None:
        run.truncate_metrics(0)  # a killed first attempt may have logged before its first checkpoint
    else:
        _, iteration, state = found
        policy.load_state_dict({k: v.to(batch_device(tokenizer)) for k, v in state["policy"].items()})
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        if "torch_rng" in state:  # dropout and any other global-RNG draw continue where they stopped
            torch.set_rng_state(state["torch_rng"])
        run.truncate_metrics(iteration)
    max_new = max(len(p.answer) for p in generate(cfg.task, 256, seed=cfg.eval_seed)) + 3

    def evaluate(problems: int) -> dict:
        results = {
            t: evaluate_accuracy(policy, tokenizer, t, problems, seed=cfg.eval_seed)
            for t in [cfg.task, *cfg.prior_tasks]
        }
        return results

    def snapshot(tag: str, results: dict) -> None:
        directory = run.path / "snapshots" / tag
        policy.save_pretrained(directory)
        tokenizer.save_pretrained(directory)
        write_json(
            run.eval / f"{tag}.json",
            {
                "iteration": iteration,
                "env_steps": iteration,
                "snapshot": str(directory),
                "tasks": {
                    t: {**r.as_dict(), "role": "new" if t == cfg.task else "prior"}
                    for t, r in results.items()
                },
            },
        )

    def update(loss: torch.Tensor, batch: dict) -> torch.Tensor:
        """One optimizer step on the algorithm's loss plus the optional penalty toward the base."""
        if cfg.kl_penalty != "none":
            loss = loss + cfg.kl_coef * kl_penalty(policy, base, batch, cfg)
        check_finite("loss", loss)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.max_grad_norm)
        optimizer.step()
        return loss

    def check_finite(name: str, value) -> None:
        """Before ``backward`` and before a checkpoint: a NaN or inf stops the run with its last good checkpoint."""
        if not torch.isfinite(torch.as_tensor(value)).all():
            latest = run.latest_checkpoint()
            where = (
                f"The last good checkpoint is {latest} (resume from it with a lower lr)"
                if latest
                else "No checkpoint was written yet: start again with a lower lr"
            )
            raise NonFiniteError(
                f"{name} is {float(value)} at iteration {iteration + 1}; the run stopped. {where}"
            )

    bar = progress(total=cfg.iterations, initial=iteration, desc=f"llm {algo} {cfg.task}", unit="iter")
    while iteration < cfg.iterations:
        started = time.perf_counter()
        # fresh problems every iteration, a pure function of (seed, iteration): resumes see the same stream
        problems = generate(cfg.task, cfg.num_prompts * cfg.group_size, seed=cfg.seed * 1_000_003 + iteration)
        metrics: dict[str, float] = {}
        policy.train()
        if algo == "grpo":
            prompts = [p for p in problems[: cfg.num_prompts] for _ in range(cfg.group_size)]
            policy.eval()
            responses, ended = sample_responses(
                policy,
                tokenizer,
                prompts,
                max_new,
                sample=True,
                temperature=cfg.temperature,
                generator=generator,
            )
            policy.train()
            texts = [tokenizer.decode(r, skip_special_tokens=True) for r in responses]
            rewards = torch.tensor(
                [float(e and is_correct(p, t)) for p, t, e in zip(prompts, texts, ended)],
                device=batch_device(tokenizer),
            )
            advantages = group_advantages(rewards, cfg.group_size)
            batch = encode_batch(tokenizer, prompts, responses, ended)
            mask = batch["response_mask"][:, 1:].float()
            old = None
            for _ in range(cfg.update_epochs):
                log_probs = token_log_probs(policy, batch)
                if (
                    old is None
                ):  # before the first step the policy is the sampler: its own log-probs are the old ones
                    old = log_probs.detach()
                ratio = torch.exp(log_probs - old)
                surrogate = torch.min(
                    ratio * advantages[:, None],
                    ratio.clamp(1 - cfg.clip_coef, 1 + cfg.clip_coef) * advantages[:, None],
                )
                loss = update(-((surrogate * mask).sum(-1) / mask.sum(-1).clamp(min=1)).mean(), batch)
            metrics.update(
                {
                    "reward/mean": rewards.mean().item(),
                    "loss/policy": loss.item(),
                    "tokens/sampled": float(mask.sum().item()),
                    "grpo/groups_with_signal": (rewards.view(-1, cfg.group_size).std(1) > 0)
                    .float()
                    .mean()
                    .item(),
                }
            )
        else:
            if teacher is not None:  # keep the problems the RL policy answers correctly, with its responses
                responses, ended = sample_responses(
                    teacher,
                    tokenizer,
                    problems,
                    max_new,
                    sample=True,
                    temperature=cfg.temperature,
                    generator=generator,
                )
                solved = [
                    i
                    for i, (p, r, e) in enumerate(zip(problems, responses, ended))
                    if e and is_correct(p, tokenizer.decode(r, skip_special_tokens=True))
                ]
                metrics["sft/rl_solved"] = len(solved) / len(problems)
                if not solved:
                    raise NoRLDataError(
                        f"{cfg.rl_policy} solved none of {len(problems)} {cfg.task} problems at "
                        f"iteration {iteration + 1}: no RL data to clone"
                    )
                # clone the teacher's own correct responses (where several forms are correct, its form)
                batch = encode_batch(
                    tokenizer,
                    [problems[i] for i in solved],
                    [responses[i] for i in solved],
                    [True] * len(solved),
                )
            else:
                batch = encode_batch(tokenizer, problems)
            loss = update(
                -(token_log_probs(policy, batch).sum() / batch["response_mask"][:, 1:].sum()), batch
            )
            metrics["loss/sft"] = loss.item()
        kl_started = time.perf_counter()
        kl_problems = generate(cfg.task, cfg.kl_prompts, seed=cfg.eval_seed + 1_000_001 + iteration)
        metrics.update(measure_token_kl(base, policy, tokenizer, kl_problems, max_new, generator))
        for name in ("kl/forward", "kl/reverse"):
            check_finite(name, metrics[name])
        iteration += 1
        metrics["time/kl_s"] = time.perf_counter() - kl_started
        metrics["time/iteration_s"] = time.perf_counter() - started
        if cfg.eval_every and iteration % cfg.eval_every == 0 and iteration < cfg.iterations:
            results = evaluate(cfg.eval_problems)
            metrics["success/new_task"] = results[cfg.task].rate
            metrics.update({f"retention/{t}": results[t].rate for t in cfg.prior_tasks})
            metrics["retention/mean"] = sum(results[t].rate for t in cfg.prior_tasks) / len(cfg.prior_tasks)
            snapshot(f"iter_{iteration:06d}", results)
        run.log(iteration, metrics)
        bar.update(1)
        bar.set_postfix(
            {
                k.split("/")[-1]: f"{metrics[k]:.3g}"
                for k in ("kl/forward", "reward/mean", "success/new_task")
                if k in metrics
            }
        )
        if iteration % cfg.checkpoint_every == 0 or iteration == cfg.iterations:
            run.save_checkpoint(
                iteration,
                {
                    "policy": policy.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "generator": generator.get_state(),
                    "torch_rng": torch.get_rng_state(),
                },
            )
    bar.close()
    policy_dir = run.path / "policy"
    policy.save_pretrained(policy_dir)
    tokenizer.save_pretrained(policy_dir)
    results = evaluate(cfg.final_eval_problems)
    base_results = {
        t: evaluate_accuracy(base, tokenizer, t, cfg.final_eval_problems, seed=cfg.eval_seed)
        for t in [cfg.task, *cfg.prior_tasks]
    }
    forgetting = {t: base_results[t].rate - results[t].rate for t in cfg.prior_tasks}
    final = {
        "new_task": cfg.task,
        "prior_tasks": cfg.prior_tasks,
        "episodes": cfg.final_eval_problems,
        "new_task_success": results[cfg.task].rate,
        "retention": sum(results[t].rate for t in cfg.prior_tasks) / len(cfg.prior_tasks),
        "mean_forgetting": sum(forgetting.values()) / len(forgetting),
        "meta": {
            "iteration": iteration,
            "env_steps": iteration,
            "algo": algo if teacher is None else "sft-rl",
        },
        "tasks": {
            t: {**r.as_dict(), "role": "new" if t == cfg.task else "prior", "forgetting": forgetting.get(t)}
            for t, r in results.items()
        },
        "base": {t: r.as_dict() for t, r in base_results.items()},
    }
    write_json(run.eval / "final.json", final)
    run.log(
        iteration,
        {
            "final/success/new_task": final["new_task_success"],
            "final/retention/mean": final["retention"],
            "final/forgetting/mean": final["mean_forgetting"],
        },
    )
    run.close()
    print(
        f"new task {cfg.task}: {final['new_task_success']:.1%} | retention {final['retention']:.1%} | "
        f"mean forgetting {final['mean_forgetting']:+.1%}"
    )
    print(f"fine-tuned model: {policy_dir}")
    return run.path
