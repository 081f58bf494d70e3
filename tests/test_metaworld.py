"""Meta-World behind the project's interfaces: every task through make_vec_env, the canonical mapping, seeded
and randomised resets, scripted demonstrations that replay to success, one world per policy, and PPO and
SFT runs on a Meta-World suite (real Meta-World and MuJoCo, tiny budgets)."""

import json
import subprocess
import sys

import numpy as np
import pytest

from vla_razor.envs import load_suite, make_vec_env
from vla_razor.envs.metaworld import RAW_DIM, canonicalize
from vla_razor.envs.registry import METAWORLD_TASKS, TASKS, get_task, task_index
from vla_razor.errors import ConfigError


def test_every_meta_world_task_resets_and_steps_through_make_vec_env():
    names = list(METAWORLD_TASKS)
    assert len(names) == 50 and all(get_task(n).world == "metaworld" for n in names)
    env = make_vec_env(names, num_envs=len(names), seed=0)
    try:
        obs, info = env.reset()
        assert obs["proprio"].shape == (50, 25) and obs["state"].shape == (50, 32)
        assert list(obs["task_id"]) == [task_index(n) for n in names] == list(range(50))
        assert env.instructions[names.index("pick-place-v3")] == "Pick and place a puck to a goal"
        for _ in range(3):
            obs, reward, terminated, truncated, info = env.step(np.zeros((50, 7), np.float32))
        assert np.isfinite(reward).all() and info["success"].dtype == bool
        assert np.isfinite(obs["state"]).all() and (obs["state_mask"][:, :31] == 1).all()
        assert (obs["state_mask"][:, 31:] == 0).all() and (obs["proprio"][:, 8:] == 0).all()
    finally:
        env.close()


def test_resets_are_seeded_and_randomise_objects_and_goals():
    env = make_vec_env("pick-place-v3", num_envs=2, seed=0)
    try:
        a, _ = env.reset(seed=[5, 6])
        b, _ = env.reset(seed=[5, 6])
        assert np.array_equal(a["state"], b["state"])  # the same seed, the same scene
        assert not np.allclose(a["state"][0], a["state"][1])  # another seed, another object and goal
        assert not np.allclose(a["state"][0, 28:31], a["state"][1, 28:31])  # the goal moved too
    finally:
        env.close()


def test_the_canonical_layout_puts_each_meta_world_entry_where_the_docs_say():
    raw = np.arange(RAW_DIM, dtype=np.float32)[None]
    out = canonicalize(raw, task_index("reach-v3"))
    hand, previous_hand = list(range(0, 4)), list(range(18, 22))
    objects, previous_objects, goal = list(range(4, 18)), list(range(22, 36)), [36, 37, 38]
    assert out["proprio"][0, :8].tolist() == hand + previous_hand
    assert out["state"][0, :31].tolist() == objects + previous_objects + goal
    assert out["task_id"].tolist() == [task_index("reach-v3")]
    with pytest.raises(ValueError, match="39 entries"):
        canonicalize(np.zeros((1, 38)), task_index("reach-v3"))


def test_an_episode_ends_at_success_or_the_horizon():
    env = make_vec_env("reach-v3", num_envs=1, seed=0, max_episode_steps=5)
    try:
        env.reset()
        for step in range(5):
            _, _, terminated, truncated, info = env.step(np.zeros((1, 7), np.float32))
        assert truncated[0] and not terminated[0]  # standing still does not reach the goal
    finally:
        env.close()


@pytest.mark.parametrize("task", ["reach-v3", "pick-place-v3", "window-close-v3"])
def test_scripted_demos_are_stored_reused_and_replay_to_success_in_our_env(task, tmp_path):
    from vla_razor.envs.demos import generate_demos, load_demos

    index = generate_demos(task, 3, out_dir=tmp_path, progress=False)
    assert index.num_kept == 3 and index.control_mode == "mocap_delta_xyz_gripper"
    assert index.mani_skill_version.startswith("metaworld ")
    episodes = load_demos(index.path)
    assert [e.seed for e in episodes] == index.seeds and all(e.success for e in episodes)
    assert generate_demos(task, 3, out_dir=tmp_path, progress=False).reused
    env = make_vec_env(task, num_envs=1)
    try:
        for episode in episodes:
            assert episode.actions.shape == (episode.length, 7) and not episode.actions[:, 4:].any()
            obs, _ = env.reset(seed=episode.seed)
            np.testing.assert_allclose(obs["state"][0], episode.obs["state"][0], atol=1e-6)
            for action in episode.actions:
                _, _, terminated, truncated, info = env.step(action[None])
                if terminated[0] or truncated[0]:
                    break
            assert info["success"][0] and terminated[0]
    finally:
        env.close()


def test_a_suite_and_a_vector_env_serve_one_world():
    from vla_razor.envs.suites import Suite

    assert load_suite("mt10").world == "metaworld" and len(load_suite("cw10").prior_tasks) == 9
    with pytest.raises(ValueError, match="mixes worlds"):
        Suite("mixed", "reach-v3", ["PushCube"])
    with pytest.raises(ValueError, match="one world"):
        make_vec_env(["reach-v3", "PushCube"], num_envs=2)


def test_a_policy_evaluated_on_another_world_gets_a_named_error():
    from vla_razor.evaluation import evaluate_task
    from vla_razor.policies import make_policy

    small = {"hidden": 32, "num_layers": 1, "chunk_size": 4, "num_steps": 2}
    maniskill = make_policy("flow", small, embed_language=False)
    with pytest.raises(ConfigError, match="reach-v3 is a metaworld task but the policy serves maniskill"):
        evaluate_task(maniskill, "reach-v3", 1)
    metaworld = make_policy("flow", {**small, "world": "metaworld"}, embed_language=False)
    assert metaworld.obs_encoder.state_mean.shape[0] == len(METAWORLD_TASKS)
    assert maniskill.obs_encoder.state_mean.shape[0] == len(TASKS)
    result = evaluate_task(metaworld, "reach-v3", 2, seed=0, max_episode_steps=8)
    assert result.episodes == 2 and result.successes == 0  # 8 steps reach nothing


FAMILY_BASES = [
    ("metaworld-base", "flow"),
    ("metaworld-base-diffusion", "diffusion"),
    ("metaworld-base-gaussian", "gaussian"),
]


@pytest.mark.parametrize("ship, family", FAMILY_BASES, ids=[f for _, f in FAMILY_BASES])
def test_every_family_has_a_shipped_meta_world_base_that_does_what_its_table_says(ship, family):
    """Each family's base (checkpoints/<ship>/): its family and world, the pretrain config beside it, a
    success table over the metaworld suite, and the weights at work: a prior task the table puts at 50 of
    50 is solved again here."""
    from pathlib import Path

    import yaml

    from vla_razor.evaluation import evaluate_task
    from vla_razor.policies import ChainPolicy

    ship = Path(__file__).resolve().parents[1] / "checkpoints" / ship
    policy = ChainPolicy.from_pretrained(ship / "policy")
    config = yaml.safe_load((ship / "config.yaml").read_text())
    assert policy.family == config["family"] == family and policy.config.world == "metaworld"
    assert config["suite"] == "metaworld" and config["new_demos"] == 0
    assert all(getattr(policy.config, k) == v for k, v in config["policy"].items())
    table = json.loads((ship / "success.json").read_text())
    assert table["suite"] == "metaworld" and table["episodes_per_task"] == 50
    roles = {t: v["role"] for t, v in table["tasks"].items()}
    assert sorted(roles) == sorted(load_suite("metaworld").tasks) and list(roles.values()).count("new") == 1
    solved = sorted(t for t, v in table["tasks"].items() if v["role"] == "prior" and v["successes"] == 50)
    assert solved, "a base that solves no prior task every time"
    result = evaluate_task(policy, solved[0], 4, seed=table["eval_seed"])
    assert result.successes >= 3, (solved[0], result)


def _cli(*args, timeout=900):
    done = subprocess.run(
        [sys.executable, "-m", "vla_razor.cli", *args], capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


@pytest.mark.slow
def test_ppo_and_sft_on_a_meta_world_suite_track_the_kl_and_retention(tmp_path):
    demos = f"demo_dir={tmp_path}/demos"
    _cli("pretrain", "--smoke", "suite=metaworld-smoke", f"runs_dir={tmp_path}", demos, "steps=10")
    base = tmp_path / "base-smoke" / "policy"
    assert json.loads((base / "config.json").read_text())["config"]["world"] == "metaworld"
    common = ["suite=metaworld-smoke", f"base={base}", f"runs_dir={tmp_path}", "video_episodes=0"]
    _cli("finetune", "--algo", "ppo", "--smoke", *common)
    _cli("finetune", "--algo", "sft", "--smoke", *common, demos)
    for algo in ("ppo", "sft"):
        run = tmp_path / f"{algo}-window-close-v3"
        records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        kl = [r["kl/forward"] for r in records if "kl/forward" in r]
        assert kl and all(np.isfinite(kl)) and all(k >= 0 for k in kl)
        final = json.loads((run / "eval" / "final.json").read_text())
        assert "window-open-v3" in json.dumps(final)  # retention measured on the prior task
        assert any("final/retention/window-open-v3" in r for r in records)


def test_videos_of_a_meta_world_task_are_refused_with_a_named_error(tmp_path):
    from vla_razor.envs.video import VideoUnsupportedError, record_episodes, require_video_support

    require_video_support("PushCube")  # ManiSkill tasks are filmed
    with pytest.raises(VideoUnsupportedError, match="set video_episodes=0"):
        require_video_support("reach-v3")
    with pytest.raises(VideoUnsupportedError, match="reach-v3 is a metaworld task"):
        record_episodes("reach-v3", lambda obs: np.zeros((len(obs["task_id"]), 7)), tmp_path / "v.mp4", 1)
    assert not (tmp_path / "v.mp4").exists()
