"""A state-value critic V(obs) for RL fine-tuning, kept beside the policies rather than inside them.

It has its own observation encoder, so the critic's gradients never move the policy (whose KL to the
base policy is what vla-razor measures), and it saves like a policy: ``config.json`` +
``model.safetensors`` in one directory.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from vla_razor.config import PositiveInt
from vla_razor.envs.registry import World
from vla_razor.errors import CheckpointError

from .encoders import ObservationEncoder, as_tensor_obs
from .serialization import CONFIG_NAME, build_saved_config, load_weights, read_saved_config, save_module

CRITIC_KIND = "value_critic"


@dataclass
class CriticConfig:
    hidden: PositiveInt = 128
    """Width of the observation tokens and of the MLP layers."""
    num_layers: PositiveInt = 2
    """Hidden layers of the MLP on the flattened observation tokens."""
    use_rgb: bool = False
    """Encode the base-camera image too (needs obs_mode='rgb')."""
    image_size: PositiveInt = 64
    """RGB side length in pixels, when used."""
    world: World = "maniskill"
    """The simulator whose tasks the critic values (as the policy's ``world``)."""

    def __post_init__(self):
        if self.hidden < 1 or self.num_layers < 1:
            raise ValueError(f"hidden and num_layers must be >= 1, got {self.hidden} and {self.num_layers}")


class ValueCritic(nn.Module):
    """Canonical observation -> value ``[B]``."""

    def __init__(self, config: CriticConfig | None = None, embed_language: bool = True):
        super().__init__()
        self.config = config = config or CriticConfig()
        self.obs_encoder = ObservationEncoder(
            config.hidden, config.use_rgb, config.image_size, embed_language, config.world
        )
        layers, width = [], self.obs_encoder.num_tokens * config.hidden
        for _ in range(config.num_layers):
            layers += [nn.Linear(width, config.hidden), nn.GELU()]
            width = config.hidden
        self.mlp = nn.Sequential(*layers, nn.Linear(width, 1))

    @property
    def device(self) -> torch.device:
        return self.obs_encoder.instruction_table.device

    def forward(self, obs: dict) -> torch.Tensor:
        tokens = self.obs_encoder(as_tensor_obs(obs, self.device))
        return self.mlp(tokens.flatten(1)).squeeze(-1)

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write ``config.json`` and ``model.safetensors`` (atomically) into ``directory``."""
        return save_module(self, directory, {"kind": CRITIC_KIND, "config": dataclasses.asdict(self.config)})

    @classmethod
    def from_pretrained(cls, directory: str | Path, device: str | torch.device = "cpu") -> "ValueCritic":
        """Load a critic saved by :meth:`save_pretrained`."""
        directory = Path(directory)
        meta = read_saved_config(directory, "critic", "kind")
        if meta["kind"] != CRITIC_KIND:
            raise CheckpointError(
                f"{directory / CONFIG_NAME} holds a {meta['kind']!r}, not a {CRITIC_KIND!r}"
            )
        critic = cls(build_saved_config(CriticConfig, meta, directory), embed_language=False)
        return load_weights(
            critic, directory, "critic", device
        )  # the instruction table comes with the weights
