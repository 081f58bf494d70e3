"""Diffusion (DDPM) VLA: a denoising chain with exact per-step Gaussians, as in DPPO."""

from .configuration_diffusion import DiffusionConfig

_MODELING = ("DiffusionPolicy", "cosine_betas", "ddpm_schedule", "linear_betas")
__all__ = ["DiffusionConfig", *_MODELING]


def __getattr__(name: str):
    """The modeling names, imported on first use (importing the family registers its config alone)."""
    if name in _MODELING:
        from . import modeling_diffusion

        return getattr(modeling_diffusion, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
