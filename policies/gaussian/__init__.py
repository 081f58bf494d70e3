"""Gaussian MLP policy: a diagonal Gaussian over the action chunk (the chain of length K = 1)."""

from .configuration_gaussian import GaussianConfig

_MODELING = ("GaussianPolicy",)
__all__ = ["GaussianConfig", *_MODELING]


def __getattr__(name: str):
    """The modeling names, imported on first use (importing the family registers its config alone)."""
    if name in _MODELING:
        from . import modeling_gaussian

        return getattr(modeling_gaussian, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
