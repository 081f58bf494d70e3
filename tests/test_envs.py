"""Environments on the real ManiSkill3 simulator (CPU physics, tiny budgets)."""

import os
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
import torch

from vla_razor.config import ConfigError
from vla_razor.envs import TASKS, UnknownTaskError, get_task, load_suite, make_vec_env, resolve_tasks
from vla_razor.envs.chunking import ActionChunkWrapper
from vla_razor.envs.maniskill import ManiSkillTaskEnv
from vla_razor.envs.observations import ACTION_DIM, PROPRIO_DIM, STATE_DIM, FlatStateLayout, canonicalize
from vla_razor.envs.registry import task_index

ZERO = np.zeros((1, ACTION_DIM), np.float32)


@pytest.mark.parametrize("task", list(TASKS))
def test_every_registry_task_resets_and_steps_with_canonical_observations(task):
    env = make_vec_env(task, num_envs=1, backend="cpu", seed=0)
    try:
        obs, info = env.reset()
        obs2, reward, terminated, truncated, info2 = env.step(
            np.random.default_rng(0).uniform(-1, 1, (1, 7)).astype(np.float32)
        )
    finally:
        env.close()
    for o in (obs, obs2):
        assert o["proprio"].shape == (1, PROPRIO_DIM) and o["proprio"].dtype == np.float32
        assert o["state"].shape == (1, STATE_DIM) and o["state_mask"].shape == (1, STATE_DIM)
        assert o["task_id"].tolist() == [task_index(task)]
        assert np.isfinite(o["proprio"]).all() and np.isfinite(o["state"]).all()
        # padding is zero and the mask is a prefix of ones
        width = int(o["state_mask"].sum())
        assert (
            0 < width <= STATE_DIM
            and (o["state_mask"][0, :width] == 1).all()
            and (o["state"][0, width:] == 0).all()
        )
    assert not np.array_equal(obs["proprio"], obs2["proprio"])  # the robot moved
    assert reward.shape == (1,) and np.isfinite(reward).all()
    assert info2["success"].dtype == bool and info2["success"].shape == (1,)


def test_flat_state_fast_path_equals_reference_canonicalization():
    import mani_skill.envs  # noqa: F401

    task = get_task("PokeCube")  # the widest task state (29 entries)
    raw = gym.make(
        task.env_id,
        num_envs=1,
        obs_mode="state_dict",
        sim_backend="physx_cpu",
        render_backend="cpu",
        control_mode="pd_ee_delta_pose",
    )
    try:
        sd, _ = raw.reset(seed=3)
        sd, *_ = raw.step(torch.full((1, 7), 0.3))
    finally:
        raw.close()
    layout = FlatStateLayout.from_state_dict(sd, task)
    flat = torch.cat(
        [torch.as_tensor(v).reshape(1, -1).float() for g in ("agent", "extra") for v in sd[g].values()], -1
    )[0]
    fast, ref = layout(flat.numpy()), canonicalize(sd, task)
    for key in ("proprio", "state", "state_mask"):
        np.testing.assert_array_equal(fast[key], ref[key][0].numpy())
    assert int(fast["state_mask"].sum()) == 29
    # the TCP pose is the last 7 proprio entries, the qpos the first 9
    np.testing.assert_array_equal(fast["proprio"][-7:], sd["extra"]["tcp_pose"][0].numpy())
    np.testing.assert_array_equal(fast["proprio"][:9], sd["agent"]["qpos"][0].numpy())


def test_multitask_vector_env_mixes_tasks_across_sub_envs():
    env = make_vec_env("default", num_envs=6, backend="cpu", seed=0)
    try:
        obs, _ = env.reset()
        suite = load_suite("default")
        expected = [suite.tasks[i % len(suite.tasks)] for i in range(6)]
        assert env.task_names == expected
        assert env.instructions[0] == get_task(expected[0]).instruction
        assert obs["task_id"].tolist() == [task_index(t) for t in expected]
        assert obs["proprio"].shape == (6, PROPRIO_DIM)
        widths = obs["state_mask"].sum(1)
        assert len(set(widths.tolist())) > 1  # different tasks, different state widths
    finally:
        env.close()


def test_autoreset_same_step_exposes_final_observation_and_success():
    env = make_vec_env("PushCube", num_envs=2, backend="cpu", seed=0, max_episode_steps=5)
    try:
        obs, _ = env.reset()
        first = obs["state"].copy()
        for step in range(5):
            obs, reward, terminated, truncated, info = env.step(np.zeros((2, 7), np.float32))
        assert truncated.all() and not terminated.any()
        assert info["_final_obs"].all()
        assert set(info["final_obs"]) == set(obs) and info["final_obs"]["state"].shape == (2, STATE_DIM)
        assert "success" in info["final_info"] and info["success"].shape == (2,)
        # the returned obs is the next episode's first one, not the final one
        assert not np.array_equal(info["final_obs"]["proprio"], obs["proprio"])
        # a new episode with a new (continued) RNG: a different initial cube state than episode 1
        assert not np.array_equal(obs["state"], first)
        obs, *_ = env.step(np.zeros((2, 7), np.float32))
    finally:
        env.close()


def test_same_seeds_give_identical_initial_states_for_groups():
    env = make_vec_env("PickCube", num_envs=3, backend="cpu")
    try:
        obs, _ = env.reset(seed=[7, 7, 8])
        np.testing.assert_array_equal(obs["state"][0], obs["state"][1])
        assert not np.array_equal(obs["state"][0], obs["state"][2])
        again, _ = env.reset(seed=[7, 7, 8])
        np.testing.assert_array_equal(again["state"], obs["state"])
    finally:
        env.close()


def test_factory_seed_is_used_by_the_first_reset():
    a = make_vec_env("PickCube", num_envs=1, backend="cpu", seed=11)
    b = make_vec_env("PickCube", num_envs=1, backend="cpu")
    try:
        np.testing.assert_array_equal(a.reset()[0]["state"], b.reset(seed=11)[0]["state"])
    finally:
        a.close(), b.close()


def test_action_chunks_count_steps_and_stop_at_episode_end():
    env = make_vec_env("PushCube", num_envs=1, backend="cpu", seed=0, chunk_size=4, max_episode_steps=10)
    try:
        env.reset()
        assert env.single_action_space.shape == (4, ACTION_DIM)
        counts, dones = [], []
        for _ in range(3):
            _, _, terminated, truncated, info = env.step(np.zeros((1, 4, ACTION_DIM), np.float32))
            counts.append(int(info["chunk_steps"][0]))
            dones.append(bool(terminated[0] or truncated[0]))
        assert counts == [4, 4, 2] and dones == [False, False, True]
    finally:
        env.close()


def test_chunk_wrapper_sums_rewards_of_the_executed_steps():
    single = ManiSkillTaskEnv("PushCube", max_episode_steps=6)
    chunked = ActionChunkWrapper(ManiSkillTaskEnv("PushCube", max_episode_steps=6), chunk_size=4)
    try:
        actions = np.random.default_rng(1).uniform(-1, 1, (8, ACTION_DIM)).astype(np.float32)
        single.reset(seed=5), chunked.reset(seed=5)
        rewards = [single.step(a)[1] for a in actions[:6]]
        _, r1, *_, info1 = chunked.step(actions[:4])
        _, r2, term, trunc, info2 = chunked.step(actions[4:8])
        assert r1 == pytest.approx(sum(rewards[:4]), rel=1e-5) and r2 == pytest.approx(
            sum(rewards[4:6]), rel=1e-5
        )
        assert info1["chunk_steps"] == 4 and info2["chunk_steps"] == 2 and trunc
        with pytest.raises(ValueError, match=r"action chunk must have shape \(4, 7\)"):
            chunked.step(np.zeros((3, 7), np.float32))
    finally:
        single.close(), chunked.close()


def test_reward_modes():
    for mode, check in [
        ("sparse", lambda r: set(np.unique(r)) <= {0.0, 1.0}),
        ("normalized_dense", lambda r: ((r >= 0) & (r <= 1)).all()),
    ]:
        env = make_vec_env("PushCube", num_envs=1, backend="cpu", seed=0, reward_mode=mode)
        try:
            env.reset()
            rewards = np.array(
                [
                    env.step(np.random.default_rng(i).uniform(-1, 1, (1, 7)).astype(np.float32))[1][0]
                    for i in range(20)
                ]
            )
        finally:
            env.close()
        assert check(rewards), (mode, rewards)
    dense = rewards
    assert dense.std() > 0  # normalized dense rewards vary with the state


def test_rgb_observations():
    env = make_vec_env("PickCube", num_envs=1, obs_mode="rgb", image_size=64, backend="cpu", seed=0)
    try:
        obs, _ = env.reset()
        obs, *_ = env.step(ZERO)
    finally:
        env.close()
    assert obs["rgb"].shape == (1, 64, 64, 3) and obs["rgb"].dtype == np.uint8
    assert obs["rgb"].std() > 5  # a real image, not a blank one


def test_rgb_observations_of_a_task_whose_goal_is_state_only():
    # PushCube's goal is privileged state: absent under rgb, so the state is masked out entirely
    env = make_vec_env("PushCube", num_envs=1, obs_mode="rgb", image_size=64, backend="cpu", seed=0)
    try:
        obs, _ = env.reset()
    finally:
        env.close()
    assert obs["state"].shape == (1, STATE_DIM) and not obs["state_mask"].any() and not obs["state"].any()
    assert obs["rgb"].shape == (1, 64, 64, 3) and obs["rgb"].std() > 5


def test_async_process_pool_matches_in_process_env():
    kwargs = dict(num_envs=2, backend="cpu", seed=3)
    sync, pool = make_vec_env("smoke", **kwargs), make_vec_env("smoke", vectorization="async", **kwargs)
    try:
        o1, _ = sync.reset()
        o2, _ = pool.reset()
        np.testing.assert_allclose(o1["state"], o2["state"])
        a = np.random.default_rng(0).uniform(-1, 1, (2, 7)).astype(np.float32)
        s1, s2 = sync.step(a), pool.step(a)
        np.testing.assert_allclose(s1[0]["proprio"], s2[0]["proprio"], atol=1e-5)
        np.testing.assert_allclose(s1[1], s2[1], atol=1e-5)
    finally:
        sync.close(), pool.close()


def test_bad_input_errors_are_clear():
    with pytest.raises(
        UnknownTaskError,
        match=r"unknown task 'PickCub'\. Did you mean PickCube.*Known tasks: ManiSkill PickCube, PushCube",
    ):
        get_task("PickCub")
    with pytest.raises(UnknownTaskError, match="needs downloaded assets"):
        get_task("PickSingleYCB-v1")
    known = "cw10, default, metaworld, metaworld-smoke, mt10, smoke"
    with pytest.raises(ConfigError, match=rf"unknown suite 'nope'; known suites: {known}"):
        load_suite("nope")
    assert resolve_tasks(["PickCube-v1", "smoke"]) == ["PickCube", "PushCube", "PickCube"]
    env = make_vec_env("PushCube", num_envs=1, backend="cpu")
    try:
        env.reset()
        with pytest.raises(ValueError, match=r"actions must have shape \(1, 7\)"):
            env.step(np.zeros((1, 6), np.float32))
    finally:
        env.close()
    with pytest.raises(ValueError, match="backend must be"):
        make_vec_env("PushCube", backend="tpu")


def test_missing_vulkan_driver_is_explained():
    code = "from vla_razor.envs import make_vec_env; make_vec_env('PushCube', backend='cpu')"
    env = dict(os.environ, VK_ICD_FILENAMES="/nonexistent/icd.json", VK_DRIVER_FILES="/nonexistent/icd.json")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert result.returncode != 0
    assert "VulkanUnavailableError" in result.stderr and "scripts/setup.sh" in result.stderr


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA: ManiSkill's batched GPU simulation")
def test_gpu_backend_batches_one_task():
    env = make_vec_env("PickCube", num_envs=16, backend="gpu", seed=0, max_episode_steps=50)
    try:
        obs, _ = env.reset()
        assert obs["proprio"].shape == (16, PROPRIO_DIM) and obs["proprio"].is_cuda
        for _ in range(50):
            obs, reward, terminated, truncated, info = env.step(torch.zeros(16, 7, device="cuda"))
        assert (terminated | truncated).all() and info["_final_obs"].all()
        assert info["final_obs"]["state"].shape == (16, STATE_DIM)
    finally:
        env.close()
    with pytest.raises(ValueError, match="one task per vector env"):
        make_vec_env("smoke", num_envs=4, backend="gpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA: ManiSkill's batched GPU simulation")
def test_gpu_backend_cuts_the_last_chunk_at_the_horizon():
    # PullCube's horizon (100) is not a multiple of 8: 12 whole chunks, then 4 of the 13th chunk's actions
    env = make_vec_env("PullCube", num_envs=8, backend="gpu", chunk_size=8, seed=0)
    try:
        env.reset()
        counts, ends = [], []
        for _ in range(26):  # two whole episodes
            _, _, terminated, truncated, info = env.step(torch.zeros(8, 8, 7, device="cuda"))
            counts.append(int(info["chunk_steps"][0]))
            ends.append(bool((terminated | truncated).all()))
        assert counts == ([8] * 12 + [4]) * 2
        assert [i for i, end in enumerate(ends) if end] == [12, 25]
    finally:
        env.close()


def test_env_creation_and_close_freeze_the_heap_only_while_maniskill_collects(monkeypatch):
    import gc

    import vla_razor.envs.maniskill as maniskill

    seen = []
    real_collect = gc.collect
    # record, at every collection ManiSkill runs, whether long-lived objects were frozen out of it
    monkeypatch.setattr(gc, "collect", lambda *a: seen.append(gc.get_freeze_count()) or real_collect(*a))
    env = maniskill.ManiSkillTaskEnv("PushCube")
    env.close()
    assert seen and all(count > 0 for count in seen)  # creation and close collected with the heap frozen
    assert gc.get_freeze_count() == 0  # and nothing stays frozen afterwards
    gc.freeze()
    try:  # already frozen by someone else: left as it is
        with maniskill.frozen_python_heap():
            pass
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
