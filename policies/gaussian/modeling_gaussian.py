"""The Gaussian MLP policy: a diagonal Gaussian over the whole action chunk, i.e. a chain of K = 1 step.

``N(mean(obs), diag(std)^2)`` over the flattened chunk ``[H * A]``; the mean is an MLP on the flattened
observation tokens (no tanh: the env clips actions, and a squashed Gaussian would need a change of
variables in every log-density). The chain has one step whose input is a dummy: ``points[:, 0]`` is
zeros and ``points[:, 1]`` the action chunk, so the chain KL of two Gaussian policies is the plain
KL of their action Gaussians.

The log-std is bounded smoothly, ``log_std = min + (max - min) sigmoid(raw)``, so its gradient never
dies at a bound (a hard clamp would freeze it there).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from vla_razor.divergence import DiagGaussian, GaussianChain

from ..base import Chain, ChainPolicy, SampleMode
from .configuration_gaussian import GaussianConfig


class GaussianPolicy(ChainPolicy):
    family = "gaussian"
    config_class = GaussianConfig

    def __init__(self, config: GaussianConfig, embed_language: bool = True):
        super().__init__(config, embed_language)
        out = config.chunk_size * config.action_dim
        layers, width = [], self.obs_encoder.num_tokens * config.hidden
        for _ in range(config.num_layers):
            layers += [nn.Linear(width, config.hidden), nn.GELU()]
            width = config.hidden
        self.trunk = nn.Sequential(*layers)
        self.mean_head = nn.Linear(config.hidden, out)
        nn.init.zeros_(
            self.mean_head.weight
        )  # start at the centre of the action range, as the chain families do
        nn.init.zeros_(self.mean_head.bias)
        raw = self._log_std_to_raw(config.init_log_std)
        if config.state_dependent_std:
            self.log_std_head = nn.Linear(config.hidden, out)
            nn.init.zeros_(self.log_std_head.weight)  # starts state-independent, at init_log_std
            nn.init.constant_(self.log_std_head.bias, raw)
        else:
            self.log_std_raw = nn.Parameter(torch.full((out,), raw))

    def _log_std_to_raw(self, log_std: float) -> float:
        frac = (log_std - self.config.min_log_std) / (self.config.max_log_std - self.config.min_log_std)
        return math.log(frac / (1 - frac))

    def _raw_to_log_std(self, raw: torch.Tensor) -> torch.Tensor:
        lo, hi = self.config.min_log_std, self.config.max_log_std
        return lo + (hi - lo) * torch.sigmoid(raw)

    def distribution(self, obs: dict) -> DiagGaussian:
        """The action Gaussian ``[B, H * A]``."""
        features = self.trunk(self.encode(obs).flatten(1))
        mean = self.mean_head(features)
        raw = self.log_std_head(features) if self.config.state_dependent_std else self.log_std_raw
        log_std = self._raw_to_log_std(raw).expand_as(mean)
        # From normalised to action units (an affine map of the Gaussian), chunk-flattened.
        scale = self.action_scale.repeat(self.config.chunk_size)
        return DiagGaussian(
            mean * scale + self.action_center.repeat(self.config.chunk_size), log_std + scale.log()
        )

    @torch.no_grad()
    def sample(self, obs: dict, mode: SampleMode = "stochastic", generator: torch.Generator | None = None):
        if mode not in ("stochastic", "deterministic"):
            raise ValueError(f"mode must be 'stochastic' or 'deterministic', got {mode!r}")
        dist = self.distribution(obs)
        flat = dist.mean if mode == "deterministic" else dist.sample(generator)
        actions = flat.reshape(-1, self.config.chunk_size, self.config.action_dim)
        chain = Chain(
            torch.stack([torch.zeros_like(actions), actions], dim=1),
            stochastic=mode == "stochastic",
            steps=GaussianChain(dist.mean[:, None], dist.log_std[:, None]),
        )
        return chain.actions, chain

    def step_distributions(self, obs: dict, chain: Chain) -> GaussianChain:
        self._check_chain(chain, 1)
        dist = self.distribution(obs)
        return GaussianChain(dist.mean[:, None], dist.log_std[:, None])

    def bc_loss(
        self, obs: dict, actions: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """MSE of the mean on the demonstrated chunk; the std is not trained by BC.

        Why not the NLL: on near-deterministic demonstrations the NLL drives the std to its lower bound
        (exp(-5) ~ 0.007), which leaves RL no exploration and makes the log-density of any exploratory
        action extreme. With MSE the std stays at ``init_log_std``, a chosen exploration level, like the
        fixed step noise that the flow (noise_level) and diffusion (min_std) families bring to RL, so
        the families start fine-tuning from comparable noise. The mean's gradient is also independent
        of the std (the NLL's is scaled by 1/std^2). ``generator`` is unused (the loss is deterministic);
        it is accepted for a uniform interface.
        """
        actions = self._normalized_targets(actions)
        mean = self.mean_head(self.trunk(self.encode(obs).flatten(1)))
        return torch.nn.functional.mse_loss(mean, actions.flatten(1))
