"""The LLM track's fine-tuning harness: GRPO and SFT on a causal LM on the arithmetic tasks.

What every fine-tuning run shares (frozen base, KL every iteration, evaluation, snapshots, checkpoints,
the NaN guard, ``final.json``) is :mod:`vla_razor.training`, the same code the robot track runs; this
module is the LLM's adapter to it: the model and tokenizer from a local checkpoint, greedy accuracy on the
tasks, the exact token KL to the base (:mod:`.kl`) and the penalty toward it.

An LLM "episode" is one problem and an "env step" one sampled or trained response, so both tracks fill
the same fields (``eval_episodes``, ``kl_states``, ``env_steps``) and write the same run directory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch

from vla_razor import seeding as streams
from vla_razor.base_kl import freeze
from vla_razor.config import Device, PositiveFloat, PositiveInt
from vla_razor.divergence import categorical_kl
from vla_razor.training import FinetuneFields, FinetuneHarness, TrainerConfig

from .data import batch_device, evaluate_accuracy
from .kl import measure_token_kl, response_logits
from .tasks import NEW_TASK, PRIOR_TASKS, generate, get_task


@dataclass
class LLMFinetuneConfig(FinetuneFields, TrainerConfig):
    """The LLM fine-tuning config (GRPO's and SFT's own fields are marked): the shared trainer fields, the
    fine-tuning group and the LLM's own below. ``base`` is any local Hugging Face checkpoint directory with
    its tokenizer."""

    defaults = dict(base="runs/llm-base/policy", kl_states=64, eval_episodes=100, final_eval_episodes=200)

    task: str = NEW_TASK
    """The new task."""
    prior_tasks: list[str] = field(default_factory=lambda: list(PRIOR_TASKS))
    """The retention suite."""
    iterations: PositiveInt = 100
    """Updates."""
    num_prompts: PositiveInt = 16
    """New-task prompts per iteration."""
    group_size: PositiveInt = 8
    """GRPO: responses per prompt (SFT trains on num_prompts * group_size answers per iteration)."""
    temperature: PositiveFloat = 1.0
    """GRPO (and SFT on RL data) sampling temperature."""
    clip_coef: PositiveFloat = 0.2
    """GRPO: clip range of the token ratio."""
    update_epochs: PositiveInt = 2
    """GRPO: passes over each iteration's responses."""
    data: Literal["answers", "rl"] = "answers"
    """SFT's data: 'answers' (the correct answers of fresh new-task problems) or 'rl' (the paper's control:
    responses sampled from ``rl_policy`` at ``temperature``, kept where correct, so SFT sees exactly the
    problems the RL policy solves)."""
    rl_policy: str = ""
    """data: rl: the GRPO-fine-tuned policy directory to sample from."""
    device: Device = "cpu"
    """cpu, cuda, cuda:N or auto (cuda when available)."""

    def __post_init__(self):
        super().__post_init__()
        for task in [self.task, *self.prior_tasks]:
            get_task(task)
        self.prior_tasks = [t for t in self.prior_tasks if t != self.task]
        if self.data == "rl" and not self.rl_policy:
            raise ValueError("data: rl needs rl_policy=<a GRPO run's policy directory>")
        if self.kl_penalty.kind != "none" and self.kl_penalty.direction == "js":
            raise ValueError(
                "kl_penalty.direction: js is the robot track's; the LLM track takes forward or reverse"
            )


class LLMFinetuneHarness(FinetuneHarness):
    """The LLM track's fine-tuning harness: a causal LM and its tokenizer, the arithmetic tasks, the exact
    token KL to the base. The algorithm's loop (:mod:`.grpo`, :mod:`.sft`) owns the updates."""

    cfg: LLMFinetuneConfig

    def __init__(self, cfg: LLMFinetuneConfig, algo: str, resume: bool = False):
        from .model import load_policy, place

        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        policy, tokenizer = load_policy(cfg.base)  # a bad base fails before the run directory exists
        place(policy, tokenizer, cfg.device)
        self.teacher = None
        if cfg.data == "rl":
            self.teacher, _ = load_policy(cfg.rl_policy)
            place(self.teacher, tokenizer, cfg.device)
            self.teacher = freeze(self.teacher)
        super().__init__(cfg, cfg.name or f"llm-{algo}-{cfg.task}", resume=resume)
        self.policy, self.tokenizer = policy, tokenizer
        self.base = freeze(policy)
        self.task, self.prior_tasks = cfg.task, list(cfg.prior_tasks)
        self.device = batch_device(tokenizer)
        # room for the longest answer of the task, its end token and a little slack
        self.max_new = max(len(p.answer) for p in generate(cfg.task, 256, seed=cfg.eval_seed)) + 3
        self.begin(algo)

    def start(self, total: int, unit: str = "iteration", desc: str = ""):
        return super().start(total, unit, desc or f"llm {self.algo} {self.task}")

    def kl_problems(self) -> list:
        """This iteration's fresh new-task prompts for the KL to the base (disjoint from evaluation's)."""
        return generate(
            self.task, self.cfg.kl_states, seed=streams.kl_prompts(self.cfg.eval_seed, self.iteration)
        )

    # -- the track's part ------------------------------------------------------------------------
    def evaluate_tasks(self, episodes: dict[str, int], seed: int | None = None) -> dict:
        seed = self.cfg.eval_seed if seed is None else seed
        return {
            t: evaluate_accuracy(self.policy, self.tokenizer, t, n, seed=seed) for t, n in episodes.items()
        }

    def measure_kl(self, states: list, seed: int) -> dict[str, float]:
        generator = torch.Generator().manual_seed(seed)
        out = measure_token_kl(self.base, self.policy, self.tokenizer, states, self.max_new, generator)
        out["kl/states"] = out.pop("kl/sequences")
        return out

    def save_policy(self, directory: Path) -> Path:
        self.policy.save_pretrained(directory)
        self.tokenizer.save_pretrained(directory)
        return directory

    def final_result(self, policy_dir: Path):
        from vla_razor.retention import SuiteResult

        n, tasks = self.cfg.final_eval_episodes, self.tasks
        base = {t: evaluate_accuracy(self.base, self.tokenizer, t, n, seed=self.cfg.eval_seed) for t in tasks}
        return SuiteResult(
            suite="llm",
            new_task=self.task,
            prior_tasks=self.prior_tasks,
            episodes=n,
            seed=self.cfg.eval_seed,
            tasks=self.evaluate_tasks({t: n for t in tasks}),
            base=base,
            policy=str(policy_dir),
        )

    # -- the penalty toward the base ----------------------------------------------------------------
    def penalty_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The coefficient times the mean over sequences of the summed exact token KL to the base (forward
        or reverse), each token's KL scaled by the base's max-probability with ``critical_weighting`` (low
        where the base is unsure: the critical tokens); zero without a penalty."""
        penalty = self.cfg.kl_penalty
        if penalty.kind == "none":
            return torch.zeros((), device=self.device)
        mask = batch["response_mask"][:, 1:]
        logits = response_logits(self.policy, batch)
        with torch.no_grad():
            base_logits = response_logits(self.base, batch)
        per_token = (
            categorical_kl(base_logits, logits, mask)
            if penalty.direction == "forward"
            else categorical_kl(logits, base_logits, mask)
        )
        if penalty.critical_weighting:
            per_token = per_token * torch.softmax(base_logits, -1).amax(-1)
        return self.penalty.coef * per_token.sum(-1).mean()


def token_log_probs(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """``[B, T-1]`` log-probability of each next token (zero outside the response)."""
    logits = response_logits(model, batch)
    logp = torch.log_softmax(logits, -1).gather(-1, batch["input_ids"][:, 1:, None]).squeeze(-1)
    return logp * batch["response_mask"][:, 1:]
