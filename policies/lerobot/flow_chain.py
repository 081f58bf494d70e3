"""LeRobot's flow-matching VLAs (pi0, pi0.5, SmolVLA) as chain policies: their own denoising step, a Flow-SDE
Gaussian around it.

These policies embed the images, the instruction (and for pi0 and SmolVLA the state) once, as a prefix whose
key/value cache every denoising step attends to, then integrate the velocity of the action expert
(``denoise_step``) from noise (t = 1) to actions (t = 0) in K Euler steps: ``x <- x - v / K``, the convention
of vla-razor's own flow family (``x_t = t eps + (1 - t) a``, ``v = eps - a``). This adapter runs that loop
from outside, the prefix computed once per observation:

- ``sample(obs, "deterministic")`` is exactly LeRobot's sampler: the noise drawn as ``sample_noise`` draws it
  (the global stream unless a generator is given), the same ``denoise_step`` calls at the same times, the
  same Euler updates, so it equals ``predict_action_chunk`` bit for bit (tests/test_lerobot_policies.py).
- ``sample(obs, "stochastic")`` draws each step from the Flow-SDE Gaussian of pi_RL,
  ``N(x - dt (v + s^2 / (2t) (x + (1 - t) v)), s^2 dt)`` with ``s = noise_level sqrt(t / (1 - t))``
  (vla_razor.policies.flow; evaluated at t = 1 - dt on the first step), which keeps the ODE's marginals;
  ``step_distributions`` returns those Gaussians at a chain's points, so the chain log-likelihood is exact.
  With ``noise_method="noise"`` (Flow-Noise) each step is instead LeRobot's Euler step plus Gaussian noise
  whose std a learned head reads from the expert's action-token features (bounded, trained with the policy,
  saved as ``vla_razor_noise_head.safetensors`` beside LeRobot's files).
- ``bc_loss`` is the policy's own flow-matching loss (its ``forward``); ``save_pretrained`` writes LeRobot's
  format, so the fine-tuned policy loads back into LeRobot.

The chain lives in the model's padded action space ``[horizon, max_action_dim]``: LeRobot samples noise in
every padded dimension and the velocity of the real ones depends on them, so they are part of the exact
likelihood. The real dimensions are stored in action units (LeRobot's action normaliser as an affine map),
the padded ones in the model's units. The env executes ``n_action_steps`` of the ``chunk_size`` actions.
Observations: ``observation.state`` <- proprio, the first camera feature <- rgb (the policy needs obs_mode
rgb; its other cameras are left out, as LeRobot does with a missing camera), the instruction of ``task_id``
as the task string through the policy's own tokenizer step.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from torch import nn

from vla_razor.divergence import GaussianChain
from vla_razor.errors import CheckpointError, ConfigError

from ..base import Chain
from ..flow.modeling_flow import bounded_log_std, flow_sde_step, raw_for_std
from .common import (
    LeRobotChain,
    action_affine,
    global_stream_from,
    load_verified,
    read_sidecar,
    require_lerobot,
    require_processors,
)
from .configuration_flow_chain import LeRobotFlowChainConfig

TOKENS, TOKEN_MASK = "observation.language.tokens", "observation.language.attention_mask"
NOISE_HEAD = "vla_razor_noise_head.safetensors"
"""Flow-Noise's learned noise head, saved beside LeRobot's files (LeRobot ignores it)."""


class LeRobotFlowChain(LeRobotChain):
    """A LeRobot flow-matching policy (``inner``) with its pre/post-processors, behind the chain interface.

    A family subclass gives ``_prefix(batch)`` (the prefix cache and whatever ``denoise_step`` needs) and
    ``_velocity(context, x, t)`` (one call of the model's own ``denoise_step``)."""

    config_class = LeRobotFlowChainConfig

    def __init__(self, inner, preprocessor, postprocessor, config: LeRobotFlowChainConfig | None = None):
        nn.Module.__init__(self)

        lr = inner.config
        unsupported = {
            "n_obs_steps": lr.n_obs_steps != 1,
            "rtc_config": getattr(lr, "rtc_config", None) is not None and lr.rtc_config.enabled,
            "use_relative_actions": getattr(lr, "use_relative_actions", False),
            "adapt_to_pi_aloha": getattr(lr, "adapt_to_pi_aloha", False),
        }
        if any(unsupported.values()):
            raise ConfigError(
                f"LeRobot {lr.type} policy with {', '.join(k for k, v in unsupported.items() if v)}: "
                "vla-razor's chain interface needs one observation step, no real-time chunking, absolute "
                "actions and no Aloha remapping"
            )
        cameras = [k for k in lr.image_features if "empty_camera" not in k]
        if not cameras:
            raise ConfigError(
                f"LeRobot {lr.type} policy reads no camera: it needs at least one image feature"
            )
        action_dim = lr.output_features["action"].shape[0]
        settings = dataclasses.asdict(config) if config is not None else {}
        settings.update(
            chunk_size=lr.n_action_steps,
            action_dim=action_dim,
            horizon=lr.chunk_size,
            num_steps=self._inference_steps(lr),
            chain_dim=lr.max_action_dim,
            use_rgb=True,
            image_size=lr.image_features[cameras[0]].shape[-1],
        )
        self.config = self.config_class(**settings)
        self.inner, self.preprocessor, self.postprocessor = inner, preprocessor, postprocessor
        self.camera = cameras[0]
        center, scale = action_affine(postprocessor, action_dim)
        pad = lr.max_action_dim - action_dim
        self.register_buffer("action_center", torch.cat([center, torch.zeros(pad)]))
        self.register_buffer("action_scale", torch.cat([scale, torch.ones(pad)]))
        self.noise_head = None
        if self.config.noise_method == "noise":
            cfg = self.config
            self.noise_head = nn.Linear(inner.model.action_out_proj.in_features, cfg.chain_dim)
            with torch.no_grad():  # a constant std to start with: the head learns where to widen or narrow it
                self.noise_head.weight.zero_()
                self.noise_head.bias.fill_(
                    float(raw_for_std(torch.tensor(cfg.noise_init_std), cfg.noise_min_std, cfg.noise_max_std))
                )

    @staticmethod
    def _inference_steps(lr) -> int:
        return lr.num_inference_steps

    @staticmethod
    def _set_inference_steps(lr, steps: int) -> None:
        lr.num_inference_steps = steps

    # -- observations ----------------------------------------------------------------------------
    def raw_inputs(self, obs: dict, actions: torch.Tensor | None = None) -> dict:
        raw = super().raw_inputs(obs, actions)
        for key in self.inner.config.image_features:
            if key != self.camera:
                raw.pop(key, None)  # one canonical camera: the policy pads the others as missing
        return raw

    def _batch(self, obs: dict, actions: torch.Tensor | None = None) -> dict:
        """Canonical observations (and action chunks) -> the policy's input batch (normalised, tokenised)."""
        out = self.preprocessor(self.raw_inputs(obs, actions))
        return {k: v.to(self.device) for k, v in out.items() if torch.is_tensor(v)}

    def _prefix(self, batch: dict) -> dict: ...

    def _velocity(self, context: dict, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """One call of the model's ``denoise_step`` (pi0.5's and SmolVLA's signature; pi0 adds the state)."""
        return self.inner.model.denoise_step(
            prefix_pad_masks=context["prefix_pad_masks"],
            past_key_values=context["past_key_values"],
            x_t=x,
            timestep=t,
        )

    @torch.no_grad()
    def encode(self, obs: dict) -> torch.Tensor:
        """Observation features for the representation-change measure: the velocity the expert gives at t = 1
        from a zero chunk, ``[B, horizon * chain_dim]`` (it reads the whole prefix: images, instruction,
        state)."""
        context = self._prefix(self._batch(obs))
        batch = context["batch_size"]
        x = torch.zeros(batch, self.config.horizon, self.config.chain_dim, device=self.device)
        return self._velocity(context, x, torch.ones(batch, device=self.device)).flatten(1)

    # -- the chain -------------------------------------------------------------------------------
    def _time(self, k: int, batch: int) -> torch.Tensor:
        """Step k's time, computed as LeRobot's ``euler_integrate`` computes it."""
        return torch.tensor(
            1.0 + k * (-1.0 / self.config.num_steps), dtype=torch.float32, device=self.device
        ).expand(batch)

    def _step(self, context: dict, x: torch.Tensor, t: torch.Tensor):
        """One denoising step from x at time t: (velocity, the stochastic step's mean and std), normalised
        units. Flow-SDE: the SDE Gaussian around the velocity; Flow-Noise: the Euler step with the noise
        head's std, read from the expert's action-token features (the input of ``action_out_proj``)."""
        cfg = self.config
        if self.noise_head is None:
            v = self._velocity(context, x, t)
            mean, std = flow_sde_step(x, v, t.view(-1, 1, 1), 1.0 / cfg.num_steps, cfg.noise_level)
            return v, mean, std.expand_as(mean)
        seen = []
        hook = self.inner.model.action_out_proj.register_forward_hook(
            lambda m, args, out: seen.append(args[0])
        )
        try:
            v = self._velocity(context, x, t)
        finally:
            hook.remove()
        log_std = bounded_log_std(self.noise_head(seen[-1]), cfg.noise_min_std, cfg.noise_max_std)
        return v, x + (-1.0 / cfg.num_steps) * v, log_std.exp()

    def _flow(self, obs: dict, mode: str, generator: torch.Generator | None):
        """The chain in normalised units: (points ``[B, K + 1, horizon, chain_dim]``, means, stds
        ``[B, K, ...]``)."""
        cfg = self.config
        context = self._prefix(self._batch(obs))
        batch = context["batch_size"]
        shape = (batch, cfg.horizon, cfg.chain_dim)
        # the prior exactly as LeRobot's sample_noise draws it
        x = torch.normal(0.0, 1.0, size=shape, dtype=torch.float32, device=self.device, generator=generator)
        points, means, stds = [x], [], []
        for k in range(cfg.num_steps):
            t = self._time(k, batch)
            v, mean, std = self._step(context, x, t)
            if mode == "deterministic":
                x = x + (-1.0 / cfg.num_steps) * v  # LeRobot's Euler update, as euler_integrate writes it
            else:
                x = mean + std * torch.randn(shape, generator=generator, device=self.device)
            points.append(x)
            means.append(mean)
            stds.append(std)
        return torch.stack(points, 1), torch.stack(means, 1), torch.stack(stds, 1)

    @torch.no_grad()
    def predict_action_chunk(self, obs: dict, generator: torch.Generator | None = None) -> torch.Tensor:
        """LeRobot's ``predict_action_chunk`` on canonical observations: normalised actions
        ``[B, horizon, action_dim]`` from the library's own sampler (the global random stream by default)."""
        points, _, _ = self._denoise_eval(obs, generator)
        return points[:, -1, :, : self.config.action_dim]

    def _denoise_eval(self, obs, generator):
        self.inner.eval()  # as predict_action_chunk does
        return self._flow(obs, "deterministic", generator)

    @torch.no_grad()
    def sample(self, obs: dict, mode="stochastic", generator: torch.Generator | None = None):
        if mode not in ("stochastic", "deterministic"):
            raise ValueError(f"mode must be 'stochastic' or 'deterministic', got {mode!r}")
        cfg = self.config
        points, means, stds = self._flow(obs, mode, generator)
        flat = (points.shape[0], cfg.num_steps, cfg.horizon * cfg.chain_dim)
        steps = GaussianChain(
            self.denormalize_actions(means).reshape(flat),
            (stds.log() + self.action_scale.log()).reshape(flat),
        )
        chain = Chain(self.denormalize_actions(points), mode == "stochastic", steps)
        return chain.actions[:, : cfg.chunk_size, : cfg.action_dim], chain

    def step_distributions(self, obs: dict, chain: Chain) -> GaussianChain:
        cfg = self.config
        K = cfg.num_steps
        want = (K + 1, cfg.horizon, cfg.chain_dim)
        if tuple(chain.points.shape[1:]) != want:
            raise ValueError(
                f"{self.family} chain points must be [B, {', '.join(map(str, want))}], got "
                f"{tuple(chain.points.shape)}"
            )
        context = self._prefix(self._batch(obs))  # once: every step attends to the same prefix cache
        batch = context["batch_size"]
        x = self.normalize_actions(chain.points.to(self.device))
        means, stds = [], []
        for k in range(K):
            _, mean, std = self._step(context, x[:, k], self._time(k, batch))
            means.append(mean)
            stds.append(std)
        flat = (batch, K, cfg.horizon * cfg.chain_dim)
        log_std = torch.stack(stds, 1).log() + self.action_scale.log()
        return GaussianChain(
            self.denormalize_actions(torch.stack(means, 1)).reshape(flat), log_std.reshape(flat)
        )

    def bc_loss(
        self, obs: dict, actions: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """The policy's own flow-matching loss (LeRobot's ``forward``) on demonstrated chunks
        ``[B, L <= horizon, A]``; a shorter chunk is padded with copies of its last action (as LeRobot's
        dataset pads an episode's end) and marked ``action_is_pad`` for the families whose loss reads it.
        LeRobot draws noise and times from the global stream: with a ``generator`` that stream is seeded from
        it for the call."""
        batch = self.demo_batch(obs, actions)
        with global_stream_from(generator, self.device):
            loss, _ = self.inner.forward(batch)
        return loss

    def sidecar(self) -> dict:
        keys = ("noise_level", "noise_method", "noise_init_std", "noise_min_std", "noise_max_std")
        return {k: getattr(self.config, k) for k in keys}

    def save_pretrained(self, directory: str | Path) -> Path:
        """LeRobot's format (:meth:`LeRobotChain.save_pretrained`), plus Flow-Noise's head when it has one."""
        return super().save_pretrained(directory, extra=self._save_noise_head)

    def _save_noise_head(self, directory: Path) -> None:
        from safetensors.torch import save_file

        if self.noise_head is not None:
            state = {k: v.detach().cpu().contiguous() for k, v in self.noise_head.state_dict().items()}
            save_file(state, str(directory / NOISE_HEAD))

    @classmethod
    def _policy_class(cls): ...

    @classmethod
    def _fix_keys(cls, saved: dict, inner) -> dict:
        return saved

    @classmethod
    def from_pretrained(cls, directory: str | Path, device: str | torch.device = "cpu") -> "LeRobotFlowChain":
        """A directory LeRobot's ``save_pretrained`` wrote; its weights are checked tensor by tensor against
        ``model.safetensors`` (LeRobot's pi0 only warns when they do not load and runs with random weights).
        The tokenizer comes from the directory's processor config; offline, point it at a local copy with
        ``{"config": {"tokenizer": "/path"}}`` in the directory's ``vla_razor.json``; ``{"config":
        {"noise_method": "noise"}}`` there selects Flow-Noise (a fresh head, or the saved one)."""
        require_lerobot()
        from lerobot.policies.factory import make_pre_post_processors

        directory = Path(directory)
        require_processors(directory)
        settings = read_sidecar(directory)
        inner = load_verified(cls._policy_class(), directory, cls._fix_keys)
        if settings.get("num_steps"):  # fewer (or more) Euler steps; saved in LeRobot's config too
            cls._set_inference_steps(inner.config, int(settings["num_steps"]))
        overrides = {}
        if settings.get("tokenizer"):
            overrides["tokenizer_processor"] = {"tokenizer_name": str(settings["tokenizer"])}
        try:
            preprocessor, postprocessor = make_pre_post_processors(
                inner.config, pretrained_path=str(directory), preprocessor_overrides=overrides
            )
        except (OSError, ValueError) as err:
            if isinstance(err, ValueError) and "tokenizer" not in str(err):
                raise
            raise CheckpointError(
                f"{directory}: the policy's tokenizer does not load offline "
                f"({str(err).split('Error: ')[-1][:200]}); put a local copy's path in "
                f'{directory / "vla_razor.json"} as {{"config": {{"tokenizer": "/path"}}}}'
            ) from None
        keys = ("noise_level", "noise_method", "noise_init_std", "noise_min_std", "noise_max_std")
        config = cls.config_class(**{k: v for k, v in settings.items() if k in keys})
        policy = cls(inner, preprocessor, postprocessor, config)
        head = directory / NOISE_HEAD
        if policy.noise_head is not None and head.is_file():  # absent: a fresh head at noise_init_std
            from safetensors import SafetensorError
            from safetensors.torch import load_file

            try:
                policy.noise_head.load_state_dict(load_file(str(head)))
            except (SafetensorError, OSError, RuntimeError) as err:
                raise CheckpointError(f"{head} does not hold this policy's noise head ({err})") from None
        return policy.to(device)
