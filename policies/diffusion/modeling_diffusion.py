"""The diffusion policy: a DDPM denoising chain with exact per-step Gaussians (as in DPPO).

Convention: diffusion time index ``i`` runs from K (pure noise) to 0 (the action chunk);
``q(x_i | x_0) = N(sqrt(alpha_bar_i) x_0, (1 - alpha_bar_i) I)``. The network (the shared action
expert) predicts the noise ``eps`` of ``x_i``, at expert time ``t = i / K``. Chain step k goes from
index ``i = K - k`` to ``i - 1`` and is the Gaussian

    N(mu_i(x0_hat, x_i), max(sqrt(beta_tilde_i), min_std)^2),
    x0_hat = clip((x_i - sqrt(1 - alpha_bar_i) eps) / sqrt(alpha_bar_i))

where ``mu_i`` and ``beta_tilde_i`` are the mean and variance of the DDPM posterior
``q(x_{i-1} | x_i, x_0)``. The std floor applies to the last step too (whose posterior variance is 0),
so every step, and therefore the whole chain, has a finite log-density. The sampled action is NOT
clipped (a clipped point would have no density under the chain); the env clips actions.
"""

from __future__ import annotations

import math

import torch

from ..action_expert import ActionExpert
from ..base import DenoisingChainPolicy
from .configuration_diffusion import DiffusionConfig

# Nichol & Dhariwal's cosine schedule: the offset s keeps beta_1 from being vanishingly small, and
# betas are clipped below 1 so the last step stays invertible.
COSINE_OFFSET = 0.008
MAX_BETA = 0.999
# DDPM's linear schedule (1e-4 .. 0.02 over 1000 steps) in continuous time: beta(tau) from 0.1 to 20.
LINEAR_BETA_MIN, LINEAR_BETA_MAX = 0.1, 20.0


def cosine_betas(num_steps: int) -> torch.Tensor:
    """``[K]`` betas with ``alpha_bar_i = f(i) / f(0)``, ``f(i) = cos((i/K + s) / (1 + s) pi/2)^2`` (clipped
    at 0.999)."""
    i = torch.arange(num_steps + 1, dtype=torch.float64)
    f = torch.cos((i / num_steps + COSINE_OFFSET) / (1 + COSINE_OFFSET) * math.pi / 2).square()
    alpha_bar = f / f[0]
    return (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=MAX_BETA)


def linear_betas(num_steps: int) -> torch.Tensor:
    """``[K]`` betas of the linear VP schedule, exactly integrated over K equal intervals of [0, 1]:
    ``beta_i = 1 - exp(-int beta(tau) dtau)``. For K = 1000 these are DDPM's 1e-4 .. 0.02 (to 2e-4); unlike
    ``linspace(1e-4, 0.02, K)`` they still reach pure noise when K is small."""
    i = torch.arange(1, num_steps + 1, dtype=torch.float64)
    integral = LINEAR_BETA_MIN / num_steps + (LINEAR_BETA_MAX - LINEAR_BETA_MIN) * (2 * i - 1) / (
        2 * num_steps**2
    )
    return 1 - torch.exp(-integral)


def ddpm_schedule(betas: torch.Tensor, min_std: float) -> dict[str, torch.Tensor]:
    """Every per-index quantity of the chain, as float32 tensors ``[K + 1]`` indexed by ``i``.

    Index 0 is padding for the per-step quantities (there is no step into index 0's predecessor);
    ``alpha_bar[0] = 1``. Computed in float64 so the posterior coefficients are exact to float32.
    """
    betas = torch.cat([torch.zeros(1, dtype=torch.float64), betas.double()])
    alphas = 1 - betas
    alpha_bar = torch.cumprod(alphas, dim=0)
    prev = torch.cat([torch.ones(1, dtype=torch.float64), alpha_bar[:-1]])  # alpha_bar_{i-1}
    denom = (1 - alpha_bar).clamp(min=1e-20)  # only index 0 would divide by 0
    posterior_var = betas * (1 - prev) / denom
    schedule = {
        "betas": betas,
        "alpha_bar": alpha_bar,
        "sqrt_alpha_bar": alpha_bar.sqrt(),
        "sqrt_one_minus_alpha_bar": (1 - alpha_bar).sqrt(),
        "coef_x0": betas * prev.sqrt() / denom,
        "coef_xt": (1 - prev) * alphas.sqrt() / denom,
        "posterior_var": posterior_var,
        # log max(sqrt(beta_tilde_i), min_std): the std of reverse step i -> i-1
        "step_log_std": 0.5 * torch.log(posterior_var.clamp(min=min_std**2)),
    }
    return {name: value.float() for name, value in schedule.items()}


class DiffusionPolicy(DenoisingChainPolicy):
    family = "diffusion"
    config_class = DiffusionConfig

    def __init__(self, config: DiffusionConfig, embed_language: bool = True):
        super().__init__(config, embed_language)
        self.expert = ActionExpert(
            config.hidden, config.num_layers, config.num_heads, config.chunk_size, config.action_dim
        )
        betas = (
            cosine_betas(config.num_steps)
            if config.beta_schedule == "cosine"
            else linear_betas(config.num_steps)
        )
        # Not persistent: the schedule follows from the config, so it is not part of the weights file.
        for name, value in ddpm_schedule(betas, config.min_std).items():
            self.register_buffer(name, value, persistent=False)

    # step k = 0..K-1 goes from index i_k = K - k to i_k - 1
    def indices(self) -> torch.Tensor:
        return torch.arange(self.config.num_steps, 0, -1, device=self.device)

    def _at(self, name: str, i: torch.Tensor) -> torch.Tensor:
        """Schedule entry ``name`` at per-row indices ``i`` [B], shaped to broadcast over [B, H, A]."""
        return getattr(self, name)[i][:, None, None]

    def q_sample(self, x0: torch.Tensor, i: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """The forward noising ``x_i = sqrt(alpha_bar_i) x0 + sqrt(1 - alpha_bar_i) eps``."""
        return self._at("sqrt_alpha_bar", i) * x0 + self._at("sqrt_one_minus_alpha_bar", i) * eps

    def predict_x0(self, x: torch.Tensor, i: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """x0 implied by the noise estimate (inverts :meth:`q_sample`), clipped if configured."""
        x0 = (x - self._at("sqrt_one_minus_alpha_bar", i) * eps) / self._at("sqrt_alpha_bar", i)
        return x0.clamp(-1.0, 1.0) if self.config.clip_sample else x0

    def posterior(
        self, x0: torch.Tensor, x: torch.Tensor, i: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and variance of ``q(x_{i-1} | x_i = x, x_0 = x0)`` (i >= 1)."""
        mean = self._at("coef_x0", i) * x0 + self._at("coef_xt", i) * x
        return mean, self._at("posterior_var", i).expand_as(mean)

    def _step(self, x: torch.Tensor, k: torch.Tensor, obs_tokens: torch.Tensor):
        """Reverse step k, from diffusion index i = K - k (per row) to i - 1: deterministic mode takes its
        mean."""
        i = self.indices()[k]
        eps = self.expert(x, i.float() / self.config.num_steps, obs_tokens)
        mean, _ = self.posterior(self.predict_x0(x, i, eps), x, i)
        return mean, mean, self._at("step_log_std", i).expand_as(mean)

    def bc_loss(
        self, obs: dict, actions: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """DDPM's simple loss: regress the network on the noise eps of x_i at i ~ U{1, ..., K}."""
        actions = self._normalized_targets(actions)
        tokens = self.encode(obs)
        batch = actions.shape[0]
        i = torch.randint(1, self.config.num_steps + 1, (batch,), generator=generator, device=self.device)
        eps = torch.randn(actions.shape, generator=generator, device=self.device)
        pred = self.expert(self.q_sample(actions, i, eps), i.float() / self.config.num_steps, tokens)
        return torch.nn.functional.mse_loss(pred, eps)
