"""Diffusion (DDPM) VLA: a denoising chain with exact per-step Gaussians, as in DPPO."""

from .configuration_diffusion import DiffusionConfig
from .modeling_diffusion import DiffusionPolicy, cosine_betas, ddpm_schedule, linear_betas

__all__ = ["DiffusionConfig", "DiffusionPolicy", "cosine_betas", "ddpm_schedule", "linear_betas"]
