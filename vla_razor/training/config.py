"""The shared level of every trainer's config (TRL's ``TrainingArguments``): :class:`TrainerConfig`, and the
field group every fine-tuning trainer adds, :class:`FinetuneFields`.

A trainer's config is one class beside its loop (``rl/ppo.py: PPOConfig``) that extends
:class:`TrainerConfig` and the field groups it needs (:class:`FinetuneFields`, a track's group such as
:class:`vla_razor.harness.RobotTaskFields`); it declares only its own fields and sets the defaults of
inherited ones in ``defaults``. Ranges and choices are annotations, checked by :mod:`vla_razor.config`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from vla_razor.config import Config, NonNegativeInt, PositiveFloat, PositiveInt, Range
from vla_razor.divergence.penalty import KLPenaltyConfig


@dataclass
class TrainerConfig(Config):
    """Fields every trainer shares (pretraining and fine-tuning, both tracks), one declaration each."""

    name: str = ""
    """Run directory name under ``runs_dir`` ('': the trainer's own, e.g. ``<algo>-<task>``)."""
    runs_dir: str = "runs"
    """Where run directories go."""
    seed: NonNegativeInt = 0
    """Seed of the trainer's random streams (:mod:`vla_razor.seeding`)."""
    lr: PositiveFloat = 1e-4
    """Learning rate of the policy's optimizer (the peak, for trainers with a schedule)."""
    max_grad_norm: PositiveFloat = 1.0
    """Global gradient-norm clip."""
    eval_every: NonNegativeInt = 10
    """Iterations (pretraining: gradient steps) between evaluations; 0: only at the end."""
    eval_episodes: PositiveInt = 20
    """Episodes (LLM: problems) per task per periodic evaluation (fixed seeds, deterministic actions or
    greedy decoding)."""
    final_eval_episodes: PositiveInt = 50
    """Episodes (LLM: problems) per task of the final evaluation."""
    checkpoint_every: PositiveInt = 10
    """Iterations between checkpoints (the last iteration always gets one)."""
    eval_seed: NonNegativeInt = 10_000
    """First seed of evaluation (episodes or problems; disjoint from training seeds)."""
    threads: NonNegativeInt = 0
    """torch threads (0: torch's default)."""


@dataclass
class FinetuneFields:
    """Fields every fine-tuning trainer adds (both tracks): the base, the KL to it, validation episodes."""

    base: str = "runs/base/policy"
    """The base policy: a directory written by ``save_pretrained`` (``vla-razor pretrain`` writes
    ``runs/<name>/policy``)."""
    validation_episodes: NonNegativeInt = 0
    """New-task validation episodes per evaluation (periodic and final), with seeds disjoint from the scored
    ones: the analysis chooses a run's checkpoint at a target success on these and scores it on the others
    (``validation/new_task_success``). 0: none (then a checkpoint is chosen on the episodes it is scored
    on)."""
    kl_states: Annotated[int, Range(ge=2)] = 256
    """New-task states (LLM: prompts) per iteration on which the KL to the base is measured."""
    kl_penalty: KLPenaltyConfig = field(default_factory=KLPenaltyConfig)
    """Optional penalty toward the base policy (default none, as in the paper)."""
