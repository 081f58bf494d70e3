"""The flow-matching VLA: rectified flow with exact chain log-likelihoods (pi_RL's Flow-SDE and Flow-Noise).

Convention: ``x_t = (1 - t) a + t eps`` (t = 1 noise, t = 0 action); the network predicts the velocity
``v = eps - a``. Sampling integrates from t = 1 to 0 in K equal steps of ``dt = 1/K``:

- ODE (deterministic): ``x <- x - dt v``.
- Flow-SDE (stochastic): ``x <- N(x - dt (v + sigma_t^2 / (2 t) (x + (1 - t) v)), sigma_t^2 dt)`` with
  ``sigma_t = noise_level sqrt(t / (1 - t))``; the drift correction uses the score of x_t implied by v,
  so every step keeps the ODE's marginals (checked statistically in tests/test_flow_policy.py). At t = 1,
  where sigma_t diverges, sigma is evaluated at t = 1 - dt.
- Flow-Noise (stochastic): ``x <- N(x - dt v, std^2)`` with std from a learned head, bounded.
"""

from __future__ import annotations

import math

import torch

from ..action_expert import ActionExpert
from ..base import DenoisingChainPolicy
from .configuration_flow import FlowConfig


def sde_sigma(t: torch.Tensor, dt: float, noise_level: float) -> torch.Tensor:
    t_safe = torch.clamp(t, max=1.0 - dt) if dt < 1.0 else torch.clamp(t, max=0.5)
    return noise_level * torch.sqrt(t_safe / (1.0 - t_safe))


def bounded_log_std(raw: torch.Tensor, min_std: float, max_std: float) -> torch.Tensor:
    """Flow-Noise's learned log-std: ``raw`` squashed into [log min_std, log max_std]."""
    lo, hi = math.log(min_std), math.log(max_std)
    return lo + (hi - lo) * torch.sigmoid(raw)


def raw_for_std(std: torch.Tensor, min_std: float, max_std: float) -> torch.Tensor:
    """The raw value :func:`bounded_log_std` maps to ``std`` (clipped just inside the bounds)."""
    lo, hi = math.log(min_std), math.log(max_std)
    return torch.logit(((torch.log(std) - lo) / (hi - lo)).clamp(1e-4, 1 - 1e-4))


def flow_sde_step(
    x: torch.Tensor, v: torch.Tensor, t: torch.Tensor, dt: float, noise_level: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std of one Flow-SDE step from time t to t - dt (t broadcastable to x)."""
    sigma = sde_sigma(t, dt, noise_level)
    mean = x - dt * (v + sigma.square() / (2.0 * t) * (x + (1.0 - t) * v))
    return mean, sigma * math.sqrt(dt)


class FlowPolicy(DenoisingChainPolicy):
    family = "flow"
    config_class = FlowConfig

    def __init__(self, config: FlowConfig, embed_language: bool = True):
        super().__init__(config, embed_language)
        outputs = 2 if config.noise_method == "noise" else 1
        self.expert = ActionExpert(
            config.hidden, config.num_layers, config.num_heads, config.chunk_size, config.action_dim, outputs
        )
        if outputs == 2:
            # Start the noise head at noise_init_std for every output.
            with torch.no_grad():
                self.expert.head.bias[config.action_dim :] = self._std_to_raw(
                    torch.tensor(config.noise_init_std)
                )

    # times t_k = 1 - k/K for k = 0..K: step k goes from t_k to t_{k+1}
    def times(self) -> torch.Tensor:
        return (
            1.0
            - torch.arange(self.config.num_steps + 1, device=self.device, dtype=torch.float32)
            / self.config.num_steps
        )

    def _std_to_raw(self, std: torch.Tensor) -> torch.Tensor:
        return raw_for_std(std, self.config.noise_min_std, self.config.noise_max_std)

    def _raw_to_log_std(self, raw: torch.Tensor) -> torch.Tensor:
        return bounded_log_std(raw, self.config.noise_min_std, self.config.noise_max_std)

    def _predict(self, x: torch.Tensor, t: torch.Tensor, obs_tokens: torch.Tensor):
        """Velocity, ODE mean, stochastic mean and log-std of the step from t (per row) to t - dt."""
        cfg = self.config
        dt = 1.0 / cfg.num_steps
        out = self.expert(x, t, obs_tokens)
        v = out[..., : cfg.action_dim]
        t3 = t[:, None, None]
        ode_mean = x - dt * v
        if cfg.noise_method == "sde":
            mean, std = flow_sde_step(x, v, t3, dt, cfg.noise_level)
            log_std = torch.log(std).expand_as(mean)
        else:
            mean, log_std = ode_mean, self._raw_to_log_std(out[..., cfg.action_dim :])
        return v, ode_mean, mean, log_std

    def _step(self, x: torch.Tensor, k: torch.Tensor, obs_tokens: torch.Tensor):
        """Step k (from t_k to t_k - dt): the ODE point, and the stochastic step's mean and log-std."""
        _, ode_mean, mean, log_std = self._predict(x, self.times()[k], obs_tokens)
        return ode_mean, mean, log_std

    def bc_loss(
        self, obs: dict, actions: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Rectified-flow matching: regress v(x_t, t) on eps - a at t ~ U(0, 1)."""
        actions = self._normalized_targets(actions)
        tokens = self.encode(obs)
        batch = actions.shape[0]
        t = torch.rand(batch, generator=generator, device=self.device)
        eps = torch.randn(actions.shape, generator=generator, device=self.device)
        x_t = (1 - t)[:, None, None] * actions + t[:, None, None] * eps
        v = self.expert(x_t, t, tokens)[..., : self.config.action_dim]
        return torch.nn.functional.mse_loss(v, eps - actions)
