"""Evaluation videos: several episodes of one task side by side, instruction and outcome overlaid.

Rendering is the costly part on a CPU machine (Mesa's software Vulkan): about 8 s for the first
frame of a process, then per frame (step + render, one env) 46 ms at 128 px, 53 ms at 224 px and
69 ms at 512 px here (docs/benchmarks.md). The default tile is 224 px, so a 2 x 2 grid is a 448 px
video: sharp enough to see a grasp, and 4 episodes of 100 steps cost about 20 s. Episodes are stepped one
sub-env at a time (not through the autoresetting vector env) so each tile's last frame really is its episode's
last state; a finished tile freezes on that frame with its outcome shown until the longest episode ends.
"""

from __future__ import annotations

import inspect
import math
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from vla_razor.atomic import atomic_path
from vla_razor.errors import BadInputError

from .maniskill import ManiSkillTaskEnv, ObsMode
from .registry import get_task

# obs (batched canonical dict, N = episodes still running) -> actions [N, 7]
Policy = Callable[[dict[str, np.ndarray]], np.ndarray]

_GREEN, _RED, _WHITE, _BLACK = (40, 200, 90), (220, 60, 50), (255, 255, 255), (0, 0, 0)


@dataclass(frozen=True)
class VideoResult:
    path: Path
    num_frames: int
    successes: list[bool]
    episode_lengths: list[int]
    resolution: tuple[int, int]


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has a single bitmap size
        return ImageFont.load_default()


def annotate(frame: np.ndarray, instruction: str, step: int, outcome: bool | None) -> np.ndarray:
    """Overlay the instruction (top), the step counter and, once known, the outcome (bottom)."""
    from PIL import Image, ImageDraw

    height, width = frame.shape[:2]
    size = max(10, width // 20)
    image = Image.fromarray(frame)
    draw = ImageDraw.Draw(image)
    font = _font(size)
    lines = textwrap.wrap(instruction, max(10, int(width / (size * 0.55))))
    draw.rectangle([0, 0, width, len(lines) * (size + 2) + 4], fill=_BLACK)
    for i, line in enumerate(lines):
        draw.text((4, 2 + i * (size + 2)), line, fill=_WHITE, font=font)
    draw.text((4, height - size - 4), f"t={step}", fill=_WHITE, font=font, stroke_width=1, stroke_fill=_BLACK)
    if outcome is not None:
        label, colour = ("success", _GREEN) if outcome else ("failure", _RED)
        text_w = draw.textlength(label, font=font)
        draw.rectangle([width - text_w - 10, height - size - 8, width, height], fill=colour)
        draw.text((width - text_w - 5, height - size - 5), label, fill=_WHITE, font=font)
        draw.rectangle([0, 0, width - 1, height - 1], outline=colour, width=max(2, width // 80))
    return np.asarray(image)


def grid(tiles: list[np.ndarray], columns: int | None = None) -> np.ndarray:
    """Tiles of equal size in a grid, row-major; empty cells are black."""
    n = len(tiles)
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    h, w, c = tiles[0].shape
    canvas = np.zeros((rows * h, columns * w, c), np.uint8)
    for i, tile in enumerate(tiles):
        r, col = divmod(i, columns)
        canvas[r * h : (r + 1) * h, col * w : (col + 1) * w] = tile
    return canvas


def _stack(obs: list[dict]) -> dict[str, np.ndarray]:
    return {k: np.stack([o[k] for o in obs]) for k in obs[0]}


def replay_policy(
    action_sequences: list[np.ndarray],
) -> Callable[[dict[str, np.ndarray], list[int]], np.ndarray]:
    """Open-loop replay of recorded actions (one sequence per episode); zeros once a sequence ends."""
    cursors = [0] * len(action_sequences)

    def act(obs: dict[str, np.ndarray], running: list[int]) -> np.ndarray:
        out = []
        for i in running:
            seq = action_sequences[i]
            out.append(seq[cursors[i]] if cursors[i] < len(seq) else np.zeros(seq.shape[-1], np.float32))
            cursors[i] += 1
        return np.stack(out)

    return act


class VideoUnsupportedError(BadInputError):
    """Videos of this task's world are not recorded here (the message says what to set instead)."""


def require_video_support(task: str) -> None:
    """Refuse, with a :class:`VideoUnsupportedError`, a task whose episodes :func:`record_episodes` cannot
    film: it renders ManiSkill scenes; Meta-World's MuJoCo has no OpenGL context on a CPU machine here."""
    spec = get_task(task)
    if spec.world != "maniskill":
        raise VideoUnsupportedError(
            f"videos are recorded of ManiSkill tasks only; {spec.name} is a {spec.world} task: set "
            "video_episodes=0 (and report_videos: false in a razor config)"
        )


def record_episodes(
    task: str,
    policy: Policy | Callable[[dict[str, np.ndarray], list[int]], np.ndarray],
    path: str | Path,
    num_episodes: int = 4,
    seed: int | list[int] = 0,
    tile_size: int = 224,
    fps: int = 20,
    obs_mode: ObsMode = "state",
    max_episode_steps: int | None = None,
    control_mode: str = "pd_ee_delta_pose",
) -> VideoResult:
    """Run ``num_episodes`` episodes of ``task`` with ``policy`` and write one mp4 grid of them.

    Episode ``i`` starts from ``reset(seed=seed + i)``, like evaluation, or from ``seed[i]`` when a
    list is given (e.g. the seeds of recorded demonstrations). ``policy(obs)`` gets the batched
    observations of the episodes still running; a policy that takes a second argument also gets
    their episode indices (see :func:`replay_policy`). Returns the outcomes and the number of frames
    written (the longest episode's length + 1 for the initial frame).
    """
    seeds = list(seed) if isinstance(seed, (list, tuple)) else [seed + i for i in range(num_episodes)]
    if len(seeds) != num_episodes:
        raise ValueError(f"got {len(seeds)} seeds for {num_episodes} episodes")
    require_video_support(task)
    wants_ids = len(inspect.signature(policy).parameters) >= 2
    spec = get_task(task)
    envs = [
        ManiSkillTaskEnv(
            spec.name,
            obs_mode=obs_mode,
            control_mode=control_mode,
            render_mode="rgb_array",
            render_size=tile_size,
            max_episode_steps=max_episode_steps,
        )
        for _ in range(num_episodes)
    ]
    try:
        obs = [env.reset(seed=s)[0] for env, s in zip(envs, seeds)]
        last = [annotate(env.render(), spec.instruction, 0, None) for env in envs]
        done = [False] * num_episodes
        successes, lengths = [False] * num_episodes, [0] * num_episodes
        frames = [grid(last)]
        while not all(done):
            running = [i for i in range(num_episodes) if not done[i]]
            batch = _stack([obs[i] for i in running])
            actions = np.asarray(policy(batch, running) if wants_ids else policy(batch), dtype=np.float32)
            for action, i in zip(actions, running):
                obs[i], _, terminated, truncated, info = envs[i].step(action)
                lengths[i] += 1
                successes[i] = bool(info["success"])
                done[i] = terminated or truncated
                last[i] = annotate(
                    envs[i].render(), spec.instruction, lengths[i], successes[i] if done[i] else None
                )
            frames.append(grid(last))
    finally:
        for env in envs:
            env.close()
    write_video(frames, path, fps)
    return VideoResult(Path(path), len(frames), successes, lengths, frames[0].shape[:2])


def write_video(frames: list[np.ndarray], path: str | Path, fps: int = 20) -> None:
    """Encode RGB frames to an H.264 mp4 (atomically: the file appears only when complete)."""
    import imageio.v2 as imageio

    if not frames:
        raise ValueError("no frames to write")
    with atomic_path(path) as tmp:
        # macro_block_size=16: sizes are multiples of 16 already for the default tiles; others get padded.
        with imageio.get_writer(
            tmp, fps=fps, codec="libx264", quality=7, macro_block_size=16, ffmpeg_log_level="error"
        ) as writer:
            for frame in frames:
                writer.append_data(frame)
