"""LeRobot pi0.5: the adapter's settings (the network's are LeRobot's own config.json)."""

from __future__ import annotations

from dataclasses import dataclass

from ..lerobot.configuration_flow_chain import LeRobotFlowChainConfig
from ..registry import register_family


@register_family(
    "lerobot_pi05",
    "vla_razor.policies.lerobot_pi05.modeling_lerobot_pi05:LeRobotPI05Chain",
    lerobot_type="pi05",
)
@dataclass
class LeRobotPI05ChainConfig(LeRobotFlowChainConfig):
    """The settings of
    :class:`~vla_razor.policies.lerobot.configuration_flow_chain.LeRobotFlowChainConfig`."""
