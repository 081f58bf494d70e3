"""LeRobot's policies behind vla-razor's :class:`~vla_razor.policies.ChainPolicy` (``vla_razor.policies.lerobot``).

A directory that LeRobot's ``save_pretrained`` wrote (``config.json`` with its ``"type"``,
``model.safetensors``, the processor JSON and statistics) loads through ``ChainPolicy.from_pretrained`` like
any vla-razor policy, or as ``base=lerobot:/path``; every algorithm, metric, evaluation and report then
applies to it unchanged. Supported families: ``diffusion`` (:mod:`.diffusion`: DDPM), ``pi0``, ``pi05`` and
``smolvla`` (:mod:`.flow`: Flow-SDE around their own Euler sampler).

LeRobot itself lives in ``.venv-lerobot`` (Python 3.12): this package imports it only when a LeRobot
policy is loaded, and names the environment to use when it is missing.
"""

from __future__ import annotations

import json
from pathlib import Path

from .diffusion import LeRobotDiffusionChain, LeRobotDiffusionChainConfig
from .flow import (
    LeRobotFlowChain,
    LeRobotFlowChainConfig,
    LeRobotPI0Chain,
    LeRobotPI05Chain,
    LeRobotSmolVLAChain,
)

PREFIX = "lerobot:"
SUPPORTED = {
    cls.lerobot_type: cls
    for cls in (LeRobotDiffusionChain, LeRobotPI0Chain, LeRobotPI05Chain, LeRobotSmolVLAChain)
}


def lerobot_type(directory: str | Path) -> str | None:
    """The policy ``type`` of a LeRobot policy directory (its ``config.json``), or None for anything else."""
    path = Path(str(directory).removeprefix(PREFIX)) / "config.json"
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if isinstance(meta, dict) and "type" in meta and "family" not in meta:
        return str(meta["type"])
    return None


def from_pretrained(directory: str | Path, device="cpu"):
    """A LeRobot policy directory as a chain policy of its family."""
    from vla_razor.errors import CheckpointError

    directory = Path(str(directory).removeprefix(PREFIX))
    kind = lerobot_type(directory)
    if kind not in SUPPORTED:
        raise CheckpointError(
            f"{directory}: LeRobot policy type {kind!r} is not supported behind vla-razor's chain interface yet; "
            f"supported: {', '.join(SUPPORTED)}"
        )
    return SUPPORTED[kind].from_pretrained(directory, device=device)


__all__ = [
    "LeRobotDiffusionChain",
    "LeRobotDiffusionChainConfig",
    "LeRobotFlowChain",
    "LeRobotFlowChainConfig",
    "LeRobotPI0Chain",
    "LeRobotPI05Chain",
    "LeRobotSmolVLAChain",
    "from_pretrained",
    "lerobot_type",
]
