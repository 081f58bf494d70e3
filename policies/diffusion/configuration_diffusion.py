"""Configuration of the diffusion (DDPM) policy."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from vla_razor.config import PositiveFloat, PositiveInt

from ..base import PolicyConfig
from ..registry import register_family


@register_family("diffusion", "vla_razor.policies.diffusion.modeling_diffusion:DiffusionPolicy")
@dataclass
class DiffusionConfig(PolicyConfig):
    num_steps: PositiveInt = 10
    """K: denoising steps. As in DPPO the chain is trained and sampled on the same K steps (no DDIM
    sub-sampling), so diffusion time index i runs from K (noise) down to 0 (action)."""
    beta_schedule: Literal["cosine", "linear"] = "cosine"
    """Noise schedule over the K steps: 'cosine' (Nichol & Dhariwal 2021, DPPO's default) or 'linear'
    (DDPM's linear betas, 1e-4..0.02 over 1000 steps, taken as the continuous VP-SDE they discretise and
    integrated over K equal intervals, so every K ends at the same alpha_bar_K ~ 4e-5)."""
    min_std: PositiveFloat = 0.1
    """Lower bound of every reverse step's std, the last one included (DPPO's minimum sampling std):
    keeps exploration alive and every step's log-density finite."""
    clip_sample: bool = True
    """Clip the predicted x0 to [-1, 1] before the posterior mean (actions are normalised to [-1, 1])."""

    def __post_init__(self):
        super().__post_init__()
        if self.num_steps < 1:
            raise ValueError(f"num_steps must be >= 1, got {self.num_steps}")
        if self.beta_schedule not in ("cosine", "linear"):
            raise ValueError(f"beta_schedule must be 'cosine' or 'linear', got {self.beta_schedule!r}")
        if not self.min_std > 0:
            raise ValueError(
                f"min_std must be > 0 (every step needs a finite log-density), got {self.min_std}"
            )
