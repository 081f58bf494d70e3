"""Learning-rate schedules, from transformers (one implementation, checkpointed with the loop's state)."""

from __future__ import annotations

from typing import Literal

import torch


def lr_scheduler(
    optimizer: torch.optim.Optimizer,
    schedule: Literal["constant", "cosine"],
    total_steps: int,
    warmup_steps: int = 0,
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over ``warmup_steps`` from 0, then ``constant`` or a ``cosine`` decay to 0 at
    ``total_steps``; call ``step()`` after each ``optimizer.step()``. Register it with the loop's
    optimizers (``TrainingLoop.restore``) so a resumed run continues the schedule."""
    from transformers import get_constant_schedule_with_warmup, get_cosine_schedule_with_warmup

    if schedule == "cosine":
        return get_cosine_schedule_with_warmup(optimizer, warmup_steps, total_steps)
    if schedule == "constant":
        return get_constant_schedule_with_warmup(optimizer, warmup_steps)
    raise ValueError(f"unknown learning-rate schedule {schedule!r}: constant or cosine")
