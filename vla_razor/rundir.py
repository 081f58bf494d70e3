"""The one run-directory format every command writes, and the only code that writes it.

::

    runs/<name>/
      config.yaml        the resolved config (after overrides)
      metrics.jsonl      one JSON object per logged step: {"step": int, "time": float, <metric>: value}
      tb/                TensorBoard events of the same metrics
      checkpoints/       step_00000100/{tensors.safetensors, state.json}, and LATEST (the newest name)
      videos/            mp4 files
      eval/              evaluation results (JSON)

Every file is written atomically (temp file in the same directory, fsync, rename), so a killed run
leaves either the old file or the new one, never half of one; the temp names start with a dot and a
resumed run deletes them. A checkpoint directory is assembled
under a temporary name and renamed into place, and LATEST is updated after it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import yaml

from .atomic import atomic_write, fsync, json_default, sha256_file, write_json
from .config import dump_yaml
from .errors import CheckpointError, RunDirError

_CKPT_RE = re.compile(r"^step_(\d+)$")


def _flatten_state(state: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Move every tensor of a nested state (model/optimizer state dicts, RNG states) into ``tensors``;
    return the JSON skeleton with ``{"__tensor__": key}`` placeholders."""
    if isinstance(state, torch.Tensor):
        key = prefix or "tensor"
        tensors[key] = state.detach().cpu().contiguous()
        return {"__tensor__": key}
    if isinstance(state, dict):
        for k in state:
            if not isinstance(k, (str, int)):
                raise TypeError(f"checkpoint state key {k!r} at '{prefix}' must be a str or int")
        return {
            "__dict__": [
                [k, _flatten_state(v, f"{prefix}/{k}" if prefix else str(k), tensors)]
                for k, v in state.items()
            ]
        }
    if isinstance(state, (list, tuple)):
        items = [_flatten_state(v, f"{prefix}/{i}", tensors) for i, v in enumerate(state)]
        return {"__tuple__": items} if isinstance(state, tuple) else items
    if isinstance(state, float) and not math.isfinite(state):
        return {"__float__": repr(state)}
    if state is None or isinstance(state, (bool, int, float, str)):
        return state
    raise TypeError(
        f"checkpoint state at '{prefix}' has a {type(state).__name__}; use tensors or JSON values"
    )


def _unflatten_state(node: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(node, dict):
        if "__tensor__" in node:
            return tensors[node["__tensor__"]]
        if "__dict__" in node:
            return {k: _unflatten_state(v, tensors) for k, v in node["__dict__"]}
        if "__tuple__" in node:
            return tuple(_unflatten_state(v, tensors) for v in node["__tuple__"])
        if "__float__" in node:
            return float(node["__float__"])
    if isinstance(node, list):
        return [_unflatten_state(v, tensors) for v in node]
    return node


RUNTIME_SETTINGS = frozenset({"threads", "ray_address", "rollout_backend", "runs_dir"})
"""Config fields that say how or where a run executes, not what it computes: a resume may change them (a
sweep resumed with more Ray workers gives each run a different thread count; rollout actors may move to a
cluster; a run directory restored from an archive or copied elsewhere sits under another ``runs_dir``).
``rollout_backend`` is no config field (rollout workers are Ray actors); a saved config holding it resumes."""


def _flat(node, prefix: str = "") -> dict:
    if isinstance(node, dict) and node:
        return {k: v for key, value in node.items() for k, v in _flat(value, f"{prefix}{key}.").items()}
    return {prefix[:-1]: node}


def config_differences(saved: str, wanted: str, added_defaults: dict | None = None) -> list[str]:
    """``key: saved value -> wanted value`` for every (dotted) setting that differs between two dumped
    configs, runtime settings aside; empty when they describe the same run. ``added_defaults`` (dotted key
    -> default) are fields added to the config class since: a saved config without one ran as its default."""
    old, new = _flat(yaml.safe_load(saved) or {}), _flat(yaml.safe_load(wanted) or {})
    missing = "(absent)"
    for key, default in (added_defaults or {}).items():
        old.setdefault(key, default)
    return [
        f"{key}: {old.get(key, missing)!r} -> {new.get(key, missing)!r}"
        for key in sorted(set(old) | set(new))
        if key.split(".")[0] not in RUNTIME_SETTINGS and old.get(key, missing) != new.get(key, missing)
    ]


def field_defaults(config) -> dict:
    """Every (dotted) field of a config dataclass instance with its class default, as a dumped config
    writes it (fields without a default are left out)."""
    out = {}
    for f in dataclasses.fields(config):
        if f.default is not dataclasses.MISSING:
            value = f.default
        elif f.default_factory is not dataclasses.MISSING:
            value = f.default_factory()
        else:
            continue
        if dataclasses.is_dataclass(value):
            out.update({f"{f.name}.{k}": v for k, v in field_defaults(value).items()})
        else:
            out.update(_flat({f.name: yaml.safe_load(dump_yaml({"v": value}))["v"]}))
    return out


class RunDir:
    """One experiment's directory. Create with :meth:`create`; reopen an existing one with ``resume=True``."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._tb = None

    # -- layout ---------------------------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.path / "config.yaml"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def videos(self) -> Path:
        return self.path / "videos"

    @property
    def eval(self) -> Path:
        return self.path / "eval"

    @property
    def tensorboard(self) -> Path:
        return self.path / "tb"

    @classmethod
    def create(cls, root: str | Path, name: str, config=None, resume: bool = False) -> "RunDir":
        """Make ``root/name`` with its sub-directories and write ``config.yaml``.

        A name that exists is an error unless ``resume`` is set (then the saved config is kept and
        must match, so a resumed run cannot silently change its settings).
        """
        run = cls(Path(root) / name)
        if run.path.exists() and not resume:
            if any(run.path.iterdir()):
                raise RunDirError(
                    f"run directory {run.path} already exists; pass --resume to continue it or choose "
                    "another name"
                )
        for sub in (run.checkpoints, run.videos, run.eval):
            sub.mkdir(parents=True, exist_ok=True)
        if resume:
            run.remove_leftovers()
        if config is not None:
            text = dump_yaml(config)
            if resume and run.config_path.exists():
                changed = config_differences(run.config_path.read_text(), text)
                if changed:
                    raise RunDirError(
                        f"{run.config_path} differs from the config of this command in {'; '.join(changed)} "
                        "(saved -> this command): resume with the same config (or start a new run name)"
                    )
                return run  # keep the saved config (it may name other runtime settings)
            with atomic_write(run.config_path) as f:
                f.write(text)
        return run

    def remove_leftovers(self) -> list[Path]:
        """Delete what a killed writer left behind: the temporary files and checkpoint directories of
        :func:`atomic_write`, :func:`atomic_path` and :meth:`save_checkpoint` (names starting with a dot,
        which no finished file of a run directory has). Returns what was removed."""
        removed = []
        for path in sorted(self.path.rglob(".*"), key=lambda p: len(p.parts), reverse=True):
            if path.name.startswith(".") and path.exists():
                shutil.rmtree(path) if path.is_dir() else path.unlink()
                removed.append(path)
        return removed

    # -- metrics --------------------------------------------------------------------------------
    def log(self, step: int, metrics: dict[str, float]) -> None:
        """Append one metrics record (JSONL) and write the same scalars to TensorBoard."""
        record = {"step": int(step), "time": time.time()}
        for k, v in metrics.items():
            record[k] = v.item() if isinstance(v, torch.Tensor) else v
        line = json.dumps(record, default=json_default)
        with open(self.metrics_path, "a") as f:
            f.write(line + "\n")
            f.flush()
        writer = self._writer()
        for k, v in record.items():
            if k not in ("step", "time") and isinstance(v, (int, float)) and not isinstance(v, bool):
                writer.add_scalar(k, v, global_step=step)
        writer.flush()

    def _writer(self):
        if self._tb is None:
            from torch.utils.tensorboard import SummaryWriter  # slow import: only when logging

            self._tb = SummaryWriter(log_dir=str(self.tensorboard))
        return self._tb

    def read_metrics(self) -> list[dict]:
        """All metric records; a torn last line (a crash mid-write) is skipped."""
        if not self.metrics_path.exists():
            return []
        records = []
        for line in self.metrics_path.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return records

    def truncate_metrics(self, after_step: int) -> None:
        """Drop records past ``after_step``, and the final evaluation's (``final/...``): what a resumed run
        will log again."""
        kept = [
            r
            for r in self.read_metrics()
            if r.get("step", 0) <= after_step and not any(str(k).startswith("final/") for k in r)
        ]
        with atomic_write(self.metrics_path) as f:
            for r in kept:
                f.write(json.dumps(r) + "\n")

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None

    # -- checkpoints ----------------------------------------------------------------------------
    def save_checkpoint(self, step: int, state: dict[str, Any], keep_last: int | None = 3) -> Path:
        """Save a nested state (tensors -> safetensors, the rest -> JSON) as ``checkpoints/step_N``."""
        from safetensors.torch import save_file

        tensors: dict[str, torch.Tensor] = {}
        skeleton = _flatten_state(state, "", tensors)
        name = f"step_{int(step):08d}"
        final = self.checkpoints / name
        tmp = Path(tempfile.mkdtemp(dir=self.checkpoints, prefix=f".{name}."))
        try:
            tensor_file = tmp / "tensors.safetensors"
            save_file(tensors, str(tensor_file))
            fsync(tensor_file)
            # state.json is written last and names the tensors' digest: a checkpoint is complete exactly when
            # its state.json exists, and verified against its tensors when it is loaded.
            write_json(
                tmp / "state.json",
                {"step": int(step), "state": skeleton, "tensors_sha256": sha256_file(tensor_file)},
            )
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
            fsync(self.checkpoints)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        with atomic_write(self.checkpoints / "LATEST") as f:
            f.write(name + "\n")
        if keep_last:
            for old in self.list_checkpoints()[:-keep_last]:
                shutil.rmtree(old, ignore_errors=True)
        return final

    def list_checkpoints(self) -> list[Path]:
        found = [p for p in self.checkpoints.glob("step_*") if p.is_dir() and _CKPT_RE.match(p.name)]
        return sorted(found, key=lambda p: int(_CKPT_RE.match(p.name).group(1)))

    def latest_checkpoint(self) -> Path | None:
        """The newest complete checkpoint, or None when there is none."""
        pointer = self.checkpoints / "LATEST"
        if pointer.exists():
            candidate = self.checkpoints / pointer.read_text().strip()
            if (candidate / "state.json").exists():
                return candidate
        complete = [p for p in self.list_checkpoints() if (p / "state.json").exists()]
        return complete[-1] if complete else None

    def load_latest_checkpoint(self) -> tuple[Path, int, dict[str, Any]] | None:
        """``(path, step, state)`` of the newest checkpoint that loads and verifies, or None when there is
        none.

        A damaged newest checkpoint (a disk error, a copy cut short, a kill the atomic rename could not
        cover) is skipped with a warning for the previous one; it is never deleted."""
        complete = [p for p in self.list_checkpoints() if (p / "state.json").exists()]
        damaged = []
        for path in reversed(complete):
            try:
                step, state = self.load_checkpoint(path)
            except CheckpointError as err:
                print(f"warning: skipping a damaged checkpoint: {err}", file=sys.stderr)
                damaged.append(path.name)
                continue
            if damaged:
                print(
                    f"warning: resuming from {path.name}, the newest checkpoint that verifies "
                    f"({', '.join(damaged)} damaged)",
                    file=sys.stderr,
                )
            return path, step, state
        if damaged:
            raise CheckpointError(
                f"every checkpoint of {self.path} is damaged ({', '.join(damaged)}); start a new run "
                "name, or delete checkpoints/ to restart this run from scratch"
            )
        return None

    @staticmethod
    def load_checkpoint(path: str | Path) -> tuple[int, dict[str, Any]]:
        """Load ``(step, state)`` saved by :meth:`save_checkpoint`; never unpickles."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        path = Path(path)
        state_file, tensor_file = path / "state.json", path / "tensors.safetensors"
        for f in (state_file, tensor_file):
            if not f.exists():
                raise CheckpointError(
                    f"checkpoint {path} is incomplete: {f.name} is missing; use an earlier checkpoint"
                )
        try:
            meta = json.loads(state_file.read_text())
            digest = meta.get("tensors_sha256")
            if digest is not None and digest != sha256_file(tensor_file):
                raise CheckpointError(
                    f"checkpoint {path} is damaged: tensors.safetensors does not match the digest in "
                    "state.json; an earlier checkpoint is used when there is one"
                )
            tensors = load_file(str(tensor_file))
            return int(meta["step"]), _unflatten_state(meta["state"], tensors)
        except (json.JSONDecodeError, KeyError, SafetensorError, OSError) as err:
            raise CheckpointError(
                f"checkpoint {path} is corrupt ({type(err).__name__}: {err}); delete it to fall back to an "
                "earlier one"
            ) from err
