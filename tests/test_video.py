"""Evaluation videos: real rendering through ManiSkill, encoded with imageio, decoded back."""

import imageio.v2 as imageio
import numpy as np
import pytest

from vla_razor.envs.video import annotate, grid, record_episodes, write_video


def test_grid_layout():
    tiles = [np.full((4, 6, 3), v, np.uint8) for v in (10, 20, 30)]
    canvas = grid(tiles)
    assert canvas.shape == (8, 12, 3)
    assert canvas[0, 0, 0] == 10 and canvas[0, 6, 0] == 20 and canvas[4, 0, 0] == 30 and canvas[4, 6, 0] == 0


def test_annotation_marks_outcome():
    frame = np.full((128, 128, 3), 128, np.uint8)
    running, success, failure = (annotate(frame, "pick up the cube", 3, o) for o in (None, True, False))
    assert not np.array_equal(running, frame)  # instruction drawn
    assert tuple(success[64, 0]) == (40, 200, 90) and tuple(failure[64, 0]) == (
        220,
        60,
        50,
    )  # coloured border
    assert tuple(running[64, 0]) == (128, 128, 128)  # no outcome yet: no border


def test_record_episodes_writes_a_decodable_grid(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "videos" / "PushCube.mp4"
    result = record_episodes(
        "PushCube",
        lambda obs: rng.uniform(-1, 1, (len(obs["proprio"]), 7)),
        path,
        num_episodes=3,
        tile_size=64,
        max_episode_steps=6,
    )
    assert result.num_frames == 7 and result.episode_lengths == [6, 6, 6] and len(result.successes) == 3
    reader = imageio.get_reader(path)
    frames = [f for f in reader]
    assert len(frames) == 7
    assert frames[0].shape == (128, 128, 3)  # 3 tiles of 64 px in a 2 x 2 grid
    assert frames[-1].std() > 5  # rendered content, not a blank canvas
    assert not any(p.name.startswith(".") for p in path.parent.iterdir())  # no temp file left


def test_write_video_refuses_empty(tmp_path):
    with pytest.raises(ValueError, match="no frames"):
        write_video([], tmp_path / "x.mp4")
