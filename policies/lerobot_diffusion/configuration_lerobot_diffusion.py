"""LeRobot DiffusionPolicy: the adapter's settings (the network's are LeRobot's own config.json)."""

from __future__ import annotations

from dataclasses import dataclass

from vla_razor.config import NonNegativeFloat, PositiveInt

from ..base import PolicyConfig
from ..registry import register_family


@register_family(
    "lerobot_diffusion",
    "vla_razor.policies.lerobot_diffusion.modeling_lerobot_diffusion:LeRobotDiffusionChain",
    lerobot_type="diffusion",
)
@dataclass
class LeRobotDiffusionChainConfig(PolicyConfig):
    """The adapter's settings; the network's are LeRobot's own config (its ``config.json``)."""

    min_std: NonNegativeFloat = 0.1
    """Floor on every denoising step's standard deviation (normalised action units, where actions span
    [-1, 1]) when sampling stochastically and in the log-probabilities. DDPM's last step has none, and its
    last steps' are so small that a policy update changes their log-densities by tens of nats; DPPO floors
    sampling and log-probabilities at 0.1 for the same reason."""
    horizon: PositiveInt = 8
    """Actions per denoised chunk (LeRobot's ``horizon``); the env executes the first ``chunk_size``
    (LeRobot's ``n_action_steps``). Read from the LeRobot config when loaded."""
    num_steps: PositiveInt = 10
    """Denoising steps of the chain (LeRobot's ``num_inference_steps``): read from the LeRobot config, or set
    by ``num_steps`` in the directory's ``vla_razor.json`` (DPPO fine-tunes fewer steps than the policy was
    trained with), which the saved policy's LeRobot config then carries."""
    ddim_eta: NonNegativeFloat = 1.0
    """A DDIM policy's noise in stochastic sampling: eta of Song et al.'s formula 12 (1: DDPM's variance at
    DDIM's timesteps; 0: LeRobot's deterministic DDIM, then only ``min_std`` remains). DPPO samples with 1.
    LeRobot's own sampler (deterministic mode) always uses 0; DDPM policies ignore it."""
