"""LeRobot's pi0.5 (``PI05Policy``) as a chain policy: pi0's PaliGemma prefix with the state discretised into
the prompt (:mod:`vla_razor.policies.lerobot.flow_chain` has the chain)."""

from __future__ import annotations

import torch

from ..lerobot.flow_chain import LeRobotFlowChain
from ..lerobot_pi0.modeling_lerobot_pi0 import LeRobotPI0Chain
from .configuration_lerobot_pi05 import LeRobotPI05ChainConfig


class LeRobotPI05Chain(LeRobotPI0Chain):
    """LeRobot's ``PI05Policy``: the state discretised into the prompt, so the expert sees noisy actions
    only."""

    family = "lerobot_pi05"
    config_class = LeRobotPI05ChainConfig

    @classmethod
    def _policy_class(cls):
        from lerobot.policies.pi05.modeling_pi05 import PI05Policy

        return PI05Policy

    def _prefix(self, batch: dict) -> dict:
        """The prefix cache as PI05Pytorch.sample_actions computes it (pi0's, with no state beside it)."""
        return self._paligemma_prefix(batch)

    def _velocity(self, context: dict, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return LeRobotFlowChain._velocity(self, context, x, t)
