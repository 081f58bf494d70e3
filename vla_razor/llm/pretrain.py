"""`vla-razor llm pretrain`: a tiny causal LM trained from scratch on the prior arithmetic suite.

Reads top to bottom: tokenizer and model, an AdamW loop over fresh batches of prior-suite problems
(uniform over tasks, seeded), periodic greedy evaluation on held-out problems of every task (the new
task included, where the base should be weak), checkpoints, ``save_pretrained`` at the end.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Annotated

import torch
from tqdm import tqdm

from vla_razor import seeding as streams
from vla_razor.atomic import write_json
from vla_razor.training import TrainerConfig, TrainingLoop
from vla_razor.training.schedules import lr_scheduler

from ..config import Device, NonNegativeFloat, NonNegativeInt, PositiveInt, Range
from .data import answer_loss, encode_batch, evaluate_accuracy
from .model import TinyLMConfig, build_model, place
from .tasks import EXPOSURE_TASK, NEW_TASK, PRIOR_TASKS, generate, get_task


@dataclass
class LLMPretrainConfig(TrainerConfig):
    """LLM pretraining's config: the shared trainer fields (``eval_every`` and ``checkpoint_every`` count
    gradient steps; ``lr`` is AdamW's peak, after a linear warm-up, before a cosine decay to 0) and
    pretraining's own below."""

    defaults = dict(
        name="llm-base",
        lr=1e-3,
        eval_every=1000,
        eval_episodes=200,
        final_eval_episodes=200,
        checkpoint_every=500,
    )

    model: TinyLMConfig = field(default_factory=TinyLMConfig)
    """Architecture and size of the tiny LM."""
    prior_tasks: list[str] = field(default_factory=lambda: list(PRIOR_TASKS))
    """Tasks the base learns (the retention suite)."""
    new_task: str = NEW_TASK
    """The fine-tuning task, evaluated here (the base should be weak on it)."""
    exposure_task: str = EXPOSURE_TASK
    """Longer problems mixed into pretraining at ``exposure_fraction`` (and evaluated): the new task's
    family."""
    exposure_fraction: Annotated[float, Range(ge=0, lt=1)] = 0.002
    """Share of training problems from ``exposure_task``: a little exposure, so the base starts weak on the
    new task but not at zero and GRPO has successes to reinforce (the robot base's few new-task
    demonstrations)."""
    steps: PositiveInt = 8000
    """Gradient steps."""
    batch_size: PositiveInt = 128
    """Problems per step."""
    warmup_steps: NonNegativeInt = 200
    """Linear warm-up steps."""
    weight_decay: NonNegativeFloat = 0.01
    """AdamW weight decay."""
    device: Device = "cpu"
    """cpu, cuda or auto (cuda when available)."""

    def __post_init__(self):
        super().__post_init__()
        for task in [*self.prior_tasks, self.new_task, self.exposure_task]:
            get_task(task)  # a clear KeyError for an unknown task


SMOKE = dict(
    name="llm-base-smoke",
    steps=30,
    batch_size=16,
    warmup_steps=5,
    eval_every=0,
    eval_episodes=8,
    final_eval_episodes=8,
    checkpoint_every=10,
    model=TinyLMConfig(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64),
)


def training_batch(cfg: LLMPretrainConfig, step: int) -> list:
    """The problems of ``step``: a pure function of (seed, step), so a resumed run sees the same stream."""
    rng = random.Random(streams.problems(cfg.seed, step))
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
    """Train the base LM; a run directory that exists is resumed from its last checkpoint."""
    from .tokenizer import build_tokenizer

    loop = TrainingLoop(cfg, cfg.name, resume=True)
    run = loop.run
    tokenizer = build_tokenizer()
    model = place(build_model(cfg.model, tokenizer), tokenizer, cfg.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = lr_scheduler(optimizer, "cosine", cfg.steps, cfg.warmup_steps)  # as the robot base's
    loop.restore({"policy": model}, {"optimizer": optimizer, "scheduler": scheduler}, unit="step")

    def log_eval(problems: int) -> dict:
        results = evaluate_all(model, tokenizer, cfg, problems)
        prior = [results[t].rate for t in cfg.prior_tasks]
        run.log(
            loop.iteration,
            {
                **{f"accuracy/{t}": r.rate for t, r in results.items()},
                "accuracy/prior_mean": sum(prior) / len(prior),
                "accuracy/new_task": results[cfg.new_task].rate,
            },
        )
        tqdm.write(f"step {loop.iteration}: " + ", ".join(f"{t} {r.rate:.0%}" for t, r in results.items()))
        return results

    model.train()
    loop.start(cfg.steps, "step", desc="llm pretrain")
    try:
        while not loop.done:
            before = loop.progress_count
            lr = scheduler.get_last_lr()[0]
            loss = answer_loss(model, encode_batch(tokenizer, training_batch(cfg, loop.iteration)))
            loop.check_finite(**{"loss/answer": loss})
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
            loop.step()
            postfix = None
            if loop.iteration % 50 == 0 or loop.done:
                run.log(loop.iteration, {"loss/answer": loss.item(), "lr": lr})
                postfix = {"loss": f"{loss.item():.4f}"}
            loop.advance(before, postfix)
            if loop.due(cfg.eval_every):
                log_eval(cfg.eval_episodes)
            loop.checkpoint_if_due()
    finally:
        loop.close()
    policy_dir = run.path / "policy"
    model.save_pretrained(policy_dir)
    tokenizer.save_pretrained(policy_dir)
    results = log_eval(cfg.final_eval_episodes)
    write_json(
        run.eval / "accuracy.json",
        {
            "problems_per_task": cfg.final_eval_episodes,
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
