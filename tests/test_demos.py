"""Expert demonstrations on the real simulator: motion planning -> ManiSkill replay conversion ->
canonical episodes, reuse and top-up, corrupt/missing files, and the RL-expert path (tiny budgets)."""

import json
import shutil

import numpy as np
import pytest
import torch

from vla_razor.cli import main
from vla_razor.envs.demos import (
    INDEX_NAME,
    DemoFileError,
    canonical_actions,
    generate_demos,
    load_demos,
)
from vla_razor.envs.observations import ACTION_DIM, PROPRIO_DIM, STATE_DIM, canonicalize, to_task_action
from vla_razor.envs.registry import get_task, task_index

PLANNED = ("PickCube", "PushCube", "PullCube")


@pytest.fixture(scope="module")
def demos(tmp_path_factory):
    if int(np.__version__.split(".")[0]) >= 2:  # .venv-lerobot; test_lerobot.py checks the named error
        pytest.skip("ManiSkill's motion planner needs numpy<2: .venv runs these")
    out = tmp_path_factory.mktemp("demos")
    return out, {task: generate_demos(task, 2, out_dir=out, progress=False) for task in PLANNED}


def _copy_task(out, task, dest_root):
    """A private copy of one task's demos, so a test can damage or extend it."""
    shutil.copytree(out / task, dest_root / task)
    return dest_root / task / "pd_ee_delta_pose"


def test_planned_demos_are_recorded_and_load_canonically(demos):
    out, indexes = demos
    for task, index in indexes.items():
        on_disk = json.loads((index.path / INDEX_NAME).read_text())
        assert on_disk == json.loads(json.dumps(index.to_json()))
        assert on_disk["num_kept"] == 2 and on_disk["source"] == "motion_planning"
        assert on_disk["success_rate"] == pytest.approx(2 / on_disk["num_attempted"])
        assert on_disk["num_attempted"] == 2 + on_disk["num_failed_plans"] + on_disk["num_failed_conversion"]
        assert 0 < on_disk["plan_success_rate"] <= 1 and on_disk["seconds_per_demo"] > 0
        assert (
            on_disk["mani_skill_version"] and on_disk["max_episode_steps"] == get_task(task).max_episode_steps
        )
        horizon = get_task(task).max_episode_steps
        assert on_disk["num_longer_than_horizon"] == sum(n > horizon for n in on_disk["episode_lengths"])

        episodes = load_demos(index.path)
        assert [ep.length for ep in episodes] == index.episode_lengths
        assert [ep.seed for ep in episodes] == index.seeds
        for ep in episodes:
            T = ep.length
            assert ep.task == task and ep.success and ep.control_mode == "pd_ee_delta_pose"
            assert ep.obs["proprio"].shape == (T + 1, PROPRIO_DIM)
            assert ep.obs["state"].shape == ep.obs["state_mask"].shape == (T + 1, STATE_DIM)
            assert (ep.obs["task_id"] == task_index(task)).all()
            assert ep.actions.shape == (T, ACTION_DIM) and np.abs(ep.actions).max() <= 1.0
            assert ep.rewards.shape == (T,) and ep.success_per_step[-1]
        # the .h5 itself loads the same episodes
        direct = load_demos(index.trajectory_path)
        assert np.array_equal(direct[1].actions, episodes[1].actions)


def test_demo_actions_replay_to_success_from_the_recorded_start(demos):
    """The stored observations and actions are those of the target control mode, in ManiSkill's key order."""
    import gymnasium as gym
    import mani_skill.envs  # noqa: F401

    out, indexes = demos
    spec = get_task("PickCube")
    ep = load_demos(indexes["PickCube"].path)[0]
    env = gym.make(
        spec.env_id,
        obs_mode="state_dict",
        control_mode="pd_ee_delta_pose",
        sim_backend="physx_cpu",
        render_backend="cpu",
    )
    try:
        obs, _ = env.reset(seed=ep.seed)
        live = canonicalize(obs, spec)
        np.testing.assert_allclose(live["proprio"][0].numpy(), ep.obs["proprio"][0], atol=1e-6)
        np.testing.assert_allclose(live["state"][0].numpy(), ep.obs["state"][0], atol=1e-6)
        for action in ep.actions:
            obs, _, _, _, info = env.step(torch.as_tensor(to_task_action(action[None], 7)))
    finally:
        env.close()
    assert bool(info["success"])
    np.testing.assert_allclose(canonicalize(obs, spec)["state"][0].numpy(), ep.obs["state"][-1], atol=1e-4)


def test_rerun_reuses_and_more_episodes_top_up(demos, tmp_path):
    out, indexes = demos
    h5 = indexes["PickCube"].trajectory_path
    before = h5.stat().st_mtime_ns
    again = generate_demos("PickCube", 2, out_dir=out, progress=False)
    fewer = generate_demos("PickCube", 1, out_dir=out, progress=False)
    assert again.reused and fewer.reused and fewer.num_kept == 2
    assert h5.stat().st_mtime_ns == before

    directory = _copy_task(out, "PushCube", tmp_path)
    old = load_demos(directory)
    more = generate_demos("PushCube", 3, out_dir=tmp_path, progress=False)
    assert not more.reused and more.num_kept == 3 and more.seeds[:2] == indexes["PushCube"].seeds
    assert more.seeds[2] >= indexes["PushCube"].next_seed
    new = load_demos(directory)
    assert [ep.length for ep in new] == more.episode_lengths
    assert np.array_equal(new[0].actions, old[0].actions) and np.array_equal(new[1].actions, old[1].actions)

    # another base seed is another data set: regenerated, not merged
    other = generate_demos("PushCube", 1, out_dir=tmp_path, seed=100, progress=False)
    assert other.seeds == [100] and [ep.seed for ep in load_demos(directory)] == [100]


def test_corrupt_and_missing_files_raise_demo_file_error(demos, tmp_path):
    out, _ = demos
    with pytest.raises(DemoFileError, match=r"does not exist; re-run `vla-razor demos --task PlaceSphere"):
        load_demos(tmp_path / "PlaceSphere" / "pd_ee_delta_pose")

    directory = _copy_task(out, "PullCube", tmp_path)
    h5 = directory / json.loads((directory / INDEX_NAME).read_text())["trajectory_file"]
    h5.write_bytes(h5.read_bytes()[: h5.stat().st_size // 2])  # a torn copy
    with pytest.raises(DemoFileError, match=rf"{h5.name}.*re-run `vla-razor demos --task PullCube"):
        load_demos(directory)
    h5.write_bytes(b"not an hdf5 file")
    with pytest.raises(DemoFileError, match=rf"{h5.name} is unreadable"):
        load_demos(h5)
    # generation does not trust a corrupt set: it regenerates it
    fixed = generate_demos("PullCube", 1, out_dir=tmp_path, progress=False)
    assert not fixed.reused and len(load_demos(directory)) == fixed.num_kept == 1

    (directory / INDEX_NAME).write_text("{ torn")
    with pytest.raises(DemoFileError, match=r"index.json is unreadable.*vla-razor demos --task PullCube"):
        load_demos(directory)
    (directory / INDEX_NAME).unlink()
    with pytest.raises(DemoFileError, match=r"index.json is missing; the generation did not finish"):
        load_demos(directory)


@pytest.mark.slow
def test_rl_expert_path_on_a_tiny_budget(tmp_path):
    index = generate_demos("PokeCube", 2, out_dir=tmp_path, rl_timesteps=256, progress=False)
    assert index.source == "rl_expert" and index.keep == "all"
    assert (index.path / "expert" / "ppo.zip").exists()
    assert index.expert["total_timesteps"] == 256 and index.expert["train_episodes"] >= 1
    assert index.num_kept == 2 and index.num_attempted == 2
    assert index.success_rate == pytest.approx(index.num_kept_successful / 2)
    episodes = load_demos(index.path)
    assert [ep.length for ep in episodes] == index.episode_lengths
    assert all(ep.length <= get_task("PokeCube").max_episode_steps for ep in episodes)
    assert sum(ep.success for ep in episodes) == index.num_kept_successful
    assert len(load_demos(index.path, successful_only=True)) == index.num_kept_successful
    for ep in episodes:
        assert ep.actions.shape == (ep.length, ACTION_DIM) and ep.obs["state"].shape == (
            ep.length + 1,
            STATE_DIM,
        )
        assert ep.rewards.shape == (ep.length,) and (ep.rewards >= 0).all() and (ep.rewards <= 1).all()
    # the expert is reused, and so are the demos
    mtime = (index.path / "expert" / "ppo.zip").stat().st_mtime_ns
    assert generate_demos("PokeCube", 2, out_dir=tmp_path, rl_timesteps=256, progress=False).reused
    assert (index.path / "expert" / "ppo.zip").stat().st_mtime_ns == mtime


def test_six_dim_actions_get_a_zero_gripper_entry():
    raw = np.arange(12, dtype=np.float32).reshape(2, 6) / 12
    canon = canonical_actions(raw)
    assert canon.shape == (2, ACTION_DIM) and (canon[:, 6] == 0).all()
    assert np.array_equal(to_task_action(canon, 6), raw)
    with pytest.raises(ValueError, match="more than the canonical 7"):
        canonical_actions(np.zeros((2, 8), np.float32))


def test_cli_demos_summary_and_errors(demos, capsys):
    out, _ = demos
    assert (
        main(
            [
                "demos",
                "--task",
                "PickCube,PushCube",
                "--task",
                "PullCube",
                "--smoke",
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3
    for task, line in zip(PLANNED, lines):
        assert line.startswith(f"{task}: kept 2/2") and "s/demo" in line and line.endswith("(reused)")
    assert main(["demos", "--task", "PushCub", "--episodes", "1", "--out", str(out)]) == 2
    assert "Did you mean PushCube" in capsys.readouterr().err
