"""LeRobot datasets in and out, checked with LeRobot's own ``LeRobotDataset`` (marker ``lerobot``: these run
in .venv-lerobot, where ``make test`` runs them; the main environment skips them).

Demonstrations come from ManiSkill's motion planner, which needs numpy<2: where this environment has
numpy 2 (.venv-lerobot), the fixture asks the main environment's ``vla-razor demos`` for them, the
workflow docs/lerobot.md describes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vla_razor.errors import DatasetError

pytestmark = pytest.mark.lerobot
ROOT = Path(__file__).resolve().parents[1]
TASKS = ("PushCube", "PickCube")  # the smoke suite: PickCube new, PushCube prior
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def _cli(*args, timeout=900):
    return subprocess.run(
        [sys.executable, "-m", "vla_razor.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=ENV,
        cwd=ROOT,
    )


@pytest.fixture(scope="module")
def demos(tmp_path_factory):
    """Two motion-planned demos of each smoke task: ``{task: demo folder}``."""
    import numpy

    out = tmp_path_factory.mktemp("demos")
    if int(numpy.__version__.split(".")[0]) < 2:
        python = sys.executable
    else:
        python = str(ROOT / ".venv" / "bin" / "python")
        if not Path(python).exists():
            pytest.skip("numpy 2 here and no .venv beside it to plan demonstrations with")
    done = subprocess.run(
        [python, "-m", "vla_razor.cli", "demos", "--task", ",".join(TASKS), "--episodes", "2"]
        + ["--out", str(out), "--no-progress"],
        capture_output=True,
        text=True,
        timeout=600,
        env=ENV,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return {t: out / t / "pd_ee_delta_pose" for t in TASKS}


def _lerobot(root):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    return LeRobotDataset(f"local/{root.name}", root=root, video_backend="pyav")


def test_export_round_trips_exactly_through_lerobots_own_loader(demos, tmp_path):
    from vla_razor.data.lerobot import export_demos, load_lerobot_episodes
    from vla_razor.envs.demos import load_demos
    from vla_razor.envs.registry import get_task

    out = tmp_path / "suite"
    summary = export_demos([demos[t] for t in TASKS], out)
    originals = [ep for t in TASKS for ep in load_demos(demos[t])]
    assert summary.episodes == len(originals) == 4 and summary.fps == 20
    assert summary.frames == sum(ep.length for ep in originals)
    assert not list(tmp_path.glob(".suite.staging-*"))  # assembled beside it, renamed into place

    dataset = _lerobot(out)
    assert dataset.fps == 20 and dataset.num_episodes == 4
    table = dataset.hf_dataset.with_format("numpy")
    tasks = {int(i): t for t, i in zip(dataset.meta.tasks.index, dataset.meta.tasks.task_index)}
    episode_index = np.asarray(table["episode_index"])
    for k, ep in enumerate(originals):
        rows = np.flatnonzero(episode_index == k)
        assert len(rows) == ep.length  # episode boundaries
        np.testing.assert_array_equal(np.stack(table["observation.state"])[rows], ep.obs["proprio"][:-1])
        np.testing.assert_array_equal(
            np.stack(table["observation.environment_state"])[rows], ep.obs["state"][:-1]
        )
        np.testing.assert_array_equal(
            np.stack(table["observation.environment_state_mask"])[rows], ep.obs["state_mask"][:-1]
        )
        np.testing.assert_array_equal(np.stack(table["action"])[rows], ep.actions)
        assert {tasks[int(i)] for i in np.asarray(table["task_index"])[rows]} == {
            get_task(ep.task).instruction
        }

    # ... and back in as canonical episodes, with the seeds and successes of the sidecar.
    back = load_lerobot_episodes(out)
    assert [(b.task, b.seed, b.success) for b in back] == [(o.task, o.seed, o.success) for o in originals]
    for b, o in zip(back, originals):
        for key in ("proprio", "state", "state_mask", "task_id"):
            np.testing.assert_array_equal(b.obs[key][:-1], o.obs[key][:-1])
        np.testing.assert_array_equal(b.actions, o.actions)

    with pytest.raises(DatasetError, match="exists"):
        export_demos([demos["PushCube"]], out)


def test_video_export_holds_one_frame_per_step(demos, tmp_path):
    from vla_razor.data.lerobot import IMAGE_KEY, export_demos
    from vla_razor.envs.demos import load_demos

    out = tmp_path / "video"
    summary = export_demos([demos["PushCube"]], out, video=True, image_size=64, max_episodes=1)
    assert summary.episodes == 1 and summary.replay_mismatches == 0
    dataset = _lerobot(out)
    assert IMAGE_KEY in dataset.meta.video_keys
    length = load_demos(demos["PushCube"])[0].length
    assert dataset.num_frames == length
    first, last = dataset[0][IMAGE_KEY], dataset[length - 1][IMAGE_KEY]
    assert tuple(first.shape) == (3, 64, 64)
    assert float((first - last).abs().mean()) > 0  # the arm moved: frames are the replay, not a constant


def _foreign_dataset(root: Path, demos: dict, keys: dict[str, str], task_names: dict[str, str]):
    """A dataset written with LeRobot's API directly: other feature names, the task state unpadded, task
    strings that are not our instructions."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from vla_razor.envs.demos import load_demos

    width = {t: int(load_demos(demos[t])[0].obs["state_mask"][0].sum()) for t in TASKS}
    dim = max(width.values())
    feats = {
        keys["proprio"]: {"dtype": "float32", "shape": (25,), "names": None},
        keys["state"]: {"dtype": "float32", "shape": (dim,), "names": None},
        "action": {"dtype": "float32", "shape": (7,), "names": None},
    }
    dataset = LeRobotDataset.create("someone/foreign", fps=20, features=feats, root=root, use_videos=False)
    for task in TASKS:
        for ep in load_demos(demos[task]):
            for t in range(ep.length):
                dataset.add_frame(
                    {
                        keys["proprio"]: ep.obs["proprio"][t],
                        keys["state"]: ep.obs["state"][t, :dim],
                        "action": ep.actions[t],
                        "task": task_names[task],
                    }
                )
            dataset.save_episode()
    dataset.finalize()
    return width


def test_a_foreign_dataset_pretrains_a_base_and_feeds_sft(demos, tmp_path):
    import yaml

    from vla_razor.data.lerobot import load_lerobot_episodes

    keys = {"proprio": "observation.joints_and_tcp", "state": "observation.objects"}
    names = {"PushCube": "shove the block to the goal", "PickCube": "lift the block to the marker"}
    root = tmp_path / "foreign"
    width = _foreign_dataset(root, demos, keys, names)

    # Unmapped task strings and unmapped features are named errors that list what the dataset has.
    with pytest.raises(DatasetError, match="observation.joints_and_tcp float32 \\[25\\]"):
        load_lerobot_episodes(root)
    with pytest.raises(DatasetError, match="shove the block"):
        load_lerobot_episodes(root, keys)
    tasks = {text: task for task, text in names.items()}
    episodes = load_lerobot_episodes(root, keys, tasks)
    assert [ep.task for ep in episodes] == ["PushCube"] * 2 + ["PickCube"] * 2
    for ep in episodes:  # the mask marks the entries the dataset really has
        assert ep.obs["state_mask"][0].sum() == max(width.values())
        assert ep.obs["state"].shape[1] == 32 and ep.obs["proprio"].shape[1] == 25

    config = tmp_path / "lerobot.yaml"
    config.write_text(
        yaml.safe_dump(
            {"data": "lerobot", "lerobot_root": str(root), "lerobot_keys": keys, "lerobot_tasks": tasks}
        )
    )
    done = _cli("pretrain", "--config", str(config), "--smoke", f"runs_dir={tmp_path}", "steps=4")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    base = tmp_path / "base-smoke" / "policy"
    assert (base / "model.safetensors").exists()
    resolved = yaml.safe_load((tmp_path / "base-smoke" / "config.yaml").read_text())
    assert resolved["data"] == "lerobot" and resolved["lerobot_tasks"] == tasks

    done = _cli(
        "finetune", "--algo", "sft", "--config", str(config), "--smoke",
        f"runs_dir={tmp_path}", f"base={base}", "name=sft-lerobot",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    final = json.loads((tmp_path / "sft-lerobot" / "eval" / "final.json").read_text())
    assert "PickCube" in final["tasks"]


def test_features_that_do_not_map_are_a_named_error_listing_them(tmp_path):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from vla_razor.data.lerobot import load_lerobot_episodes

    feats = {
        "observation.joint_positions": {"dtype": "float32", "shape": (14,), "names": None},
        "action": {"dtype": "float32", "shape": (14,), "names": None},
    }
    dataset = LeRobotDataset.create(
        "someone/aloha", fps=50, features=feats, root=tmp_path / "d", use_videos=False
    )
    for _ in range(2):
        dataset.add_frame({k: np.zeros(14, np.float32) for k in feats} | {"task": "fold the towel"})
    dataset.save_episode()
    dataset.finalize()
    with pytest.raises(DatasetError) as err:
        load_lerobot_episodes(tmp_path / "d")
    message = str(err.value)
    assert "observation.joint_positions float32 [14]" in message and "action float32 [14]" in message
    assert "more than the canonical action's 7" in message and "lerobot_keys" in message
    done = _cli("dataset", "inspect", str(tmp_path / "d"))
    assert done.returncode == 2 and "observation.joint_positions" in done.stderr


def test_motion_planning_says_where_it_runs_under_numpy_2(demos, tmp_path):
    import numpy

    from vla_razor.envs.demos import DemoGenerationError, generate_demos

    if int(numpy.__version__.split(".")[0]) < 2:
        pytest.skip("numpy 1 here: the planner runs")
    # Reusing demos the main environment wrote works; planning new ones is a named error, not a segfault.
    index = generate_demos("PushCube", 2, out_dir=demos["PushCube"].parents[1], progress=False)
    assert index.reused and index.num_kept == 2
    with pytest.raises(DemoGenerationError, match="numpy<2"):
        generate_demos("PushCube", 2, out_dir=tmp_path, progress=False)


def test_cli_exports_a_suite_and_inspects_it(demos, tmp_path):
    store = demos["PushCube"].parents[1]
    out = tmp_path / "smoke-suite"
    done = _cli(
        "dataset", "export", "--suite", "smoke", "--demo-dir", str(store), "--out", str(out), "--smoke"
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "4 episodes (PushCube 2, PickCube 2)" in done.stdout and "20 fps" in done.stdout
    done = _cli("dataset", "inspect", str(out))
    assert done.returncode == 0 and "PickCube: 2 episodes (2 successful)" in done.stdout, done.stdout
    done = _cli("dataset", "export", "--suite", "smoke", "--demo-dir", str(store), "--out", str(out))
    assert done.returncode == 2 and "exists" in done.stderr  # never over an existing dataset


def test_a_meta_world_export_uses_lerobots_task_strings_and_round_trips(tmp_path):
    from vla_razor.data.lerobot import export_demos, load_lerobot_episodes
    from vla_razor.envs.demos import generate_demos, load_demos

    tasks = ["push-v3", "push-back-v3", "window-open-v3"]  # push and push-back share one task string
    dirs = [generate_demos(t, 2, out_dir=tmp_path / "demos", progress=False).path for t in tasks]
    out = tmp_path / "metaworld"
    summary = export_demos(dirs, out)
    assert summary.episodes == 6 and summary.fps == 80  # MuJoCo's 0.0025 s step times a frame skip of 5
    dataset = _lerobot(out)
    assert dataset.meta.robot_type == "sawyer"
    assert set(dataset.meta.tasks.index) == {"Push the puck to a goal", "Push and open a window"}
    assert dataset.meta.features["observation.state"]["names"][:4] == [
        "hand_x",
        "hand_y",
        "hand_z",
        "gripper",
    ]
    assert dataset.meta.features["action"]["names"][:4] == ["dx", "dy", "dz", "gripper"]
    originals = [ep for d in dirs for ep in load_demos(d)]
    back = load_lerobot_episodes(out)
    assert [(b.task, b.seed) for b in back] == [(o.task, o.seed) for o in originals]
    for b, o in zip(back, originals):
        for key in ("proprio", "state", "state_mask", "task_id"):
            np.testing.assert_array_equal(b.obs[key][:-1], o.obs[key][:-1])
        np.testing.assert_array_equal(b.actions, o.actions)
    with pytest.raises(DatasetError, match="state only"):
        export_demos(dirs[:1], tmp_path / "video", video=True)
