"""LeRobot's ``DiffusionPolicy`` as a chain policy: its own DDPM or DDIM denoising loop, one Gaussian step at
a time.

LeRobot samples an action chunk with ``DiffusionModel.conditional_sample``: from noise ``x_K`` of shape
``[B, horizon, A]`` (in its normalised action units), ``K = num_inference_steps`` calls of diffusers'
``DDPMScheduler.step`` (each the Gaussian ``N(mu_t(x_t, eps_theta(x_t, t)), sigma_t^2)`` of DDPM, Ho et al.'s
formula 7, the predicted ``x_0`` clipped to ``clip_sample_range``, "fixed_small" variance) or
``DDIMScheduler.step`` (deterministic in LeRobot: eta = 0). This adapter runs that loop from outside and
records every point:

- ``sample(obs, "deterministic")`` is exactly LeRobot's sampler (the same scheduler calls on the same
  random stream: bit for bit ``predict_action_chunk``, tests/test_lerobot_policies.py). DDPM's sampler is
  itself random; "deterministic" means "the library's own", as evaluation of a LeRobot policy does.
- ``sample(obs, "stochastic")`` draws each step from its DDPM Gaussian, or for a DDIM policy from DDIM's
  Gaussian with noise ``ddim_eta`` (Song et al.'s formula 12, as DPPO fine-tunes diffusion policies), the
  standard deviation floored at ``min_std`` (the last DDPM step, t = 0, has no noise and would have no
  density), and ``step_distributions`` returns those Gaussians at a chain's points, all K steps in one
  batched U-Net pass: the exact chain log-likelihood PPO and the KL to the base need.
- ``bc_loss`` is LeRobot's own ``compute_loss``; ``save_pretrained`` writes LeRobot's format (the
  fine-tuned policy loads back into LeRobot), plus ``vla_razor.json`` with this adapter's settings.

Chain points are stored in action units, like every vla-razor policy's (``action_center`` and
``action_scale`` are the affine map of LeRobot's action normaliser). Observations map from the canonical
layout to the policy's input features through its own pre-processor: ``observation.state`` <- proprio,
``observation.environment_state`` <- state, ``observation.environment_state_mask`` <- state_mask, one
camera feature <- rgb (vla_razor/data/lerobot.py exports datasets with these names). The policy executes
``n_action_steps`` actions of each ``horizon`` chunk; it must observe one step (``n_obs_steps=1``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from torch import nn

from vla_razor.divergence import GaussianChain
from vla_razor.errors import ConfigError

from ..base import Chain
from ..lerobot import common
from ..lerobot.common import LeRobotChain, action_affine, global_stream_from
from .configuration_lerobot_diffusion import LeRobotDiffusionChainConfig

OBS_IMAGES = "observation.images"


class LeRobotDiffusionChain(LeRobotChain):
    """A LeRobot ``DiffusionPolicy`` (``inner``) with its pre/post-processors, behind the chain interface."""

    family = "lerobot_diffusion"
    config_class = LeRobotDiffusionChainConfig

    def __init__(self, inner, preprocessor, postprocessor, config: LeRobotDiffusionChainConfig | None = None):
        nn.Module.__init__(self)

        lr = inner.config
        if lr.n_obs_steps != 1:
            raise ConfigError(
                f"LeRobot diffusion policy with n_obs_steps={lr.n_obs_steps}: vla-razor's chain interface "
                "acts on the current observation only (train the policy with n_obs_steps=1)"
            )
        scheduler = inner.diffusion.noise_scheduler
        kind = type(scheduler).__name__
        ddpm = kind == "DDPMScheduler" and scheduler.config.variance_type == "fixed_small"
        ddim = kind == "DDIMScheduler" and not scheduler.config.thresholding
        if not (ddpm or ddim):
            raise ConfigError(
                f"LeRobot diffusion policy with {kind} ({dict(scheduler.config)}): DDPM with fixed_small "
                "variance (LeRobot's default) and DDIM without thresholding are supported"
            )
        if lr.prediction_type not in ("epsilon", "sample"):
            raise ConfigError(
                f"prediction_type {lr.prediction_type!r} is not supported (epsilon, sample are)"
            )
        action_dim = lr.action_feature.shape[0]
        images = list(lr.image_features)
        if len(images) > 1:
            raise ConfigError(
                f"LeRobot policy reads {len(images)} cameras; the canonical observation has one"
            )
        settings = dataclasses.asdict(config) if config is not None else {}
        settings.update(
            chunk_size=lr.n_action_steps,
            action_dim=action_dim,
            horizon=lr.horizon,
            num_steps=inner.diffusion.num_inference_steps,
            use_rgb=bool(images),
            image_size=lr.image_features[images[0]].shape[-1] if images else 64,
        )
        self.config = LeRobotDiffusionChainConfig(**settings)
        self.inner, self.preprocessor, self.postprocessor = inner, preprocessor, postprocessor
        center, scale = action_affine(postprocessor, action_dim)
        self.register_buffer("action_center", center)
        self.register_buffer("action_scale", scale)
        # each step's Gaussian is mean = c_x0 x0 + c_x x + c_eps eps (x0, eps: the network's predictions at
        # x), std = _std, at the sampler's timesteps: DDPM's formula 7 (Ho et al.) or DDIM's with noise eta
        # (Song et al., formula 12), as diffusers' step computes them
        scheduler.set_timesteps(inner.diffusion.num_inference_steps)
        ts = scheduler.timesteps.long()
        cumprod = scheduler.alphas_cumprod.double()
        if ddpm:
            prev = torch.cat([ts[1:], ts.new_tensor([-1])])
            last = torch.tensor(1.0, dtype=torch.float64)
        else:
            prev = ts - scheduler.config.num_train_timesteps // scheduler.num_inference_steps
            last = scheduler.final_alpha_cumprod.double()
        a_t = cumprod[ts]
        a_prev = torch.where(prev >= 0, cumprod[prev.clamp(min=0)], last)
        alpha, beta = a_t / a_prev, 1 - a_t / a_prev
        variance = ((1 - a_prev) / (1 - a_t) * beta).clamp(min=1e-20)
        if ddpm:
            c_x0, c_x = a_prev.sqrt() * beta / (1 - a_t), alpha.sqrt() * (1 - a_prev) / (1 - a_t)
            c_eps, std = torch.zeros_like(a_t), torch.where(ts > 0, variance.sqrt(), 0.0)
        else:
            std = self.config.ddim_eta * variance.sqrt()
            c_x0, c_x, c_eps = (
                a_prev.sqrt(),
                torch.zeros_like(a_t),
                (1 - a_prev - std.square()).clamp(min=0).sqrt(),
            )
        coefficients = {
            "_t": ts,
            "_sqrt_a": a_t.sqrt(),
            "_sqrt_1ma": (1 - a_t).sqrt(),
            "_c_x0": c_x0,
            "_c_x": c_x,
            "_c_eps": c_eps,
            "_std": std,
        }
        self.scheduler_kind = "ddpm" if ddpm else "ddim"
        for name, value in coefficients.items():
            self.register_buffer(
                name, value if value.dtype == torch.long else value.float(), persistent=False
            )

    # -- observations ----------------------------------------------------------------------------
    def _batch(self, obs: dict, actions: torch.Tensor | None = None) -> dict:
        """Canonical observations (and action chunks) -> the policy's normalised input batch, one obs step."""
        lr = self.inner.config
        raw = self.raw_inputs(obs, actions)
        out = self.preprocessor(raw)
        batch = {k: v.to(self.device) for k, v in out.items() if k in raw and torch.is_tensor(v)}
        for key in lr.input_features:
            batch[key] = batch[key].unsqueeze(1)  # [B, n_obs_steps = 1, ...]
        if lr.image_features:
            batch[OBS_IMAGES] = torch.stack([batch[k] for k in lr.image_features], dim=-4)
        return batch

    @torch.no_grad()
    def encode(self, obs: dict) -> torch.Tensor:
        """Observation features for the representation-change measure (1 - CKA, vla_razor/analysis): the
        U-Net's bottleneck activations ``[B, C * T']`` at the first denoising step from a zero sample. A
        state-only policy's observation encoding has no weights of its own; the U-Net reads the observation
        through its FiLM conditioning, so these features change when fine-tuning changes how it does."""
        cond = self._condition(obs)
        unet, seen = self.inner.diffusion.unet, []
        hook = unet.mid_modules[-1].register_forward_hook(lambda module, args, out: seen.append(out))
        try:
            x = torch.zeros(cond.shape[0], self.config.horizon, self.config.action_dim, device=self.device)
            self._predict(x, torch.zeros(cond.shape[0], dtype=torch.long, device=self.device), cond)
        finally:
            hook.remove()
        return seen[0].flatten(1)

    def _condition(self, obs: dict) -> torch.Tensor:
        return self.inner.diffusion._prepare_global_conditioning(self._batch(obs))

    # -- the chain -------------------------------------------------------------------------------
    def _predict(self, x: torch.Tensor, k: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """The U-Net's output at step indices ``k`` ``[N]`` (their DDPM timesteps) for points ``x``."""
        return self.inner.diffusion.unet(x, self._t[k], global_cond=cond)

    def _moments(
        self, out: torch.Tensor, x: torch.Tensor, k: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Step ``k``'s Gaussian at ``x`` ``[N, horizon, A]`` (normalised units) from the U-Net's output:
        (mean, std), exactly what ``DDPMScheduler.step`` draws from (``DDIMScheduler.step`` with
        ``ddim_eta``)."""
        lr = self.inner.config
        view = (-1, 1, 1)
        if lr.prediction_type == "epsilon":
            x0, eps = (x - self._sqrt_1ma[k].view(view) * out) / self._sqrt_a[k].view(view), out
        else:
            x0, eps = out, (x - self._sqrt_a[k].view(view) * out) / self._sqrt_1ma[k].view(view)
        if lr.clip_sample:
            x0 = x0.clamp(-lr.clip_sample_range, lr.clip_sample_range)
        mean = self._c_x0[k].view(view) * x0 + self._c_x[k].view(view) * x + self._c_eps[k].view(view) * eps
        return mean, self._std[k].view(view).expand_as(mean)

    def _denoise(self, obs: dict, mode: str, generator: torch.Generator | None):
        """The chain in normalised units: (points ``[B, K + 1, horizon, A]``, means and stds
        ``[B, K, ...]``)."""
        cfg, scheduler = self.config, self.inner.diffusion.noise_scheduler
        cond = self._condition(obs)
        batch = cond.shape[0]
        shape = (batch, cfg.horizon, cfg.action_dim)
        # the prior exactly as LeRobot's conditional_sample draws it
        x = torch.randn(shape, dtype=cond.dtype, device=self.device, generator=generator)
        points, means, stds = [x], [], []
        for k in range(cfg.num_steps):
            index = torch.full((batch,), k, device=self.device)
            out = self._predict(x, index, cond)
            mean, std = self._moments(out, x, index)
            if mode == "deterministic":
                # LeRobot's own step: the same scheduler call on the same stream as predict_action_chunk
                x = scheduler.step(out, scheduler.timesteps[k], x, generator=generator).prev_sample
            else:
                x = mean + std.clamp(min=cfg.min_std) * torch.randn(
                    shape, generator=generator, device=self.device
                )
            points.append(x)
            means.append(mean)
            stds.append(std.clamp(min=cfg.min_std))
        return torch.stack(points, 1), torch.stack(means, 1), torch.stack(stds, 1)

    @torch.no_grad()
    def predict_action_chunk(self, obs: dict, generator: torch.Generator | None = None) -> torch.Tensor:
        """LeRobot's ``predict_action_chunk`` on canonical observations: normalised actions
        ``[B, n_action_steps, A]`` from the library's own sampler (the global random stream by default)."""
        points, _, _ = self._denoise(obs, "deterministic", generator)
        return points[:, -1, : self.config.chunk_size]

    @torch.no_grad()
    def sample(self, obs: dict, mode="stochastic", generator: torch.Generator | None = None):
        if mode not in ("stochastic", "deterministic"):
            raise ValueError(f"mode must be 'stochastic' or 'deterministic', got {mode!r}")
        cfg = self.config
        points, means, stds = self._denoise(obs, mode, generator)
        batch = points.shape[0]
        flat = (batch, cfg.num_steps, cfg.horizon * cfg.action_dim)
        steps = GaussianChain(
            self.denormalize_actions(means).reshape(flat),
            (stds.log() + self.action_scale.log()).reshape(flat),
        )
        chain = Chain(self.denormalize_actions(points), mode == "stochastic", steps)
        return chain.actions[:, : cfg.chunk_size], chain

    def step_distributions(self, obs: dict, chain: Chain) -> GaussianChain:
        cfg = self.config
        K = cfg.num_steps
        want = (K + 1, cfg.horizon, cfg.action_dim)
        if tuple(chain.points.shape[1:]) != want:
            raise ValueError(
                f"{self.family} chain points must be [B, {', '.join(map(str, want))}], got "
                f"{tuple(chain.points.shape)}"
            )
        cond = self._condition(obs)
        batch = cond.shape[0]
        x = self.normalize_actions(chain.points[:, :K].to(self.device)).reshape(
            batch * K, cfg.horizon, cfg.action_dim
        )
        k = torch.arange(K, device=self.device).repeat(batch)
        mean, std = self._moments(self._predict(x, k, cond.repeat_interleave(K, dim=0)), x, k)
        flat = (batch, K, cfg.horizon * cfg.action_dim)
        log_std = std.clamp(min=cfg.min_std).log() + self.action_scale.log()
        return GaussianChain(self.denormalize_actions(mean).reshape(flat), log_std.reshape(flat))

    def bc_loss(
        self, obs: dict, actions: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """LeRobot's own diffusion loss on demonstrated chunks ``[B, L <= horizon, A]``; a chunk shorter than
        the horizon is padded with copies of its last action and marked ``action_is_pad`` (LeRobot's
        convention at an episode's end). LeRobot draws its noise and timesteps from torch's global stream:
        with a ``generator``, that stream is seeded from it for the call (and restored after)."""
        batch = self.demo_batch(obs, actions)
        with global_stream_from(generator, self.device):
            return self.inner.diffusion.compute_loss(batch)

    def sidecar(self) -> dict:
        return {"min_std": self.config.min_std, "ddim_eta": self.config.ddim_eta}

    @classmethod
    def from_pretrained(
        cls, directory: str | Path, device: str | torch.device = "cpu"
    ) -> "LeRobotDiffusionChain":
        """A directory LeRobot's ``save_pretrained`` wrote; its weights are checked tensor by tensor against
        ``model.safetensors`` (a directory whose weights do not load is an error, never random weights)."""
        common.require_lerobot()
        from lerobot.policies.diffusion.modeling_diffusion import DiffusionPolicy
        from lerobot.policies.factory import make_pre_post_processors

        directory = Path(directory)
        common.require_processors(directory)
        inner = common.load_verified(DiffusionPolicy, directory)
        preprocessor, postprocessor = make_pre_post_processors(inner.config, pretrained_path=str(directory))
        settings = common.read_sidecar(directory)
        if settings.get(
            "num_steps"
        ):  # fine-tune (and sample) with fewer steps; saved in LeRobot's config too
            inner.config.num_inference_steps = inner.diffusion.num_inference_steps = int(
                settings["num_steps"]
            )
        config = LeRobotDiffusionChainConfig(
            **{k: v for k, v in settings.items() if k in ("min_std", "ddim_eta")}
        )
        return cls(inner.eval(), preprocessor, postprocessor, config).to(device)
