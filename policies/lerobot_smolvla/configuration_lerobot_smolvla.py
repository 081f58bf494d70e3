"""LeRobot SmolVLA: the adapter's settings (the network's are LeRobot's own config.json)."""

from __future__ import annotations

from dataclasses import dataclass

from ..lerobot.configuration_flow_chain import LeRobotFlowChainConfig
from ..registry import register_family


@register_family(
    "lerobot_smolvla",
    "vla_razor.policies.lerobot_smolvla.modeling_lerobot_smolvla:LeRobotSmolVLAChain",
    lerobot_type="smolvla",
)
@dataclass
class LeRobotSmolVLAChainConfig(LeRobotFlowChainConfig):
    """The settings of
    :class:`~vla_razor.policies.lerobot.configuration_flow_chain.LeRobotFlowChainConfig`."""
