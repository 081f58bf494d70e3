"""LeRobot's SmolVLA (``SmolVLAPolicy``) as a chain policy: SmolVLM prefix with the state, noisy actions in
the expert (:mod:`vla_razor.policies.lerobot.flow_chain` has the chain)."""

from __future__ import annotations

import torch

from ..lerobot.flow_chain import TOKEN_MASK, TOKENS, LeRobotFlowChain
from .configuration_lerobot_smolvla import LeRobotSmolVLAChainConfig


class LeRobotSmolVLAChain(LeRobotFlowChain):
    """LeRobot's ``SmolVLAPolicy``: SmolVLM prefix (images, instruction, state), noisy actions in the
    expert."""

    family = "lerobot_smolvla"
    config_class = LeRobotSmolVLAChainConfig

    @staticmethod
    def _inference_steps(lr) -> int:
        return lr.num_steps

    @staticmethod
    def _set_inference_steps(lr, steps: int) -> None:
        lr.num_steps = steps

    @classmethod
    def _policy_class(cls):
        from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy

        return SmolVLAPolicy

    def _prefix(self, batch: dict) -> dict:
        """The prefix cache as VLAFlowMatching.sample_actions computes it."""
        from lerobot.policies.smolvla.modeling_smolvla import make_att_2d_masks

        model = self.inner.model
        images, img_masks = self.inner.prepare_images(batch)
        state = self.inner.prepare_state(batch)
        embs, pad_masks, att_masks = model.embed_prefix(
            images, img_masks, batch[TOKENS], batch[TOKEN_MASK], state=state
        )
        _, cache = model.vlm_with_expert.forward(
            attention_mask=make_att_2d_masks(pad_masks, att_masks),
            position_ids=torch.cumsum(pad_masks, dim=1) - 1,
            past_key_values=None,
            inputs_embeds=[embs, None],
            use_cache=model.config.use_cache,
        )
        return {"prefix_pad_masks": pad_masks, "past_key_values": cache, "batch_size": state.shape[0]}
