"""`vla-razor llm finetune --algo grpo|sft`: fine-tune the base LM on the new task, tracking the KL to the
base.

The loops are :mod:`.grpo` and :mod:`.sft`; both run in :class:`~vla_razor.llm.harness.LLMFinetuneHarness`,
the LLM adapter of the harness the robot track runs (:mod:`vla_razor.training`), so both tracks log the
same metrics (``kl/forward``, ``kl/reverse``, ``success/new_task``, ``retention/<task>``), stop on a NaN
the same way (:class:`~vla_razor.errors.NonFiniteError`, exit code 3) and write the same run directory.
"""

from __future__ import annotations

from pathlib import Path

from vla_razor.algorithms import LLM_ALGORITHMS as ALGORITHMS

from .harness import LLMFinetuneConfig, LLMFinetuneHarness, token_log_probs

__all__ = ["ALGORITHMS", "SMOKE", "LLMFinetuneConfig", "LLMFinetuneHarness", "token_log_probs", "train"]


SMOKE = dict(
    iterations=2,
    num_prompts=2,
    group_size=2,
    kl_states=4,
    eval_every=1,
    eval_episodes=4,
    final_eval_episodes=4,
    checkpoint_every=1,
    base="runs/llm-base-smoke/policy",
)


def train(cfg: LLMFinetuneConfig, algo: str, resume: bool = False) -> Path:
    """Run ``algo`` (grpo or sft) with ``cfg``; returns the run directory."""
    if algo == "grpo":
        from .grpo import train as run
    elif algo == "sft":
        from .sft import train as run
    else:
        raise ValueError(f"unknown LLM fine-tuning algorithm {algo!r}: grpo or sft")
    return run(cfg, resume=resume)
