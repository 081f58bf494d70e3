"""The fine-tuning algorithms of the robot track, by name: where each one's config class and training loop
live, and what ``--smoke`` sets for it (one table for all)."""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from .config import load_config, with_smoke


@dataclass(frozen=True)
class Algorithm:
    """One fine-tuning algorithm: ``module`` defines its config class ``config`` and its ``train(cfg)``."""

    module: str
    config: str
    smoke: dict
    """Its own ``--smoke`` settings, over :data:`SMOKE`'s."""


SMOKE = dict(
    eval_every=0,
    eval_episodes=1,
    retention_episodes=1,
    final_eval_episodes=1,
    video_episodes=1,
    checkpoint_every=1,
    kl_states=8,
    suite="smoke",
    base="runs/base-smoke/policy",
)
"""What ``--smoke`` sets for every fine-tuning run: the two-task suite, its base, one episode per
evaluation."""

ALGORITHMS = {
    "ppo": Algorithm(
        "vla_razor.rl.ppo",
        "PPOConfig",
        dict(
            total_env_steps=256,
            num_envs=2,
            num_decisions=4,
            update_epochs=1,
            num_minibatches=2,
            critic_warmup_iterations=1,
        ),
    ),
    "grpo": Algorithm(
        "vla_razor.rl.grpo",
        "GRPOConfig",
        dict(
            total_env_steps=200,
            num_groups=1,
            group_size=2,
            score="return",
            update_epochs=1,
            num_minibatches=1,
        ),
    ),
    "sft": Algorithm(
        "vla_razor.sft.bc",
        "SFTConfig",
        dict(iterations=2, steps_per_iteration=2, batch_size=8, demos=1, rl_episodes=2),
    ),
}
"""Every robot fine-tuning algorithm by name (the command line's ``--algo`` choices are these)."""

LLM_ALGORITHMS = ("grpo", "sft")
"""The LLM track's fine-tuning algorithms (:func:`vla_razor.llm.finetune.train` dispatches them)."""


def smoke_settings(algo: str) -> dict:
    """What ``--smoke`` sets for ``algo``."""
    return {**SMOKE, **ALGORITHMS[algo].smoke}


def load_algorithm(
    algo: str, config: str | None = None, overrides: list[str] | None = None, smoke: bool = False
):
    """``(config, train)`` of a fine-tuning algorithm: its config file (default
    ``configs/finetune_<algo>.yaml``) with dotted overrides, at the ``--smoke`` budget when asked."""
    if algo not in ALGORITHMS:
        raise ValueError(f"unknown fine-tuning algorithm {algo!r}: choose one of {', '.join(ALGORITHMS)}")
    module = importlib.import_module(ALGORITHMS[algo].module)
    cfg = load_config(
        getattr(module, ALGORITHMS[algo].config), config or f"configs/finetune_{algo}.yaml", overrides or []
    )
    if smoke:
        cfg = with_smoke(cfg, smoke_settings(algo), overrides or [])
    return cfg, module.train
