"""Configuration of the flow-matching VLA."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from vla_razor.config import NonNegativeFloat, PositiveFloat, PositiveInt

from ..base import PolicyConfig
from ..registry import register_family


@register_family("flow", "vla_razor.policies.flow.modeling_flow:FlowPolicy")
@dataclass
class FlowConfig(PolicyConfig):
    num_steps: PositiveInt = 5
    """K: denoising (integration) steps from noise (t=1) to action (t=0)."""
    noise_method: Literal["sde", "noise"] = "sde"
    """Stochastic sampling for RL: 'sde' (Flow-SDE: the ODE step turned into an SDE step with the same
    marginals) or 'noise' (Flow-Noise: the ODE mean plus a learned per-step std)."""
    noise_level: NonNegativeFloat = 0.5
    """Flow-SDE: a in sigma_t = a * sqrt(t / (1 - t))."""
    noise_init_std: PositiveFloat = 0.2
    """Flow-Noise: the std the learned noise head starts from."""
    noise_min_std: PositiveFloat = 0.05
    """Flow-Noise: lower bound of the learned std (keeps exploration and the log-density finite)."""
    noise_max_std: PositiveFloat = 0.5
    """Flow-Noise: upper bound of the learned std."""

    def __post_init__(self):
        super().__post_init__()
        if self.num_steps < 1:
            raise ValueError(f"num_steps must be >= 1, got {self.num_steps}")
        if self.noise_level <= 0:
            raise ValueError(f"noise_level must be > 0, got {self.noise_level}")
        if not 0 < self.noise_min_std <= self.noise_init_std <= self.noise_max_std:
            raise ValueError("need 0 < noise_min_std <= noise_init_std <= noise_max_std")
