"""What every LeRobot family shares behind the chain interface: the canonical observation mapping, the action
normaliser as an affine map, LeRobot-format saving and loading with the weights verified."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import torch

from vla_razor.atomic import write_json
from vla_razor.errors import CheckpointError, ConfigError, refuse_pickles

from ..base import ChainPolicy
from ..encoders import as_tensor_obs

SIDECAR = "vla_razor.json"
"""The adapter's own settings, written beside LeRobot's files (LeRobot ignores it)."""
CANONICAL = {
    "observation.state": "proprio",
    "observation.environment_state": "state",
    "observation.environment_state_mask": "state_mask",
}
"""LeRobot input feature -> canonical observation key (vla_razor/data/lerobot.py exports these names)."""


def require_lerobot():
    try:
        import lerobot  # noqa: F401
    except ImportError:
        raise ConfigError(
            "a LeRobot policy needs LeRobot, which lives in .venv-lerobot (make setup-lerobot): "
            "run the command with .venv-lerobot/bin/vla-razor"
        ) from None


def action_affine(postprocessor, action_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(center, scale) with ``action = x * scale + center``: LeRobot's action un-normaliser as an affine
    map."""
    from lerobot.configs.types import FeatureType, NormalizationMode
    from lerobot.processor.normalize_processor import UnnormalizerProcessorStep

    steps = [s for s in postprocessor.steps if isinstance(s, UnnormalizerProcessorStep)]
    mode = steps[0].norm_map.get(FeatureType.ACTION, NormalizationMode.IDENTITY) if steps else None
    if mode in (None, NormalizationMode.IDENTITY):
        return torch.zeros(action_dim), torch.ones(action_dim)
    stats = {k: torch.as_tensor(v, dtype=torch.float32) for k, v in (steps[0].stats or {})["action"].items()}
    bounds = {
        NormalizationMode.MIN_MAX: ("min", "max"),
        NormalizationMode.QUANTILES: ("q01", "q99"),
        NormalizationMode.QUANTILE10: ("q10", "q90"),
    }
    if mode in bounds:  # the range [low, high] mapped to [-1, 1]
        low, high = (stats[k] for k in bounds[mode])
        denom = torch.where(high - low == 0, torch.tensor(steps[0].eps), high - low)
        return low + denom / 2, denom / 2
    if mode == NormalizationMode.MEAN_STD:
        return stats["mean"], stats["std"]
    raise ConfigError(
        f"LeRobot action normalisation {mode} is not supported (MIN_MAX, QUANTILES, QUANTILE10, MEAN_STD, "
        "IDENTITY are)"
    )


def task_strings(task_id: torch.Tensor) -> list[str]:
    """Each row's instruction (the registered task's canonical one): LeRobot's ``task`` string."""
    from vla_razor.envs.registry import TASKS

    specs = list(TASKS.values())
    return [specs[int(i)].instruction for i in task_id.reshape(-1)]


@contextlib.contextmanager
def global_stream_from(generator: torch.Generator | None, device: torch.device):
    """LeRobot's losses draw their noise and timesteps from torch's global stream: with a ``generator``, that
    stream is seeded from it for the block (and restored after); without one, the block uses it as it is."""
    if generator is None:
        yield
        return
    seed = int(torch.randint(2**62, (1,), generator=generator, device=generator.device))
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield


class LeRobotChain(ChainPolicy):
    """Base of the LeRobot adapters: ``inner`` is LeRobot's policy, with its pre/post-processors."""

    @property
    def device(self) -> torch.device:
        return self.action_center.device

    def raw_inputs(self, obs: dict, actions: torch.Tensor | None = None) -> dict:
        """Canonical observations (and action chunks) as the LeRobot batch its pre-processor takes: state
        features, camera images ``[B, 3, H, W]`` in [0, 1], and the instruction as the ``task`` string."""
        obs = as_tensor_obs(obs)
        lr = self.inner.config
        raw = {}
        for key, feature in lr.input_features.items():
            if key in CANONICAL:
                raw[key] = obs[CANONICAL[key]][:, : feature.shape[0]]
            elif key in lr.image_features:
                if "rgb" not in obs:
                    raise ConfigError(
                        f"the LeRobot policy reads the camera {key!r}: run it with obs_mode=rgb"
                    )
                raw[key] = (
                    obs["rgb"].permute(0, 3, 1, 2).float() / 255.0
                )  # [B, H, W, 3] uint8 -> [B, 3, H, W]
            else:
                raise ConfigError(f"no canonical observation maps to the LeRobot policy's input {key!r}")
        if actions is not None:
            raw["action"] = actions
        raw["task"] = task_strings(obs["task_id"])
        return raw

    def demo_batch(self, obs: dict, actions: torch.Tensor) -> dict:
        """Demonstrated chunks ``[B, L <= horizon, A]`` with their observations as the policy's training
        batch; a chunk shorter than the horizon is padded with copies of its last action and marked
        ``action_is_pad`` (LeRobot's dataset pads an episode's end the same way)."""
        cfg = self.config
        actions = torch.as_tensor(actions, dtype=torch.float32)
        if actions.dim() != 3 or actions.shape[1] > cfg.horizon or actions.shape[2] != cfg.action_dim:
            raise ValueError(
                f"action chunks must be [B, <= {cfg.horizon}, {cfg.action_dim}], got {tuple(actions.shape)}"
            )
        missing = cfg.horizon - actions.shape[1]
        pad = torch.zeros(actions.shape[0], cfg.horizon, dtype=torch.bool)
        if missing:
            pad[:, -missing:] = True
            actions = torch.cat([actions, actions[:, -1:].expand(-1, missing, -1)], dim=1)
        batch = self._batch(obs, actions.cpu())
        batch["action_is_pad"] = pad.to(self.device)
        return batch

    def set_normalization(self, obs: dict, actions: torch.Tensor) -> None:
        raise NotImplementedError(
            "a LeRobot policy's statistics are its processors' (LeRobot sets them from its dataset)"
        )

    def sidecar(self) -> dict:
        """This adapter's settings, saved in ``vla_razor.json``."""
        return {}

    def save_pretrained(self, directory: str | Path, extra=None) -> Path:
        """LeRobot's format (config.json with ``"type"``, model.safetensors, processors) plus
        ``vla_razor.json`` (and whatever ``extra(folder)`` writes); written into a fresh folder, then moved
        into place."""
        directory = Path(directory)
        directory.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}."))
        try:
            self.inner.save_pretrained(tmp)
            self.preprocessor.save_pretrained(tmp)
            self.postprocessor.save_pretrained(tmp)
            write_json(tmp / SIDECAR, {"family": self.family, "config": self.sidecar()})
            if extra is not None:
                extra(tmp)
            old = None
            if directory.exists():
                old = directory.with_name(f".{directory.name}.old-{os.getpid()}")
                os.replace(directory, old)
            os.replace(tmp, directory)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return directory


def load_verified(policy_class, directory: Path, fix_keys=None):
    """LeRobot's ``policy_class.from_pretrained(directory)``, with its weights checked tensor by tensor
    against ``model.safetensors``: a directory whose weights do not load is a :class:`CheckpointError`, never
    a policy with random weights (some LeRobot families only warn and go on). ``fix_keys(saved, inner)`` maps
    a checkpoint's names to the module's (a family's own renaming of older checkpoints). Tied tensors (one
    storage under two names) count as present when one of their names is saved."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    refuse_pickles(directory, "policy")
    weights = directory / "model.safetensors"
    if not weights.is_file():
        raise CheckpointError(f"{weights} is missing: {directory} is not a saved LeRobot policy")
    try:
        saved = load_file(str(weights))
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"{weights} does not load ({err}): the policy's weights are corrupt") from None
    inner = policy_class.from_pretrained(str(directory))
    if fix_keys is not None:
        saved = fix_keys(saved, inner)
    state = inner.state_dict(keep_vars=True)
    storage = {}
    for key, value in state.items():
        storage.setdefault(value.untyped_storage().data_ptr(), []).append(key)
    wrong = []
    for key, value in state.items():
        names = (
            [n for n in storage[value.untyped_storage().data_ptr()] if n in saved]
            if key not in saved
            else [key]
        )
        if (
            not names
            or saved[names[0]].shape != value.shape
            or not torch.equal(value.detach().cpu(), saved[names[0]])
        ):
            wrong.append(key)
    wrong += sorted(k for k in saved if k not in state)
    if wrong:
        raise CheckpointError(
            f"{weights} does not hold this policy's weights ({len(wrong)} tensors missing, extra or "
            f"different, e.g. {wrong[0]!r}): LeRobot would run with random ones; re-save the policy"
        )
    return inner


PROCESSOR_FILES = ("policy_preprocessor.json", "policy_postprocessor.json")
"""LeRobot's processor pipelines (normalisation statistics included), saved beside the policy's weights."""


def require_processors(directory: Path) -> None:
    """Refuse (:class:`CheckpointError`) a LeRobot policy directory without its processor pipelines: its
    observations and actions would be used without the normalisation it was trained with."""
    missing = [name for name in PROCESSOR_FILES if not (directory / name).is_file()]
    if missing:
        raise CheckpointError(
            f"{directory} has no {' or '.join(missing)} (LeRobot's processors, with the normalisation "
            "statistics the policy was trained with): lerobot-train saves them beside the weights; for a "
            "policy saved with policy.save_pretrained(dir) alone, save them too: pre, post = "
            "make_pre_post_processors(policy.config, dataset_stats=stats); pre.save_pretrained(dir); "
            "post.save_pretrained(dir)"
        )


def read_sidecar(directory: Path) -> dict:
    path = directory / SIDECAR
    return json.loads(path.read_text()).get("config", {}) if path.is_file() else {}
