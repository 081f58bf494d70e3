"""The hub-style directory a policy or critic is saved to: ``config.json`` + ``model.safetensors``.

``save_pretrained`` writes both atomically; ``from_pretrained`` reads them back through the checks here,
so every way a handed-in directory can be wrong (missing, pickles, not JSON, another track's model,
mismatched or non-finite weights) is a :class:`~vla_razor.errors.CheckpointError` naming the fix.
Nothing is ever unpickled.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from vla_razor.atomic import atomic_path, write_json
from vla_razor.config import build_config
from vla_razor.errors import CheckpointError, ConfigError, refuse_pickles

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
LEROBOT_PREFIX = "lerobot:"
"""``base=lerobot:/path`` names a LeRobot policy directory explicitly (it is detected without the prefix
too)."""


def lerobot_type(directory: str | Path) -> str | None:
    """The policy ``type`` of a directory LeRobot's ``save_pretrained`` wrote (its ``config.json`` has a
    ``"type"`` and no vla-razor ``"family"``), or None for anything else."""
    path = Path(str(directory).removeprefix(LEROBOT_PREFIX)) / CONFIG_NAME
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if isinstance(meta, dict) and "type" in meta and "family" not in meta:
        return str(meta["type"])
    return None


def save_module(module: nn.Module, directory: str | Path, meta: dict) -> Path:
    """``model.safetensors`` then ``config.json`` (both atomic) into ``directory``."""
    from safetensors.torch import save_model

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with atomic_path(directory / WEIGHTS_NAME) as tmp:
        save_model(module, str(tmp))
    write_json(directory / CONFIG_NAME, meta)
    return directory


def read_saved_config(directory: Path, what: str, key: str) -> dict:
    """The saved ``config.json`` of a ``what`` ("policy", "critic"), which must hold ``key``.

    Every way a handed-in directory can be wrong is a :class:`~vla_razor.errors.CheckpointError` naming the
    file and the fix: missing, pickles only (never unpickled), a config that is not JSON, another track's
    checkpoint (a Hugging Face model), a file that is not a vla-razor ``what``."""
    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(
            f"{what} directory {directory} does not exist (a {what} is a directory written by "
            "save_pretrained, e.g. runs/<run>/policy)"
        )
    refuse_pickles(directory, what)
    config_path, weights_path = directory / CONFIG_NAME, directory / WEIGHTS_NAME
    for path in (config_path, weights_path):
        if not path.is_file():
            raise CheckpointError(
                f"{path} is missing: {directory} is not a saved vla-razor {what} (save one with "
                "save_pretrained, or pass the run's policy/ directory)"
            )
    try:
        meta = json.loads(config_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(
            f"{config_path} is not JSON ({err}); the {what} is corrupt: re-save it or use another checkpoint"
        ) from None
    if not isinstance(meta, dict) or key not in meta:
        hint = ""
        if isinstance(meta, dict) and "model_type" in meta:
            hint = f" It is a Hugging Face {meta['model_type']!r} model: the LLM track's (vla-razor llm ...)."
        raise CheckpointError(
            f"{config_path} has no {key!r}: not a vla-razor {what}.{hint} Pass a directory written "
            f"by a {what}'s save_pretrained"
        )
    return meta


def build_saved_config(config_class: type, meta: dict, directory: Path):
    try:
        return build_config(config_class, meta.get("config", {}), "config", str(directory / CONFIG_NAME))
    except ConfigError as err:
        raise CheckpointError(
            f"{err}; the checkpoint's config does not fit this version of vla-razor"
        ) from None


def load_weights(module: nn.Module, directory: Path, what: str, device: str | torch.device = "cpu"):
    """Load ``model.safetensors`` into ``module`` (strict: every name and shape must match); a truncated,
    corrupt or mismatched file, or weights and statistics that are not finite, is a CheckpointError."""
    from safetensors import SafetensorError
    from safetensors.torch import load_model

    path = directory / WEIGHTS_NAME
    try:
        load_model(module, str(path), strict=True, device=str(device))
    except (SafetensorError, OSError) as err:
        raise CheckpointError(
            f"{path} cannot be read ({type(err).__name__}: {err}); the file is truncated or "
            f"corrupt: copy it again or re-save the {what}"
        ) from None
    except RuntimeError as err:  # missing, unexpected or mis-shaped tensors
        first = str(err).strip().splitlines()
        raise CheckpointError(
            f"{path} does not match its config.json ({' '.join(first[:3])[:400]}); the weights "
            f"belong to another {what} or another version: re-save the {what}"
        ) from None
    for name, tensor in module.state_dict().items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise CheckpointError(
                f"{path}: {name} holds NaN or inf values; the {what} diverged or is corrupt: use an "
                "earlier checkpoint"
            )
        if name.endswith(("_std", "action_scale")) and not (tensor > 0).all():
            raise CheckpointError(
                f"{path}: the normalisation buffer {name} has entries <= 0 (a scale must be positive); "
                f"the {what} is corrupt: re-save it from its training run"
            )
    return module.to(device)
