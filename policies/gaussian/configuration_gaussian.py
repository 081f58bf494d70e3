"""Configuration of the Gaussian MLP policy (a chain of K = 1 step)."""

from __future__ import annotations

from dataclasses import dataclass

from ..base import PolicyConfig
from ..registry import register_family


@register_family("gaussian", "vla_razor.policies.gaussian.modeling_gaussian:GaussianPolicy")
@dataclass
class GaussianConfig(PolicyConfig):
    init_log_std: float = -1.0
    """Log-std of every action dimension at initialisation (std ~ 0.37: the RL exploration level)."""
    min_log_std: float = -5.0
    """Lower bound of the log-std (a smooth bound: log_std = min + (max - min) sigmoid(raw))."""
    max_log_std: float = 0.5
    """Upper bound of the log-std."""
    state_dependent_std: bool = False
    """False: one learned log-std per action entry, shared by all states; True: a linear head on the MLP
    features (starting at init_log_std everywhere)."""

    def __post_init__(self):
        super().__post_init__()
        if self.num_layers < 1:
            raise ValueError(f"num_layers must be >= 1 (MLP layers), got {self.num_layers}")
        if not self.min_log_std < self.init_log_std < self.max_log_std:
            raise ValueError(
                f"need min_log_std < init_log_std < max_log_std, got {self.min_log_std}, "
                f"{self.init_log_std}, {self.max_log_std}"
            )
