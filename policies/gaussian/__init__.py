"""Gaussian MLP policy: a diagonal Gaussian over the action chunk (the chain of length K = 1)."""

from .configuration_gaussian import GaussianConfig
from .modeling_gaussian import GaussianPolicy

__all__ = ["GaussianConfig", "GaussianPolicy"]
