"""Base-policy pretraining: data windows, evaluation statistics, the CLI end to end, kill and resume."""

import json
import os
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import numpy as np
import pytest
import scipy.stats
import torch

from vla_razor.data.chunks import ChunkDataset, hold_padding
from vla_razor.evaluation import evaluate_task, wilson_interval
from vla_razor.policies.factory import make_policy


@pytest.mark.parametrize("k, n", [(0, 10), (3, 10), (10, 10), (17, 50), (1, 1)])
def test_wilson_interval_matches_scipy(k, n):
    ref = scipy.stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    assert wilson_interval(k, n) == pytest.approx((ref.low, ref.high), abs=1e-9)


def test_chunks_follow_the_episode_and_hold_still_after_it():
    T, H = 5, 3
    actions = np.arange(T * 7, dtype=np.float32).reshape(T, 7) / 100
    obs = {
        "proprio": np.random.rand(T + 1, 25),
        "state": np.random.rand(T + 1, 32),
        "state_mask": np.ones((T + 1, 32)),
        "task_id": np.zeros(T + 1, np.int64),
    }
    ep = SimpleNamespace(length=T, actions=actions, obs=obs, task="PushCube")
    data = ChunkDataset.from_episodes([ep, ep], H)
    assert len(data) == 2 * T and data.actions.shape == (2 * T, H, 7)
    np.testing.assert_allclose(data.actions[1].numpy(), actions[1:4])
    last = data.actions[T - 1].numpy()  # starts at the last action: then two "hold" actions
    np.testing.assert_allclose(last[0], actions[-1])
    np.testing.assert_allclose(last[1:, :6], 0.0)
    np.testing.assert_allclose(last[1:, 6], actions[-1, 6])
    np.testing.assert_allclose(data.obs["proprio"][:T].numpy(), obs["proprio"][:T], rtol=1e-6)
    assert data.task_counts == {"PushCube": 2}
    assert hold_padding(actions, 0).shape == (0, 7)


def test_evaluation_uses_fixed_seeds_and_real_episodes():
    policy = make_policy(
        "flow", {"hidden": 32, "num_layers": 1, "chunk_size": 8, "num_steps": 2}, embed_language=False
    )
    a = evaluate_task(policy, "PushCube", episodes=2, seed=3, max_episode_steps=16)
    b = evaluate_task(policy, "PushCube", episodes=2, seed=3, max_episode_steps=16)
    assert a == b and a.episodes == 2 and 0 <= a.successes <= 2
    assert (a.ci_low, a.ci_high) == pytest.approx(wilson_interval(a.successes, 2))
    # receding horizon: execute 1 or 3 of the 8 predicted actions per decision
    for execute in (1, 3):
        assert (
            evaluate_task(
                policy, "PushCube", episodes=1, seed=3, max_episode_steps=6, execute_steps=execute
            ).episodes
            == 1
        )
    with pytest.raises(ValueError, match=r"execute_steps must be in \[1, 8\]"):
        evaluate_task(policy, "PushCube", episodes=1, execute_steps=9)


STEPS = 3000  # long enough (seconds at the smoke size) that the kill lands in training, whatever the machine


def _pretrain_cmd(root):
    return [
        sys.executable,
        "-m",
        "vla_razor.cli",
        "pretrain",
        "--smoke",
        f"runs_dir={root}",
        f"demo_dir={root}/demos",
        f"steps={STEPS}",
        "checkpoint_every=50",
    ]


@pytest.mark.slow
def test_pretrain_is_killed_and_resumes(tmp_path):
    cmd = _pretrain_cmd(tmp_path)
    run = tmp_path / "base-smoke"
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    deadline = time.time() + 240
    while not list((run / "checkpoints").glob("step_*")):  # the first checkpoint, whichever it is
        assert proc.poll() is None, proc.stdout.read()[-3000:]
        assert time.time() < deadline, "no checkpoint within 240 s"
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before the kill: raise STEPS"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (run / "policy").exists()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "resuming" in done.stdout and "from step" in done.stdout
    steps = [
        json.loads(line)["step"]
        for line in (run / "metrics.jsonl").read_text().splitlines()
        if '"loss/bc"' in line
    ]
    assert steps == sorted(set(steps)) and steps[-1] == STEPS  # no duplicated records after the resume
    table = json.loads((run / "eval" / "success.json").read_text())
    assert set(table["tasks"]) == {"PushCube", "PickCube"} and table["tasks"]["PickCube"]["role"] == "new"
    from vla_razor.policies.base import ChainPolicy

    loaded = ChainPolicy.from_pretrained(run / "policy")
    assert loaded.config.chunk_size == 8 and torch.isfinite(loaded.obs_encoder.proprio_std).all()
    assert not torch.equal(
        loaded.obs_encoder.proprio_std, torch.ones(25)
    )  # normalization came from the demos
