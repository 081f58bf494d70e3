"""The fine-tuning algorithms of the robot track, by name: their config classes and training loops."""

from __future__ import annotations

ALGORITHMS = ("ppo", "grpo", "sft")


def load_algorithm(
    algo: str, config: str | None = None, overrides: list[str] | None = None, smoke: bool = False
):
    """``(config, train)`` of a fine-tuning algorithm: its config file (default
    ``configs/finetune_<algo>.yaml``) with dotted overrides, at the ``--smoke`` budget when asked."""
    from .config import load_config, with_smoke

    if algo == "ppo":
        from .rl.ppo import SMOKE, train
        from .rl.ppo import PPOConfig as config_class
    elif algo == "grpo":
        from .rl.grpo import SMOKE, train
        from .rl.grpo import GRPOConfig as config_class
    elif algo == "sft":
        from .sft.bc import SMOKE, train
        from .sft.bc import SFTConfig as config_class
    else:
        raise ValueError(f"unknown fine-tuning algorithm {algo!r}: choose one of {', '.join(ALGORITHMS)}")
    cfg = load_config(config_class, config or f"configs/finetune_{algo}.yaml", overrides or [])
    if smoke:
        cfg = with_smoke(cfg, SMOKE, overrides or [])
    return cfg, train
