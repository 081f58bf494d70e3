"""Flow-matching VLA (rectified flow; Flow-SDE and Flow-Noise stochastic chains)."""

from .configuration_flow import FlowConfig

_MODELING = ("FlowPolicy", "flow_sde_step")
__all__ = ["FlowConfig", *_MODELING]


def __getattr__(name: str):
    """The modeling names, imported on first use (importing the family registers its config alone)."""
    if name in _MODELING:
        from . import modeling_flow

        return getattr(modeling_flow, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
