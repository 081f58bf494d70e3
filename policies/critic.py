"""A state-value critic V(obs) for RL fine-tuning, kept beside the policies rather than inside them.

It has its own observation encoder, so the critic's gradients never move the policy (whose KL to the
base policy is what vla-razor measures), and it saves like a policy: ``config.json`` +
``model.safetensors`` in one directory.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .base import CONFIG_NAME, WEIGHTS_NAME
from .encoders import ObservationEncoder, as_tensor_obs

CRITIC_KIND = "value_critic"


@dataclass
class CriticConfig:
    hidden: int = 128
    """Width of the observation tokens and of the MLP layers."""
    num_layers: int = 2
    """Hidden layers of the MLP on the flattened observation tokens."""
    use_rgb: bool = False
    """Encode the base-camera image too (needs obs_mode='rgb')."""
    image_size: int = 64
    """RGB side length in pixels, when used."""

    def __post_init__(self):
        if self.hidden < 1 or self.num_layers < 1:
            raise ValueError(f"hidden and num_layers must be >= 1, got {self.hidden} and {self.num_layers}")


class ValueCritic(nn.Module):
    """Canonical observation -> value ``[B]``."""

    def __init__(self, config: CriticConfig | None = None, embed_language: bool = True):
        super().__init__()
        self.config = config = config or CriticConfig()
        self.obs_encoder = ObservationEncoder(config.hidden, config.use_rgb, config.image_size, embed_language)
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
        from safetensors.torch import save_model

        from vla_razor.rundir import atomic_path, write_json

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        with atomic_path(directory / WEIGHTS_NAME) as tmp:
            save_model(self, str(tmp))
        write_json(directory / CONFIG_NAME, {"kind": CRITIC_KIND, "config": dataclasses.asdict(self.config)})
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | Path, device: str | torch.device = "cpu") -> "ValueCritic":
        """Load a critic saved by :meth:`save_pretrained`."""
        from safetensors import SafetensorError
        from safetensors.torch import load_model

        from vla_razor.config import ConfigError, _build

        directory = Path(directory)
        config_path, weights_path = directory / CONFIG_NAME, directory / WEIGHTS_NAME
        for path in (config_path, weights_path):
            if not path.is_file():
                raise FileNotFoundError(f"{path} is missing: not a saved vla-razor critic (save one with save_pretrained)")
        try:
            meta = json.loads(config_path.read_text())
            kind = meta["kind"]
        except (json.JSONDecodeError, KeyError) as err:
            raise ValueError(f"{config_path} is corrupt or not a critic's ({err}); re-save the critic") from None
        if kind != CRITIC_KIND:
            raise ValueError(f"{config_path} holds a {kind!r}, not a {CRITIC_KIND!r}")
        try:
            config = _build(CriticConfig, meta.get("config", {}), "config", str(config_path))
        except ConfigError as err:
            raise ValueError(str(err)) from None
        critic = cls(config, embed_language=False)  # the instruction table comes with the weights
        try:
            load_model(critic, str(weights_path), strict=True, device=str(device))
        except (SafetensorError, RuntimeError, OSError) as err:
            raise ValueError(f"{weights_path} cannot be loaded ({type(err).__name__}: {err}); re-save the critic") from None
        return critic.to(device)
