"""`vla-razor spread`: a policy's sampled outcomes per initial state (whether RL has anything to reinforce),
its summary statistics against hand computations, and the command on a shipped base (real Meta-World)."""

import json
from pathlib import Path

import numpy as np
import pytest

from vla_razor import cli
from vla_razor.rl.spread import OutcomeSpread, outcome_spread

ROOT = Path(__file__).resolve().parents[1]


def test_the_summary_of_per_state_outcomes_by_hand():
    successes = np.array([[1, 1, 1, 1], [0, 0, 0, 0], [1, 0, 1, 0], [1, 1, 1, 0]])
    spread = OutcomeSpread.from_successes("reach-v3", 7, successes)
    assert spread.per_state == [1.0, 0.0, 0.5, 0.75] and spread.group_size == 4 and spread.states == 4
    assert spread.success == pytest.approx(9 / 16)
    assert (spread.mixed, spread.always, spread.never) == (0.5, 0.25, 0.25)
    assert spread.signal == pytest.approx((0 + 0 + 0.25 + 0.1875) / 4)
    # a state that decides every outcome carries no signal, however the successes are split over states
    decided = OutcomeSpread.from_successes("reach-v3", 7, np.array([[1, 1], [0, 0]]))
    assert decided.success == 0.5 and decided.signal == 0 and decided.mixed == 0
    with pytest.raises(ValueError, match="group_size >= 2"):
        OutcomeSpread.from_successes("reach-v3", 7, np.ones((3, 1)))


def test_a_group_starts_every_episode_from_its_own_state():
    """The premise: sub-envs reset with one seed start from one state, another seed another."""
    from vla_razor.envs import make_vec_env

    env = make_vec_env("coffee-button-v3", num_envs=4, backend="cpu", chunk_size=8)
    try:
        obs, _ = env.reset(seed=[5, 5, 6, 6])
        state = obs["state"]
        assert np.array_equal(state[0], state[1]) and np.array_equal(state[2], state[3])
        assert not np.array_equal(state[0], state[2])
    finally:
        env.close()


def test_a_policy_that_never_succeeds_has_no_mixed_state():
    from vla_razor.policies import make_policy

    policy = make_policy(
        "flow",
        {"hidden": 32, "num_layers": 1, "chunk_size": 8, "num_steps": 2, "world": "metaworld"},
        embed_language=False,
    )
    spread = outcome_spread(policy, "pick-place-v3", states=2, group_size=2, seed=3)
    assert spread.per_state == [0.0, 0.0] and spread.never == 1 and spread.signal == 0


def test_the_command_on_a_shipped_base_prints_and_writes_its_table(tmp_path, capsys):
    out = tmp_path / "spread.json"
    base = ROOT / "checkpoints" / "metaworld-base" / "policy"
    argv = ["spread", str(base), "--task", "drawer-close-v3", "--states", "2", "--group-size", "2"]
    assert cli.main([*argv, "--noise-level", "0.2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "drawer-close-v3" in printed and "mixed states" in printed
    result = json.loads(out.read_text())
    assert result["noise_level"] == 0.2 and len(result["tasks"]) == 1
    task = result["tasks"][0]
    assert task["states"] == 2 and task["group_size"] == 2 and len(task["per_state"]) == 2
    assert task["success"] >= 0.5  # the base solves drawer-close 50 of 50 times deterministically
    # bad input: one named line, exit 2, before any episode
    assert cli.main([*argv[:4], "--states", "2", "--group-size", "1"]) == 2
    assert "--group-size must be >= 2, got 1" in capsys.readouterr().err
    assert cli.main(["spread", str(base), "--task", "coffe-button-v3"]) == 2
    assert "unknown task 'coffe-button-v3'" in capsys.readouterr().err
