"""The settings every LeRobot flow-matching family (pi0, pi0.5, SmolVLA) shares; each family's configuration
module subclasses it and registers the subclass (policies/lerobot_pi0/ and its siblings)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from vla_razor.config import PositiveFloat, PositiveInt

from ..base import PolicyConfig


@dataclass
class LeRobotFlowChainConfig(PolicyConfig):
    """The adapter's settings; the network's are LeRobot's own config (its ``config.json``)."""

    noise_level: PositiveFloat = 0.5
    """Flow-SDE: a in s_t = a sqrt(t / (1 - t)), the exploration noise of stochastic sampling (in the model's
    normalised action units)."""
    horizon: PositiveInt = 50
    """Actions per denoised chunk (LeRobot's ``chunk_size``); the env executes the first ``chunk_size`` of
    this config (LeRobot's ``n_action_steps``). Read from the LeRobot config when loaded."""
    num_steps: PositiveInt = 10
    """Denoising (Euler) steps of the chain (LeRobot's ``num_inference_steps`` / ``num_steps``): read from the
    LeRobot config, or set by ``num_steps`` in the directory's ``vla_razor.json``, which the saved policy's
    LeRobot config then carries."""
    chain_dim: PositiveInt = 32
    """Width of the chain's actions: the model's padded ``max_action_dim``. Read from the LeRobot config."""
    noise_method: Literal["sde", "noise"] = "sde"
    """Stochastic sampling: 'sde' (Flow-SDE: the Euler step turned into an SDE step with the same marginals,
    noise ``noise_level``) or 'noise' (Flow-Noise: the Euler step plus Gaussian noise whose std a learned
    head predicts from the expert's action-token features; the head is trained with the policy)."""
    noise_init_std: PositiveFloat = 0.2
    """Flow-Noise: the std the noise head starts from (normalised action units)."""
    noise_min_std: PositiveFloat = 0.05
    """Flow-Noise: lower bound of the learned std."""
    noise_max_std: PositiveFloat = 0.5
    """Flow-Noise: upper bound of the learned std."""

    def __post_init__(self):
        super().__post_init__()
        if not 0 < self.noise_min_std <= self.noise_init_std <= self.noise_max_std:
            raise ValueError("need 0 < noise_min_std <= noise_init_std <= noise_max_std")
