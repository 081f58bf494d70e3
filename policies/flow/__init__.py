"""Flow-matching VLA (rectified flow; Flow-SDE and Flow-Noise stochastic chains)."""

from .configuration_flow import FlowConfig
from .modeling_flow import FlowPolicy, flow_sde_step

__all__ = ["FlowConfig", "FlowPolicy", "flow_sde_step"]
