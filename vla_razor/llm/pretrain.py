"""`vla-razor llm pretrain`: a tiny causal LM trained from scratch on the prior arithmetic suite.

Reads top to bottom: tokenizer and model, an AdamW loop over fresh batches of prior-suite problems
(uniform over tasks, seeded), periodic greedy evaluation on held-out problems of every task (the new
task included, where the base should be weak), checkpoints, ``save_pretrained`` at the end.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import torch
from tqdm import tqdm

from vla_razor.atomic import write_json
from vla_razor.errors import NonFiniteError
from vla_razor.pretrain import (
    lr_at,  # the same warm-up + cosine schedule as the robot base
)
from vla_razor.progress import progress
from vla_razor.rundir import RunDir

from ..config import Fraction, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt
from .data import answer_loss, encode_batch, evaluate_accuracy
from .model import TinyLMConfig, build_model, place
from .tasks import EXPOSURE_TASK, NEW_TASK, PRIOR_TASKS, generate, get_task


@dataclass
class LLMPretrainConfig:
    name: str = "llm-base"
    """Run directory name under ``runs_dir``."""
    runs_dir: str = "runs"
    """Where run directories go."""
    model: TinyLMConfig = field(default_factory=TinyLMConfig)
    """Architecture and size of the tiny LM."""
    prior_tasks: list[str] = field(default_factory=lambda: list(PRIOR_TASKS))
    """Tasks the base learns (the retention suite)."""
    new_task: str = NEW_TASK
    """The fine-tuning task, evaluated here (the base should be weak on it)."""
    exposure_task: str = EXPOSURE_TASK
    """Longer problems mixed into pretraining at ``exposure_fraction`` (and evaluated): the new task's family."""
    exposure_fraction: Fraction = 0.002
    """Share of training problems from ``exposure_task``: a little exposure, so the base starts weak on the
    new task but not at zero and GRPO has successes to reinforce (the robot base's few new-task
    demonstrations). At 0.002 and 8000 steps the base answers 18% of add_4_5 and 47% of add_4_4; at 0.02
    it had 47% of add_4_5 by step 2500."""
    steps: PositiveInt = 8000
    """Gradient steps."""
    batch_size: PositiveInt = 128
    """Problems per step."""
    lr: PositiveFloat = 1e-3
    """Peak AdamW learning rate (linear warm-up, cosine decay)."""
    warmup_steps: NonNegativeInt = 200
    """Linear warm-up steps."""
    weight_decay: NonNegativeFloat = 0.01
    """AdamW weight decay."""
    eval_every: NonNegativeInt = 1000
    """Steps between evaluations (0: only at the end)."""
    eval_problems: PositiveInt = 200
    """Held-out problems per task per evaluation."""
    checkpoint_every: PositiveInt = 500
    """Steps between checkpoints (resumable)."""
    seed: NonNegativeInt = 0
    """Seed of initialisation and training problems."""
    eval_seed: NonNegativeInt = 10_000
    """Seed of the held-out evaluation problems (disjoint from training streams)."""
    threads: NonNegativeInt = 0
    """torch threads (0: torch's default)."""
    device: str = "cpu"
    """cpu, cuda or auto (cuda when available)."""

    def __post_init__(self):
        for task in [*self.prior_tasks, self.new_task, self.exposure_task]:
            get_task(task)  # a clear KeyError for an unknown task
        if not 0 <= self.exposure_fraction < 1:
            raise ValueError(f"exposure_fraction must be in [0, 1), got {self.exposure_fraction}")
        if self.steps < 1 or self.batch_size < 1 or self.eval_problems < 1:
            raise ValueError("steps, batch_size and eval_problems must be >= 1")


SMOKE = dict(
    name="llm-base-smoke",
    steps=30,
    batch_size=16,
    warmup_steps=5,
    eval_every=0,
    eval_problems=8,
    checkpoint_every=10,
    model=TinyLMConfig(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64),
)


def training_batch(cfg: LLMPretrainConfig, step: int) -> list:
    """The problems of ``step``: a pure function of (seed, step), so a resumed run sees the same stream."""
    rng = random.Random(cfg.seed * 1_000_003 + step)
    tasks = [
        cfg.exposure_task if rng.random() < cfg.exposure_fraction else rng.choice(cfg.prior_tasks)
        for _ in range(cfg.batch_size)
    ]
    return [generate(t, 1, seed=rng.randrange(1, 2**31))[0] for t in tasks]


def evaluate_all(model, tokenizer, cfg: LLMPretrainConfig, problems: int) -> dict:
    return {
        task: evaluate_accuracy(model, tokenizer, task, problems, seed=cfg.eval_seed)
        for task in dict.fromkeys([*cfg.prior_tasks, cfg.new_task, cfg.exposure_task])
    }


def pretrain(cfg: LLMPretrainConfig):
    from .tokenizer import build_tokenizer

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    run = RunDir.create(cfg.runs_dir, cfg.name, cfg, resume=True)
    torch.manual_seed(cfg.seed)
    tokenizer = build_tokenizer()
    model = place(build_model(cfg.model, tokenizer), tokenizer, cfg.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    start = 0
    found = run.load_latest_checkpoint()
    if found is None:
        run.truncate_metrics(0)  # a killed first attempt may have logged before its first checkpoint
    else:
        _, start, state = found
        model.load_state_dict({k: v.to(next(model.parameters()).device) for k, v in state["model"].items()})
        optimizer.load_state_dict(state["optimizer"])
        if "torch_rng" in state:
            torch.set_rng_state(state["torch_rng"])
        run.truncate_metrics(start)
        tqdm.write(f"resuming {run.path} from step {start}")

    def log_eval(step: int, problems: int) -> dict:
        results = evaluate_all(model, tokenizer, cfg, problems)
        prior = [results[t].rate for t in cfg.prior_tasks]
        run.log(
            step,
            {
                **{f"accuracy/{t}": r.rate for t, r in results.items()},
                "accuracy/prior_mean": sum(prior) / len(prior),
                "accuracy/new_task": results[cfg.new_task].rate,
            },
        )
        tqdm.write(f"step {step}: " + ", ".join(f"{t} {r.rate:.0%}" for t, r in results.items()))
        return results

    model.train()
    bar = progress(range(start, cfg.steps), desc="llm pretrain", unit="step", initial=start, total=cfg.steps)
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, cfg)
        loss = answer_loss(model, encode_batch(tokenizer, training_batch(cfg, step)))
        if not torch.isfinite(loss):
            raise NonFiniteError(
                f"loss is {loss.item()} at step {step}; the last good checkpoint is {run.latest_checkpoint()}"
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        done = step + 1
        if done % 50 == 0 or done == cfg.steps:
            run.log(done, {"loss/answer": loss.item(), "lr": lr_at(step, cfg)})
            bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
        if cfg.eval_every and done % cfg.eval_every == 0 and done < cfg.steps:
            log_eval(done, cfg.eval_problems)
        if done % cfg.checkpoint_every == 0 or done == cfg.steps:
            run.save_checkpoint(
                done,
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "torch_rng": torch.get_rng_state(),
                },
            )
    bar.close()
    policy_dir = run.path / "policy"
    model.save_pretrained(policy_dir)
    tokenizer.save_pretrained(policy_dir)
    results = log_eval(cfg.steps, cfg.eval_problems)
    write_json(
        run.eval / "accuracy.json",
        {
            "problems_per_task": cfg.eval_problems,
            "eval_seed": cfg.eval_seed,
            "tasks": {
                t: {
                    **r.as_dict(),
                    "role": "new" if t == cfg.new_task else "exposure" if t == cfg.exposure_task else "prior",
                }
                for t, r in results.items()
            },
        },
    )
    run.close()
    print(f"base model: {policy_dir}")
    return run.path
