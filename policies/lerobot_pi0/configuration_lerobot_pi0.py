"""LeRobot pi0: the adapter's settings (the network's are LeRobot's own config.json)."""

from __future__ import annotations

from dataclasses import dataclass

from ..lerobot.configuration_flow_chain import LeRobotFlowChainConfig
from ..registry import register_family


@register_family(
    "lerobot_pi0", "vla_razor.policies.lerobot_pi0.modeling_lerobot_pi0:LeRobotPI0Chain", lerobot_type="pi0"
)
@dataclass
class LeRobotPI0ChainConfig(LeRobotFlowChainConfig):
    """The settings of
    :class:`~vla_razor.policies.lerobot.configuration_flow_chain.LeRobotFlowChainConfig`."""
