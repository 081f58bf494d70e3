"""The three distribution families the divergence core understands.

They are plain containers of tensors with shape checks, not policies: a policy (robot or LLM) builds
them from its outputs and hands them to :func:`vla_razor.divergence.kl`.

Shapes
------
``Categorical(logits)``        logits ``[..., V]``; batch shape ``[...]``, event: one category.
``DiagGaussian(mean, log_std)`` ``[..., D]``; batch shape ``[...]``, event: a D-vector.
``GaussianChain(mean, log_std)`` ``[..., K, D]``: K per-step diagonal Gaussians of a denoising chain,
    each evaluated at the chain's intermediate point of that step. Batch shape ``[...]``; event: the
    K x D outputs of the chain. Two policies' chains are comparable only when both were evaluated at
    the SAME intermediate points (the sampled chain of one of them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

_LOG_2PI = math.log(2.0 * math.pi)


def _check_tensor(name: str, value) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if not value.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {value.dtype}")
    return value


@dataclass(frozen=True)
class Categorical:
    """A categorical distribution over the last dimension, parameterised by unnormalised logits.

    ``-inf`` logits are allowed (masked categories have probability 0).
    """

    logits: torch.Tensor

    def __post_init__(self):
        _check_tensor("Categorical.logits", self.logits)
        if self.logits.dim() < 1 or self.logits.shape[-1] < 1:
            raise ValueError(
                f"Categorical.logits needs shape [..., V] with V >= 1, got {tuple(self.logits.shape)}"
            )

    @property
    def batch_shape(self) -> torch.Size:
        return self.logits.shape[:-1]

    @property
    def log_probs(self) -> torch.Tensor:
        return torch.log_softmax(self.logits, dim=-1)

    @property
    def probs(self) -> torch.Tensor:
        return torch.softmax(self.logits, dim=-1)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """Log-probability of integer categories ``value`` of shape ``batch_shape``."""
        if value.shape != self.batch_shape:
            raise ValueError(
                f"Categorical.log_prob: value shape {tuple(value.shape)} != batch shape "
                f"{tuple(self.batch_shape)}"
            )
        return self.log_probs.gather(-1, value.long().unsqueeze(-1)).squeeze(-1)

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        flat = self.probs.reshape(-1, self.logits.shape[-1])
        return torch.multinomial(flat, 1, generator=generator).reshape(self.batch_shape)

    def entropy(self) -> torch.Tensor:
        logp = self.log_probs
        return -(logp.exp() * logp.masked_fill(torch.isneginf(logp), 0.0)).sum(-1)


@dataclass(frozen=True)
class DiagGaussian:
    """A Gaussian with diagonal covariance over the last dimension: N(mean, diag(exp(log_std))^2)."""

    mean: torch.Tensor
    log_std: torch.Tensor

    event_dims = 1

    def __post_init__(self):
        _check_tensor(f"{type(self).__name__}.mean", self.mean)
        _check_tensor(f"{type(self).__name__}.log_std", self.log_std)
        if self.mean.dim() < self.event_dims:
            raise ValueError(
                f"{type(self).__name__}.mean needs at least {self.event_dims} dims ({self._shape_doc}), got "
                f"{tuple(self.mean.shape)}"
            )
        try:
            torch.broadcast_shapes(self.mean.shape, self.log_std.shape)
        except RuntimeError:
            raise ValueError(
                f"{type(self).__name__}: log_std shape {tuple(self.log_std.shape)} does not broadcast to "
                f"mean shape {tuple(self.mean.shape)}"
            ) from None

    _shape_doc = "[..., D]"

    @property
    def std(self) -> torch.Tensor:
        return self.log_std.exp()

    @property
    def batch_shape(self) -> torch.Size:
        shape = torch.broadcast_shapes(self.mean.shape, self.log_std.shape)
        return shape[: len(shape) - self.event_dims]

    @property
    def event_shape(self) -> torch.Size:
        shape = torch.broadcast_shapes(self.mean.shape, self.log_std.shape)
        return shape[len(shape) - self.event_dims :]

    def _sum_event(self, x: torch.Tensor) -> torch.Tensor:
        return x.sum(dim=tuple(range(-self.event_dims, 0)))

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """Log-density of ``value`` (shape batch + event), summed over the event dims."""
        z = (value - self.mean) * torch.exp(-self.log_std)
        return self._sum_event(-0.5 * z.square() - self.log_std - 0.5 * _LOG_2PI)

    def rsample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        shape = torch.broadcast_shapes(self.mean.shape, self.log_std.shape)
        noise = torch.randn(shape, generator=generator, dtype=self.mean.dtype, device=self.mean.device)
        return self.mean + noise * self.std

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        with torch.no_grad():
            return self.rsample(generator)

    def entropy(self) -> torch.Tensor:
        log_std = self.log_std.expand(torch.broadcast_shapes(self.mean.shape, self.log_std.shape))
        return self._sum_event(log_std + 0.5 * (1.0 + _LOG_2PI))


@dataclass(frozen=True)
class GaussianChain(DiagGaussian):
    """K per-step diagonal Gaussians of a denoising chain, shape ``[..., K, D]``.

    ``log_prob(points)`` takes the K step outputs (the chain's next points, ``[..., K, D]``) and sums
    the per-step log-densities over steps and dimensions: the exact log-likelihood of the chain.
    A chain of length K=1 is a :class:`DiagGaussian` with an extra step axis.
    """

    event_dims = 2
    _shape_doc = "[..., K, D]"

    @property
    def num_steps(self) -> int:
        return self.event_shape[0]

    def step(self, k: int) -> DiagGaussian:
        """The Gaussian of step ``k`` alone."""
        log_std = self.log_std.expand(torch.broadcast_shapes(self.mean.shape, self.log_std.shape))
        return DiagGaussian(self.mean[..., k, :], log_std[..., k, :])
