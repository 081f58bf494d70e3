"""LeRobot's pi0 (``PI0Policy``) as a chain policy: PaliGemma prefix, state and noisy actions in the expert
(:mod:`vla_razor.policies.lerobot.flow_chain` has the chain)."""

from __future__ import annotations

import torch

from ..lerobot.flow_chain import TOKEN_MASK, TOKENS, LeRobotFlowChain
from .configuration_lerobot_pi0 import LeRobotPI0ChainConfig


class LeRobotPI0Chain(LeRobotFlowChain):
    """LeRobot's ``PI0Policy``: PaliGemma prefix (images, instruction), state and noisy actions in the
    expert."""

    family = "lerobot_pi0"
    config_class = LeRobotPI0ChainConfig

    @classmethod
    def _policy_class(cls):
        from lerobot.policies.pi0.modeling_pi0 import PI0Policy

        return PI0Policy

    @classmethod
    def _fix_keys(cls, saved: dict, inner) -> dict:
        """PI0's own renaming of openpi checkpoints, then its ``model.`` prefix
        (PI0Policy.from_pretrained)."""
        fixed = inner._fix_pytorch_state_dict_keys(saved, inner.config)
        return {k if k.startswith("model.") else f"model.{k}": v for k, v in fixed.items()}

    def _prefix(self, batch: dict) -> dict:
        """The prefix cache as PI0Pytorch.sample_actions computes it, and the padded state."""
        state = self.inner.prepare_state(batch)
        return {**self._paligemma_prefix(batch), "state": state}

    def _paligemma_prefix(self, batch: dict) -> dict:
        """PaliGemma's prefix cache over the images and the prompt (pi0's and pi0.5's sample_actions)."""
        from lerobot.policies.pi0.modeling_pi0 import make_att_2d_masks, prepare_attention_masks_4d

        model = self.inner.model
        images, img_masks = self.inner._preprocess_images(batch)
        embs, pad_masks, att_masks = model.embed_prefix(images, img_masks, batch[TOKENS], batch[TOKEN_MASK])
        masks_4d = prepare_attention_masks_4d(make_att_2d_masks(pad_masks, att_masks))
        position_ids = torch.cumsum(pad_masks, dim=1) - 1
        model.paligemma_with_expert.paligemma.model.language_model.config._attn_implementation = "eager"
        _, cache = model.paligemma_with_expert.forward(
            attention_mask=masks_4d,
            position_ids=position_ids,
            past_key_values=None,
            inputs_embeds=[embs, None],
            use_cache=True,
        )
        return {"prefix_pad_masks": pad_masks, "past_key_values": cache, "batch_size": pad_masks.shape[0]}

    def _velocity(self, context: dict, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.inner.model.denoise_step(
            state=context["state"],
            prefix_pad_masks=context["prefix_pad_masks"],
            past_key_values=context["past_key_values"],
            x_t=x,
            timestep=t,
        )
