"""The one interface every policy family implements: action chunks sampled through a Gaussian chain.

A policy maps a canonical observation to an action chunk ``[H, 7]`` by a chain of K Gaussian steps
(a denoising chain; K = 1 for a plain Gaussian policy). Because every step is Gaussian, the chain has
an exact log-likelihood and two policies can be compared step by step with the exact KL of
:mod:`vla_razor.divergence`:

- ``sample(obs, mode)`` -> ``(actions [B, H, A], chain)``; ``mode`` is ``"stochastic"`` (exploration:
  each step samples its Gaussian) or ``"deterministic"`` (evaluation: each step takes its mean, e.g.
  the flow ODE).
- ``step_distributions(obs, chain)`` -> :class:`GaussianChain` ``[B, K, H*A]``: each step's Gaussian
  evaluated at the chain's own input point of that step.
- ``log_prob(obs, chain)`` -> ``[B]``: the sum of the per-step log-densities of the chain's outputs.
- ``bc_loss(obs, actions)``: the family's supervised loss on demonstrated chunks.
- ``save_pretrained(dir)`` / ``from_pretrained(dir)``: ``config.json`` + ``model.safetensors``.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

import torch
from torch import nn

from vla_razor.config import PositiveInt
from vla_razor.divergence import GaussianChain
from vla_razor.envs.registry import World
from vla_razor.errors import CheckpointError

from .encoders import ObservationEncoder, as_tensor_obs
from .registry import FAMILIES, lerobot_family, lerobot_types, policy_class
from .serialization import (
    CONFIG_NAME,
    LEROBOT_PREFIX,
    build_saved_config,
    lerobot_type,
    load_weights,
    read_saved_config,
    save_module,
)

SampleMode = Literal["stochastic", "deterministic"]
MIN_ACTION_SCALE = 0.05


@dataclass
class PolicyConfig:
    """Fields every family shares."""

    chunk_size: PositiveInt = 8
    """H: actions per policy decision (an action chunk)."""
    action_dim: PositiveInt = 7
    """A: the canonical action width (end-effector delta pose + gripper)."""
    hidden: PositiveInt = 128
    """Width of observation tokens and of the action expert."""
    num_layers: PositiveInt = 3
    """Transformer layers of the action expert (MLP layers for the Gaussian family)."""
    num_heads: PositiveInt = 4
    """Attention heads of the action expert."""
    use_rgb: bool = False
    """Encode the base-camera image with a small CNN (needs obs_mode='rgb')."""
    image_size: PositiveInt = 64
    """RGB side length in pixels, when used."""
    world: World = "maniskill"
    """The simulator whose tasks the policy serves (``task_id`` counts within it; a policy serves one)."""

    def __post_init__(self):
        if self.chunk_size < 1 or self.action_dim < 1 or self.hidden < 1:
            raise ValueError("chunk_size, action_dim and hidden must be >= 1")
        if self.hidden % self.num_heads:
            raise ValueError(f"hidden ({self.hidden}) must be a multiple of num_heads ({self.num_heads})")


@dataclass
class Chain:
    """A sampled chain: ``points[:, k]`` is the input of step k and ``points[:, k + 1]`` its output.

    ``points`` is ``[B, K + 1, H, A]``; the last point is the action chunk.
    """

    points: torch.Tensor
    stochastic: bool
    steps: GaussianChain | None = None
    """When ``sample`` made the chain: the policy's step Gaussians at the chain's own points (``[B, K, H*A]``,
    action units; in stochastic mode, the Gaussians the points were drawn from). The sampler's log-densities
    and KLs then come with no second pass through the network."""

    @property
    def actions(self) -> torch.Tensor:
        return self.points[:, -1]

    @property
    def num_steps(self) -> int:
        return self.points.shape[1] - 1


class ChainPolicy(nn.Module, ABC):
    """Base class: observation encoding, the chain log-likelihood, and hub-style saving."""

    family: ClassVar[str]
    config_class: ClassVar[type[PolicyConfig]]

    def __init__(self, config: PolicyConfig, embed_language: bool = True):
        super().__init__()
        if not isinstance(config, self.config_class):
            raise TypeError(
                f"{type(self).__name__} needs a {self.config_class.__name__}, got {type(config).__name__}"
            )
        self.config = config
        self.obs_encoder = ObservationEncoder(
            config.hidden, config.use_rgb, config.image_size, embed_language, config.world
        )
        # The chain runs in normalised action units: each dimension's training range mapped to [-1, 1]
        # (Diffusion Policy's convention, which diffusion's x0 clipping assumes). Demonstrated deltas
        # are ~0.05 wide while the chain starts from unit noise; without this the noise swamps the
        # signal the network must learn. Identity until set_normalization.
        self.register_buffer("action_center", torch.zeros(config.action_dim))
        self.register_buffer("action_scale", torch.ones(config.action_dim))

    # -- the interface -------------------------------------------------------------------------
    @abstractmethod
    def sample(
        self, obs: dict, mode: SampleMode = "stochastic", generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, Chain]: ...

    @abstractmethod
    def step_distributions(self, obs: dict, chain: Chain) -> GaussianChain: ...

    @abstractmethod
    def bc_loss(self, obs: dict, actions: torch.Tensor) -> torch.Tensor: ...

    def log_prob(self, obs: dict, chain: Chain) -> torch.Tensor:
        """Exact log-likelihood ``[B]`` of the chain's step outputs under this policy's step Gaussians."""
        dists = self.step_distributions(obs, chain)
        return dists.log_prob(chain.points[:, 1:].flatten(2))

    @torch.no_grad()
    def set_normalization(self, obs: dict, actions: torch.Tensor) -> None:
        """Observation and action statistics from training data (``obs`` canonical ``[N, ...]``, ``actions``
        ``[N, H, A]``)."""
        self.obs_encoder.set_normalization(obs["proprio"], obs["state"], obs["state_mask"], obs["task_id"])
        flat = self._check_actions(actions).reshape(-1, self.config.action_dim)
        low, high = flat.min(0).values, flat.max(0).values
        self.action_center.copy_((high + low) / 2)
        # A dimension that never varies keeps a small positive scale, so the chain still explores it.
        self.action_scale.copy_(((high - low) / 2).clamp(min=MIN_ACTION_SCALE))

    def normalize_actions(self, actions: torch.Tensor) -> torch.Tensor:
        return (actions - self.action_center) / self.action_scale

    def denormalize_actions(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.action_scale + self.action_center

    # -- helpers for subclasses ----------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.obs_encoder.instruction_table.device

    def encode(self, obs: dict) -> torch.Tensor:
        return self.obs_encoder(as_tensor_obs(obs, self.device))

    def _normalized_targets(self, actions: torch.Tensor) -> torch.Tensor:
        """Demonstrated chunks checked and moved to normalised action units (what bc_loss regresses)."""
        return self.normalize_actions(self._check_actions(actions))

    def _check_actions(self, actions: torch.Tensor) -> torch.Tensor:
        want = (self.config.chunk_size, self.config.action_dim)
        if actions.dim() != 3 or tuple(actions.shape[1:]) != want:
            raise ValueError(f"action chunks must be [B, {want[0]}, {want[1]}], got {tuple(actions.shape)}")
        return actions.to(self.device, torch.float32)

    def _check_chain(self, chain: Chain, num_steps: int) -> None:
        want = (num_steps + 1, self.config.chunk_size, self.config.action_dim)
        if tuple(chain.points.shape[1:]) != want:
            raise ValueError(
                f"{self.family} chain points must be [B, {', '.join(map(str, want))}], got "
                f"{tuple(chain.points.shape)}"
            )

    # -- saving --------------------------------------------------------------------------------
    def save_pretrained(self, directory: str | Path) -> Path:
        """Write ``config.json`` and ``model.safetensors`` (atomically) into ``directory``."""
        return save_module(
            self, directory, {"family": self.family, "config": dataclasses.asdict(self.config)}
        )

    @classmethod
    def from_pretrained(cls, directory: str | Path, device: str | torch.device = "cpu") -> "ChainPolicy":
        """Load a policy saved by :meth:`save_pretrained` (any family when called on ChainPolicy), or a
        directory LeRobot's ``save_pretrained`` wrote, through the family registered for its LeRobot type."""
        kind = lerobot_type(directory)
        directory = Path(str(directory).removeprefix(LEROBOT_PREFIX))
        if kind:
            family = lerobot_family(kind)
            if family is None:
                raise CheckpointError(
                    f"{directory}: LeRobot policy type {kind!r} is not supported behind vla-razor's chain "
                    f"interface yet; supported: {', '.join(lerobot_types())}"
                )
            return policy_class(family).from_pretrained(directory, device=device)
        meta = read_saved_config(directory, "policy", "family")
        family = meta["family"]
        if family not in FAMILIES:
            raise CheckpointError(
                f"{directory / CONFIG_NAME}: unknown policy family {family!r}; known: {', '.join(FAMILIES)}"
            )
        policy_cls = policy_class(family)
        if cls is not ChainPolicy and policy_cls is not cls:
            raise CheckpointError(f"{directory} holds a {family} policy, not a {cls.family} policy")
        config = build_saved_config(policy_cls.config_class, meta, directory)
        policy = policy_cls(config, embed_language=False)  # the instruction table comes with the weights
        return load_weights(policy, directory, "policy", device)


class DenoisingChainPolicy(ChainPolicy):
    """Families whose chain is K network steps from noise to action (flow matching, diffusion).

    A subclass defines ``_step(x, k, obs_tokens)`` for step indices ``k`` ``[B]`` (0 = the first
    step, from pure noise) and returns the step's deterministic next point, its Gaussian mean and its
    log-std, each ``[B, H, A]``; sampling and the batched step evaluation are shared here.
    """

    @abstractmethod
    def _step(
        self, x: torch.Tensor, k: torch.Tensor, obs_tokens: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]: ...

    @property
    def num_steps(self) -> int:
        return self.config.num_steps

    @torch.no_grad()
    def sample(self, obs: dict, mode: SampleMode = "stochastic", generator: torch.Generator | None = None):
        if mode not in ("stochastic", "deterministic"):
            raise ValueError(f"mode must be 'stochastic' or 'deterministic', got {mode!r}")
        cfg = self.config
        tokens = self.encode(obs)
        batch = tokens.shape[0]
        shape = (batch, cfg.chunk_size, cfg.action_dim)
        x = torch.randn(shape, generator=generator, device=self.device)
        points, means, log_stds = [x], [], []
        for k in range(self.num_steps):
            deterministic_next, mean, log_std = self._step(
                x, torch.full((batch,), k, device=self.device), tokens
            )
            if mode == "deterministic":
                x = deterministic_next
            else:
                x = mean + log_std.exp() * torch.randn(shape, generator=generator, device=self.device)
            points.append(x)
            means.append(mean)
            log_stds.append(log_std)
        # Chain points are stored in action units, so a chain means the same thing to any policy
        # (base and fine-tuned), whatever its normalisation.
        flat = (batch, self.num_steps, cfg.chunk_size * cfg.action_dim)
        steps = GaussianChain(
            self.denormalize_actions(torch.stack(means, dim=1)).reshape(flat),
            (torch.stack(log_stds, dim=1) + self.action_scale.log()).reshape(flat),
        )
        chain = Chain(
            self.denormalize_actions(torch.stack(points, dim=1)), stochastic=mode == "stochastic", steps=steps
        )
        return chain.actions, chain

    def step_distributions(self, obs: dict, chain: Chain) -> GaussianChain:
        cfg = self.config
        K = self.num_steps
        self._check_chain(chain, K)
        tokens = self.encode(obs)
        batch = tokens.shape[0]
        # All K steps in one batched forward pass: [B*K, ...].
        x = self.normalize_actions(chain.points[:, :K].to(self.device)).reshape(
            batch * K, cfg.chunk_size, cfg.action_dim
        )
        k = torch.arange(K, device=self.device).repeat(batch)
        _, mean, log_std = self._step(x, k, tokens.repeat_interleave(K, dim=0))
        # Back to action units: an affine map of each step's Gaussian (mean scaled and shifted, log-std
        # shifted).
        mean, log_std = self.denormalize_actions(mean), log_std + self.action_scale.log()
        flat = (batch, K, cfg.chunk_size * cfg.action_dim)
        return GaussianChain(mean.reshape(flat), log_std.reshape(flat))
