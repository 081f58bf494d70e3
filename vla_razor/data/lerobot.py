"""LeRobot datasets in and out, through LeRobot's own API (``lerobot.datasets.LeRobotDataset``, v3).

Out: :func:`export_demos` writes demo folders (``runs/demos/<Task>/<control mode>``) as one
LeRobotDataset. In: :func:`load_lerobot_episodes` reads a local LeRobotDataset as canonical
demonstration episodes, which pretraining and SFT then use like their own demos (``data: lerobot``).

The mapping between a LeRobot frame and vla-razor's canonical observation (``envs/observations.py``):

====================================  =========  ===========================================================
LeRobot feature                       canonical  notes
====================================  =========  ===========================================================
``observation.state``                 proprio    [<= 25] qpos (9), qvel (9), TCP pose (7); zero-padded
                                                 on import
``observation.environment_state``     state      [<= 32] the task's object/goal state; zero-padded on import
``observation.environment_state_mask`` state_mask [32] written on export; on import, when absent: 1 for each
                                                 entry the dataset has, 0 for the padding
``action``                            action     [<= 7] end-effector delta pose + gripper; zero-padded
``task`` (the frame's task string)    task_id    one of a registered task's instructions (or its name);
                                                 ``lerobot_tasks`` maps other strings to task names
``observation.images.front``          (none)     export only (``--video``): ManiSkill's render camera; the
                                                 state policies do not read images
====================================  =========  ===========================================================

``lerobot_keys`` renames the LeRobot side (``{"proprio": "observation.joints", ...}``); a dataset whose
features do not map raises :class:`DatasetError` listing them. A LeRobot frame is the observation an
action was taken from, so an episode of T frames has T actions and no final observation: on import the
last frame's observation stands in for it (behaviour cloning never reads it). Export also writes
``meta/vla_razor.json`` (each episode's task, seed and success); a foreign dataset has none, and its
episodes count as successful.

LeRobot 0.6.1 needs Python 3.12: it lives in ``.venv-lerobot`` (``make setup-lerobot``). Without it,
these functions raise :class:`DatasetError` saying so.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from vla_razor.atomic import write_json
from vla_razor.envs.observations import ACTION_DIM, PROPRIO_DIM, STATE_DIM
from vla_razor.envs.registry import ALL_TASKS, TaskSpec, get_task, task_index
from vla_razor.errors import DatasetError

IMAGE_KEY = "observation.images.front"
SIDECAR = "meta/vla_razor.json"
SIDECAR_FORMAT = 1
DEFAULT_KEYS = {
    "proprio": "observation.state",
    "state": "observation.environment_state",
    "state_mask": "observation.environment_state_mask",
    "action": "action",
}
_WIDTHS = {"proprio": PROPRIO_DIM, "state": STATE_DIM, "state_mask": STATE_DIM, "action": ACTION_DIM}
_PROPRIO_NAMES = (
    [f"qpos_{i}" for i in range(9)]
    + [f"qvel_{i}" for i in range(9)]
    + ["tcp_x", "tcp_y", "tcp_z", "tcp_qw", "tcp_qx", "tcp_qy", "tcp_qz"]
)
_ACTION_NAMES = ["dx", "dy", "dz", "drx", "dry", "drz", "gripper"]
# Meta-World's entries (envs/metaworld.py), the rest of each canonical width named as padding
_METAWORLD_PROPRIO = ["hand_x", "hand_y", "hand_z", "gripper", "prev_hand_x", "prev_hand_y", "prev_hand_z"]
_METAWORLD_PROPRIO += ["prev_gripper"] + [f"pad_{i}" for i in range(PROPRIO_DIM - 8)]
_METAWORLD_ACTION = ["dx", "dy", "dz", "gripper", "pad_0", "pad_1", "pad_2"]
ROBOT_TYPES = {"maniskill": "panda", "metaworld": "sawyer"}


def _task_env(task: str, control_mode: str, **kwargs):
    """The task's env in its own world (Meta-World's has no control modes)."""
    if get_task(task).world == "metaworld":
        from vla_razor.envs.metaworld import MetaWorldTaskEnv

        return MetaWorldTaskEnv(task, **kwargs)
    from vla_razor.envs.maniskill import ManiSkillTaskEnv

    return ManiSkillTaskEnv(task, control_mode=control_mode, **kwargs)


def require_lerobot():
    """LeRobot's dataset class, or a :class:`DatasetError` that says where LeRobot is installed."""
    try:
        from lerobot.datasets.lerobot_dataset import LeRobotDataset
    except ImportError as err:
        raise DatasetError(
            f"LeRobot is not installed in this environment ({err}); it needs Python 3.12 and lives in "
            "its own: run `make setup-lerobot`, then use `.venv-lerobot/bin/vla-razor`"
        ) from None
    return LeRobotDataset


def features(image_size: int | None = None, world: str = "maniskill") -> dict[str, dict]:
    """The LeRobot features an export writes (``image_size``: also the camera's video), their entries named
    as ``world``'s."""
    proprio_names = _METAWORLD_PROPRIO if world == "metaworld" else _PROPRIO_NAMES
    action_names = _METAWORLD_ACTION if world == "metaworld" else _ACTION_NAMES
    out = {
        DEFAULT_KEYS["proprio"]: {"dtype": "float32", "shape": (PROPRIO_DIM,), "names": proprio_names},
        DEFAULT_KEYS["state"]: {
            "dtype": "float32",
            "shape": (STATE_DIM,),
            "names": [f"state_{i}" for i in range(STATE_DIM)],
        },
        DEFAULT_KEYS["state_mask"]: {
            "dtype": "float32",
            "shape": (STATE_DIM,),
            "names": [f"mask_{i}" for i in range(STATE_DIM)],
        },
        DEFAULT_KEYS["action"]: {"dtype": "float32", "shape": (ACTION_DIM,), "names": action_names},
    }
    if image_size:
        out[IMAGE_KEY] = {
            "dtype": "video",
            "shape": (image_size, image_size, 3),
            "names": ["height", "width", "channels"],
        }
    return out


@dataclass
class ExportSummary:
    root: Path
    episodes: int
    frames: int
    tasks: dict[str, int]
    """Episodes per task."""
    fps: int
    seconds: float
    video: bool
    replay_mismatches: int = 0
    """Episodes whose replay (for the video) did not end as the demo did."""

    def line(self) -> str:
        tasks = ", ".join(f"{t} {n}" for t, n in self.tasks.items())
        video = " with camera video" if self.video else ""
        return (
            f"{self.root}: LeRobotDataset v3, {self.episodes} episodes ({tasks}), {self.frames} frames at "
            f"{self.fps} fps{video}, in {self.seconds:.1f} s"
        )


def _replay_frames(episode, env) -> tuple[list[np.ndarray], bool]:
    """The camera's image before each action of ``episode``, replaying its actions from its seed."""
    env.reset(seed=episode.seed)
    frames, success = [env.render()], False
    for t, action in enumerate(episode.actions):
        _, _, _, _, info = env.step(action)
        if t + 1 < episode.length:
            frames.append(env.render())
        success = info["success"]
    return [np.ascontiguousarray(f[..., :3], dtype=np.uint8) for f in frames], bool(success)


def export_demos(
    demo_dirs: list[str | Path],
    out: str | Path,
    video: bool = False,
    image_size: int = 64,
    repo_id: str | None = None,
    successful_only: bool = False,
    max_episodes: int | None = None,
    on_episode: Callable[[], None] | None = None,
) -> ExportSummary:
    """Write the demos of ``demo_dirs`` (each a ``<Task>/<control mode>`` folder) as one LeRobotDataset
    at ``out`` (``max_episodes``: the first N of each); assembled beside it and renamed into place, so
    ``out`` is whole or absent."""
    from vla_razor.envs.demos import load_demos

    LeRobotDataset = require_lerobot()
    import datasets

    datasets.disable_progress_bars()  # a "Map" bar per episode; the export has its own
    out = Path(out)
    if out.exists():
        raise DatasetError(f"{out} exists; choose another --out or remove it")
    if not 16 <= image_size <= 512:
        raise DatasetError(f"image size must be 16-512 px, got {image_size}")
    start = time.perf_counter()
    sources = []
    for path in demo_dirs:
        episodes = load_demos(path, successful_only=successful_only)[:max_episodes]
        if not episodes:
            raise DatasetError(f"{path} holds no demonstrations to export")
        sources.append((Path(path), episodes))
    worlds = {get_task(episodes[0].task).world for _, episodes in sources}
    if len(worlds) > 1:
        raise DatasetError(f"a dataset holds one world's tasks; these demos are of {sorted(worlds)}")
    world = worlds.pop()
    if video and world == "metaworld":
        raise DatasetError("Meta-World exports are state only here (no OpenGL context to render a camera)")
    fps: dict[str, int] = {}
    for _, episodes in sources:
        task = episodes[0].task
        if task not in fps:
            env = _task_env(task, episodes[0].control_mode)
            fps[task] = env.control_freq
            env.close()
    if len(set(fps.values())) != 1:
        raise DatasetError(f"a LeRobotDataset has one fps; these tasks' control rates differ: {fps}")
    staging = out.with_name(f".{out.name}.staging-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    dataset = LeRobotDataset.create(
        repo_id or f"vla-razor/{out.name}",
        fps=next(iter(fps.values())),
        features=features(image_size if video else None, world),
        root=staging,
        robot_type=ROBOT_TYPES[world],
        use_videos=video,
        video_backend="pyav",
    )
    sidecar: list[dict[str, Any]] = []
    counts: dict[str, int] = {}
    frames = mismatches = 0
    try:
        for path, episodes in sources:
            env = None
            if video:
                horizon = max(ep.length for ep in episodes) + 1
                env = _task_env(
                    episodes[0].task,
                    episodes[0].control_mode,
                    render_mode="rgb_array",
                    render_size=image_size,
                    max_episode_steps=horizon,
                )
            try:
                for ep in episodes:
                    images = None
                    if env is not None:
                        images, replay_success = _replay_frames(ep, env)
                        mismatches += replay_success != ep.success
                    instruction = get_task(ep.task).instruction
                    for t in range(ep.length):
                        frame = {
                            DEFAULT_KEYS["proprio"]: ep.obs["proprio"][t].astype(np.float32),
                            DEFAULT_KEYS["state"]: ep.obs["state"][t].astype(np.float32),
                            DEFAULT_KEYS["state_mask"]: ep.obs["state_mask"][t].astype(np.float32),
                            DEFAULT_KEYS["action"]: ep.actions[t].astype(np.float32),
                            "task": instruction,
                        }
                        if images is not None:
                            frame[IMAGE_KEY] = images[t]
                        dataset.add_frame(frame)
                    dataset.save_episode()
                    frames += ep.length
                    counts[ep.task] = counts.get(ep.task, 0) + 1
                    sidecar.append(
                        {
                            "task": ep.task,
                            "seed": ep.seed,
                            "success": ep.success,
                            "source": str(path),
                            "source_episode": ep.episode_id,
                            "control_mode": ep.control_mode,
                        }
                    )
                    if on_episode is not None:
                        on_episode()
            finally:
                if env is not None:
                    env.close()
        dataset.finalize()
        write_json(staging / SIDECAR, {"format": SIDECAR_FORMAT, "episodes": sidecar})
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return ExportSummary(
        out,
        len(sidecar),
        frames,
        counts,
        next(iter(fps.values())),
        time.perf_counter() - start,
        video,
        mismatches,
    )


@dataclass
class LeRobotSource:
    """Where pretraining or SFT reads a local LeRobotDataset from (``data: lerobot``)."""

    lerobot_root: str = ""
    """data: lerobot: the dataset's local directory (the folder holding ``meta/info.json``)."""
    lerobot_keys: dict[str, str] = field(default_factory=dict)
    """data: lerobot: LeRobot feature names for the canonical entries that differ from the defaults
    (proprio: observation.state, state: observation.environment_state, action: action)."""
    lerobot_tasks: dict[str, str] = field(default_factory=dict)
    """data: lerobot: the dataset's task strings that are not a registered instruction, mapped to task
    names (e.g. {"pull the cube": PullCube})."""


def _task_of(text: str, overrides: dict[str, str]) -> TaskSpec | None:
    if text in overrides:
        return get_task(overrides[text])
    for spec in ALL_TASKS.values():
        if text in spec.instructions or text == spec.name:
            return spec
    return None


def _describe(feats: dict[str, dict]) -> str:
    return ", ".join(f"{k} {feats[k].get('dtype')} {list(feats[k].get('shape', ()))}" for k in feats)


def load_lerobot_episodes(
    root: str | Path,
    keys: dict[str, str] | None = None,
    tasks: dict[str, str] | None = None,
) -> list:
    """Every episode of the LeRobotDataset at ``root`` as a canonical :class:`DemoEpisode`."""
    from vla_razor.envs.demos import DEFAULT_CONTROL_MODE, DemoEpisode

    LeRobotDataset = require_lerobot()
    root = Path(root)
    if not (root / "meta" / "info.json").is_file():
        raise DatasetError(f"{root} is not a local LeRobotDataset (no meta/info.json)")
    unknown = set(keys or {}) - set(DEFAULT_KEYS)
    if unknown:
        raise DatasetError(
            f"lerobot_keys: unknown canonical entries {sorted(unknown)}; use {sorted(DEFAULT_KEYS)}"
        )
    mapping = {**DEFAULT_KEYS, **(keys or {})}
    try:
        dataset = LeRobotDataset(f"local/{root.name}", root=root, video_backend="pyav")
    except Exception as err:  # LeRobot raises many kinds on a damaged or foreign folder
        raise DatasetError(f"LeRobot cannot load {root}: {type(err).__name__}: {err}") from None
    feats = dataset.features
    problems = []
    for canonical in ("proprio", "action"):
        if mapping[canonical] not in feats:
            problems.append(f"no {mapping[canonical]!r} for {canonical}")
    for canonical, key in mapping.items():
        if key in feats:
            shape = tuple(feats[key].get("shape", ()))
            if feats[key].get("dtype") not in ("float32", "float64") or len(shape) != 1:
                problems.append(f"{key} ({feats[key].get('dtype')} {list(shape)}) is not a float vector")
            elif shape[0] > _WIDTHS[canonical]:
                problems.append(
                    f"{key} has {shape[0]} entries, more than the canonical {canonical}'s "
                    f"{_WIDTHS[canonical]}"
                )
    if problems:
        raise DatasetError(
            f"{root}: the features do not map to canonical observations ({'; '.join(problems)}). "
            f"The dataset has: {_describe(feats)}. Map them with lerobot_keys "
            "(proprio, state, state_mask, action -> feature name): docs/lerobot.md"
        )
    task_strings = list(dataset.meta.tasks.index) if dataset.meta.tasks is not None else []
    specs = {text: _task_of(text, tasks or {}) for text in task_strings}
    unmapped = [t for t, s in specs.items() if s is None]
    if unmapped:
        raise DatasetError(
            f"{root}: task strings {unmapped} are not the instruction of a registered task; map them with "
            f"lerobot_tasks={{'<task string>': <task name>}} (tasks: {', '.join(ALL_TASKS)})"
        )
    by_index = {int(dataset.meta.tasks.loc[t].task_index): specs[t] for t in task_strings}
    columns = [mapping[c] for c in mapping if mapping[c] in feats] + ["episode_index", "task_index"]
    table = dataset.hf_dataset.select_columns(columns).with_format("numpy")
    data = {c: np.asarray(np.stack(table[c])) for c in columns}
    sidecar_path = root / SIDECAR
    sidecar = json.loads(sidecar_path.read_text())["episodes"] if sidecar_path.is_file() else None
    episodes = []
    for ep_index in np.unique(data["episode_index"]):
        rows = np.flatnonzero(data["episode_index"] == ep_index)
        meta = sidecar[int(ep_index)] if sidecar is not None and int(ep_index) < len(sidecar) else {}
        # the sidecar names the task where two tasks share a task string (Meta-World's push and push-back)
        spec = get_task(meta["task"]) if "task" in meta else by_index[int(data["task_index"][rows[0]])]
        obs = {}
        for canonical in ("proprio", "state"):
            width = _WIDTHS[canonical]
            if mapping[canonical] in data:
                values = data[mapping[canonical]][rows].astype(np.float32)
            else:
                values = np.zeros((len(rows), 0), np.float32)
            obs[canonical] = np.pad(values, [(0, 0), (0, width - values.shape[1])])
            if canonical == "state":
                own = values.shape[1]
        if mapping["state_mask"] in data:
            obs["state_mask"] = data[mapping["state_mask"]][rows].astype(np.float32)
        else:
            obs["state_mask"] = np.zeros((len(rows), STATE_DIM), np.float32)
            obs["state_mask"][:, :own] = 1.0
        obs["task_id"] = np.full(len(rows), task_index(spec.name), np.int64)
        # T frames, T actions: the last frame's observation stands in for the final one.
        obs = {k: np.concatenate([v, v[-1:]]) for k, v in obs.items()}
        raw = data[mapping["action"]][rows].astype(np.float32)
        episodes.append(
            DemoEpisode(
                task=spec.name,
                episode_id=int(ep_index),
                seed=int(meta.get("seed", -1)),
                control_mode=meta.get("control_mode", DEFAULT_CONTROL_MODE),
                obs=obs,
                actions=np.pad(raw, [(0, 0), (0, ACTION_DIM - raw.shape[1])]),
                raw_actions=raw,
                success=bool(meta.get("success", True)),
                success_per_step=None,
                rewards=None,
            )
        )
    return episodes


def episodes_by_task(episodes: list) -> dict[str, list]:
    out: dict[str, list] = {}
    for ep in episodes:
        out.setdefault(ep.task, []).append(ep)
    return out
