"""Loading demos into canonical episodes (observations, actions, seeds), with named errors for damaged
files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..metaworld import canonicalize as canonicalize_metaworld
from ..observations import ACTION_DIM, canonicalize
from ..registry import TaskSpec, get_task, task_index
from .index import (
    CANONICAL_CONTROL_MODES,
    DEFAULT_CONTROL_MODE,
    INDEX_NAME,
    DemoEpisode,
    DemoFileError,
    DemoIndex,
    _read_json,
    _regen_hint,
)


def _resolve(path: str | Path) -> tuple[Path, str | None, str]:
    """(h5 path, task name from the index if any, control mode) for a demo directory or .h5 file."""
    path = Path(path)
    if path.suffix == ".h5":
        control_mode = path.parent.name
        task = path.parent.parent.name
        if not path.exists():
            raise DemoFileError(f"demo file {path} is missing; {_regen_hint(task, control_mode)}")
        return path, None, control_mode
    control_mode, task = path.name, path.parent.name
    if not path.is_dir():
        raise DemoFileError(f"demo directory {path} does not exist; {_regen_hint(task, control_mode)}")
    hint = _regen_hint(task, control_mode)
    data = _read_json(path / INDEX_NAME, "demo index", f"the generation did not finish; {hint}")
    try:
        index = DemoIndex.from_json(data, path)
    except TypeError as err:
        raise DemoFileError(
            f"demo index {path / INDEX_NAME} is not a vla-razor demo index ({err}); {hint}"
        ) from err
    return index.trajectory_path, index.task, index.control_mode


def _read_group(group) -> dict[str, Any]:
    """A nested h5 group as nested dicts of numpy arrays, in the file's (= ManiSkill's) key order."""
    import h5py

    return {k: _read_group(v) if isinstance(v, h5py.Group) else v[()] for k, v in group.items()}


def canonical_actions(raw: np.ndarray) -> np.ndarray:
    """Task actions ``[T, A]`` (A <= 7) -> canonical ``[T, 7]``; a missing gripper entry is zero."""
    if raw.shape[-1] > ACTION_DIM:
        raise ValueError(f"actions have {raw.shape[-1]} entries, more than the canonical {ACTION_DIM}")
    return np.pad(raw.astype(np.float32), [(0, 0)] * (raw.ndim - 1) + [(0, ACTION_DIM - raw.shape[-1])])


def load_demos(path: str | Path, successful_only: bool = False) -> list[DemoEpisode]:
    """Load the demos of one task/control mode (its directory, or its ``.h5``) in the canonical layout."""
    import h5py

    h5_path, task_name, control_mode = _resolve(path)
    json_path = h5_path.with_suffix(".json")
    hint = _regen_hint(task_name or h5_path.parent.parent.name, control_mode)
    meta = _read_json(json_path, "demo metadata", hint)
    try:
        spec = get_task(task_name or meta["env_info"]["env_id"])
        episodes_meta = meta["episodes"]
    except (KeyError, TypeError) as err:
        raise DemoFileError(f"demo metadata {json_path} lacks {err}; {hint}") from err
    stored_mode = episodes_meta[0]["control_mode"] if episodes_meta else control_mode
    if stored_mode not in CANONICAL_CONTROL_MODES:
        raise DemoFileError(
            f"{h5_path} holds {stored_mode} actions; canonical actions are end-effector delta poses: "
            f"generate demos with --control-mode {DEFAULT_CONTROL_MODE}"
        )
    episodes = []
    try:
        with h5py.File(h5_path, "r") as f:
            for ep in episodes_meta:
                if successful_only and not ep.get("success", False):
                    continue
                episodes.append(
                    _load_episode(f[f"traj_{ep['episode_id']}"], ep, spec, stored_mode, h5_path, hint)
                )
    except (OSError, KeyError, ValueError) as err:  # h5py reports a corrupt file as OSError
        raise DemoFileError(
            f"demo file {h5_path} is unreadable ({type(err).__name__}: {err}); {hint}"
        ) from err
    return episodes


def _load_episode(
    group, ep: dict, spec: TaskSpec, control_mode: str, h5_path: Path, hint: str
) -> DemoEpisode:
    raw = group["actions"][()]
    if spec.world == "metaworld":  # Meta-World's raw observations, one array
        obs = canonicalize_metaworld(group["obs"][()], task_index(spec.name))
    else:
        obs = canonicalize(_read_group(group["obs"]), spec)
    steps = raw.shape[0]
    if obs["proprio"].shape[0] != steps + 1 or steps != int(ep["elapsed_steps"]):
        raise DemoFileError(
            f"demo file {h5_path} episode {ep['episode_id']} is inconsistent ({steps} actions, "
            f"{obs['proprio'].shape[0]} observations, {ep['elapsed_steps']} steps in the metadata); {hint}"
        )
    per_step = group["success"][()].astype(bool) if "success" in group else None
    return DemoEpisode(
        task=spec.name,
        episode_id=int(ep["episode_id"]),
        seed=int(ep["episode_seed"]),
        control_mode=control_mode,
        obs=obs,
        actions=canonical_actions(raw),
        raw_actions=raw,
        success=bool(ep.get("success", per_step[-1] if per_step is not None and steps else False)),
        success_per_step=per_step,
        rewards=group["rewards"][()] if "rewards" in group else None,
    )
