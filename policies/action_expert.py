"""The action expert: a small transformer over action-chunk tokens that attends to observation tokens.

Used by the chain families (flow matching and diffusion) to predict, for a noisy chunk ``x`` at
denoising time ``t``, a velocity or a noise estimate (and optionally a second per-action output,
such as Flow-Noise's log-std).
"""

from __future__ import annotations

import math

import torch
from torch import nn


def time_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding ``[B, dim]`` of times ``t`` ``[B]`` in [0, 1]."""
    half = dim // 2
    freqs = torch.exp(
        -math.log(1000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / max(half - 1, 1)
    )
    args = t.float()[:, None] * 1000.0 * freqs[None]
    return torch.cat([torch.sin(args), torch.cos(args)], dim=-1)


class ActionExpert(nn.Module):
    def __init__(
        self, hidden: int, num_layers: int, num_heads: int, chunk_size: int, action_dim: int, outputs: int = 1
    ):
        super().__init__()
        self.hidden, self.action_dim, self.outputs = hidden, action_dim, outputs
        self.action_in = nn.Linear(action_dim, hidden)
        self.position = nn.Parameter(torch.randn(1, chunk_size, hidden) * 0.02)
        self.time = nn.Sequential(nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, hidden))
        layer = nn.TransformerEncoderLayer(
            hidden,
            num_heads,
            dim_feedforward=2 * hidden,
            dropout=0.0,
            batch_first=True,
            norm_first=True,
            activation="gelu",
        )
        self.blocks = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(hidden)
        self.head = nn.Linear(hidden, action_dim * outputs)
        nn.init.zeros_(self.head.weight)  # start by predicting 0: a calm first chain
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, obs_tokens: torch.Tensor) -> torch.Tensor:
        """``x`` [B, H, A], ``t`` [B], ``obs_tokens`` [B, T, hidden] -> [B, H, A * outputs]."""
        h = self.action_in(x) + self.position + self.time(time_embedding(t, self.hidden))[:, None]
        tokens = torch.cat([obs_tokens, h], dim=1)
        out = self.norm(self.blocks(tokens)[:, obs_tokens.shape[1] :])
        return self.head(out)
