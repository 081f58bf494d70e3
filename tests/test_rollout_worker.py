"""Overlapped rollouts: the Ray actors act with exactly the weights of the previous call (one update
stale), their log-probs are those of the policy that acted, and their failures reach the learner."""

import copy
import subprocess
import sys

import pytest
import torch

from vla_razor.policies import make_policy
from vla_razor.policies.critic import CriticConfig, ValueCritic
from vla_razor.rl.rollout import per_step_log_prob
from vla_razor.rl.rollout_worker import InlineRollouts, OverlappedRollouts, RolloutSpec, RolloutWorkerError

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]
TINY = {"hidden": 32, "num_layers": 1, "num_heads": 4, "chunk_size": 4, "num_steps": 2}


def _spec(task="PickCube"):
    return RolloutSpec(
        task,
        num_envs=2,
        chunk_size=4,
        reward_mode="sparse",
        vectorization="sync",
        num_decisions=3,
        gamma=0.9,
        reward_scale=1.0,
        reset_seed=5,
        sampling_seed=7,
    )


def _log_probs_under(policy, rollout):
    chains = rollout.flat_chains()
    with torch.no_grad():
        steps = policy.step_distributions(rollout.flat_obs(), chains)
        return per_step_log_prob(steps, chains.points)


def _perturb(policy, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))


@pytest.mark.parametrize("workers", [1, 2])
def test_worker_rollouts_are_one_update_stale_and_carry_the_actors_log_probs(workers):
    policy = make_policy("flow", TINY, embed_language=False)
    critic = ValueCritic(CriticConfig(hidden=32), embed_language=False)
    weights = [copy.deepcopy(policy)]
    rollouts = OverlappedRollouts(_spec(), policy, critic, workers=workers)
    try:
        first = rollouts.next(policy, critic)  # acted with weights[0]
        _perturb(policy, 1)
        weights.append(copy.deepcopy(policy))
        second = rollouts.next(policy, critic)  # asked for before the change: weights[0] again
        _perturb(policy, 2)
        third = rollouts.next(policy, critic)  # asked for with weights[1]
    finally:
        rollouts.close()
    assert first.chains.shape == (3, 2, 3, 4, 7) and first.log_probs.shape == (3, 2, 2)
    for rollout, actor, other in (
        (first, weights[0], weights[1]),
        (second, weights[0], weights[1]),
        (third, weights[1], weights[0]),
    ):
        logged = rollout.flat_log_probs()
        assert torch.allclose(_log_probs_under(actor, rollout), logged, atol=1e-4)
        assert not torch.allclose(_log_probs_under(other, rollout), logged, atol=1e-2)
    # the worker's env runs on: fresh observations each time, not a replay of the first rollout
    assert not torch.equal(first.obs["state"], second.obs["state"])


def test_inline_rollouts_act_with_the_current_weights_and_workers_reset_the_same_sub_envs():
    policy = make_policy("flow", TINY, embed_language=False)
    critic = ValueCritic(CriticConfig(hidden=32), embed_language=False)
    rollouts = InlineRollouts(_spec(), torch.Generator().manual_seed(0))
    try:
        first = rollouts.next(policy, critic)
        _perturb(policy, 1)
        rollout = rollouts.next(policy, critic)
    finally:
        rollouts.close()
    assert torch.allclose(_log_probs_under(policy, rollout), rollout.flat_log_probs(), atol=1e-4)
    # two workers with one sub-env each start from the very states of the one-process layout
    split = OverlappedRollouts(_spec(), policy, critic, workers=2)
    try:
        merged = split.next(policy, critic)
    finally:
        split.close()
    assert torch.equal(merged.obs["state"][0], first.obs["state"][0])
    assert (
        merged.obs["state"].shape == first.obs["state"].shape
        and merged.next_obs["state"].shape == first.next_obs["state"].shape
    )


def test_rollout_workers_must_divide_the_sub_envs():
    from vla_razor.rl.ppo import PPOConfig

    with pytest.raises(ValueError, match="rollout_workers"):
        PPOConfig(num_envs=16, rollout_workers=3)
    assert PPOConfig(num_envs=16, rollout_workers=4).rollout_workers == 4


def test_a_failing_worker_reports_its_traceback():
    policy = make_policy("flow", TINY, embed_language=False)
    critic = ValueCritic(CriticConfig(hidden=32), embed_language=False)
    with pytest.raises(RolloutWorkerError, match="(?s)rollout actor .* failed.*NoSuchTask"):
        OverlappedRollouts(_spec("NoSuchTask"), policy, critic)


def _alive(pid: int) -> bool:
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie is dead too
        return f.read().split()[2] != "Z"


@pytest.mark.parametrize("fault", ["killed", "hung"])
def test_a_dead_or_hung_worker_stops_the_run_with_a_named_error_in_bounded_time(fault):
    import os
    import signal
    import time

    from vla_razor.errors import WorkerError

    policy = make_policy("flow", TINY, embed_language=False)
    critic = ValueCritic(CriticConfig(hidden=32), embed_language=False)
    rollouts = OverlappedRollouts(_spec(), policy, critic, timeout_s=4.0)
    try:
        worker = rollouts._workers[0]
        # (asked before the rollouts: an actor answers its calls in order, after any rollout in progress)
        pid = rollouts._ray.get(worker.actor.pid.remote())
        rollouts.next(policy, critic)  # the first rollout arrives; the second is now being collected
        os.kill(pid, signal.SIGKILL if fault == "killed" else signal.SIGSTOP)
        started = time.monotonic()
        with pytest.raises(WorkerError, match="died" if fault == "killed" else "sent nothing in 4 s"):
            rollouts.next(policy, critic)
        assert time.monotonic() - started < 15  # noticed within seconds, not never
        deadline = time.monotonic() + 10
        while _alive(pid) and time.monotonic() < deadline:  # Ray kills its actor asynchronously
            time.sleep(0.2)
        assert not _alive(pid)  # the hung worker was stopped, not left behind
    finally:
        rollouts.close()
    rollouts.close()  # again: nothing to do, and no Ray call (one would start a new local Ray here)
    assert not rollouts._ray.is_initialized()


def test_ppo_with_two_rollout_workers_runs_end_to_end(smoke_base, tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "vla_razor.cli",
        "finetune",
        "--algo",
        "ppo",
        "--smoke",
        f"runs_dir={tmp_path}",
        f"base={smoke_base}/base-smoke/policy",
        "name=async",
        "rollout_workers=2",
        "total_env_steps=400",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    import json

    records = [json.loads(line) for line in (tmp_path / "async" / "metrics.jsonl").read_text().splitlines()]
    iterations = [r for r in records if "kl/forward" in r]
    assert len(iterations) >= 3 and iterations[-1]["env_steps"] >= 400
    assert iterations[-1]["ppo/policy_updated"] == 1.0 and iterations[-1]["kl/forward"] > 0
    # decoupled clip: pi_prox / pi_behaviour is exactly 1 until the learner's first policy update
    # (iteration 2, after one critic warm-up iteration), and differs from 1 on the rollout acted with the
    # weights before it
    weights = [r["ppo/behaviour_weight"] for r in iterations]
    assert weights[0] == pytest.approx(1.0, abs=1e-4) and weights[1] == pytest.approx(1.0, abs=1e-4)
    assert abs(weights[2] - 1.0) > 1e-4 and all(0 < w <= 2.0 for w in weights)
    assert (tmp_path / "async" / "policy" / "model.safetensors").exists()


@pytest.mark.slow
def test_rollout_actors_join_a_ray_cluster_at_its_address():
    """A Ray head started apart from this process (as on a cluster): the actors are placed through
    ``ray_address`` and the rollouts come back as with a local Ray."""
    import os
    import shutil
    import signal
    import socket
    import tempfile
    import time
    from pathlib import Path

    ray_cli = Path(sys.executable).parent / "ray"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ray_tmp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # Ray's socket paths must stay under 108 bytes
    import secrets

    # Ray 2.60's token authentication (the head and every driver share the token), in a short temp dir.
    cluster = {"RAY_TMPDIR": ray_tmp, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    env = {**os.environ, **cluster}
    start = [str(ray_cli), "start", "--head", f"--port={port}", "--num-cpus=2", "--include-dashboard=false"]
    start += ["--disable-usage-stats", "--block"]
    # In a process group of its own, stopped by signalling that group: `ray stop` would stop every Ray on
    # the machine (a sweep's, another test's), and a driver whose Ray is stopped under it exits its process.
    log = Path(ray_tmp) / "head.log"
    with open(log, "w") as out:
        head = subprocess.Popen(start, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    # The learner is a fresh process, as on a cluster (a driver that ran a local Ray before keeps its state).
    driver = f"""
import ray, torch
from tests.test_rollout_worker import TINY, _log_probs_under, _spec
from vla_razor.policies import make_policy
from vla_razor.policies.critic import CriticConfig, ValueCritic
from vla_razor.rl.rollout_worker import OverlappedRollouts
policy = make_policy("flow", TINY, embed_language=False)
critic = ValueCritic(CriticConfig(hidden=32), embed_language=False)
rollouts = OverlappedRollouts(_spec(), policy, critic, workers=2, ray_address="127.0.0.1:{port}")
try:
    address = ray.get_runtime_context().gcs_address
    rollout = rollouts.next(policy, critic)
finally:
    rollouts.close()
assert address.endswith(":{port}"), address  # the cluster, not a new local Ray
assert rollout.chains.shape == (3, 2, 3, 4, 7)
assert torch.allclose(_log_probs_under(policy, rollout), rollout.flat_log_probs(), atol=1e-4)
print("rollout from the cluster at", address)
"""
    try:
        deadline = time.monotonic() + 180
        while "Ray runtime started" not in log.read_text() and head.poll() is None:
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)
        assert "Ray runtime started" in log.read_text(), log.read_text()[-3000:]
        done = subprocess.run(
            [sys.executable, "-c", driver], capture_output=True, text=True, timeout=300, env=env, cwd=ROOT
        )
        assert done.returncode == 0 and "rollout from the cluster" in done.stdout, done.stderr[-3000:]
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()
        shutil.rmtree(ray_tmp, ignore_errors=True)


class _TensorInterface:
    """A CPU vector env behind the GPU backend's interface: torch tensors in and out, and a ``device``."""

    def __init__(self, env):
        self.env, self.device = env, torch.device("cpu")

    def step(self, actions):
        assert isinstance(actions, torch.Tensor)  # the GPU backend is handed tensors, never numpy
        obs, reward, terminated, truncated, info = self.env.step(actions.numpy())
        out = {
            "success": torch.as_tensor(info["success"]),
            "chunk_steps": torch.as_tensor(info["chunk_steps"]),
        }
        if "final_obs" in info:
            out["final_obs"] = _tensors(info["final_obs"])
        flags = torch.as_tensor(terminated), torch.as_tensor(truncated)
        return _tensors(obs), torch.as_tensor(reward), *flags, out


def _tensors(obs: dict) -> dict:
    return {k: torch.as_tensor(v) for k, v in obs.items()}


def test_a_rollout_reads_the_gpu_backends_tensors_like_the_cpu_backends_arrays():
    from vla_razor.envs import make_vec_env
    from vla_razor.rl.rollout import collect

    torch.manual_seed(0)
    policy = make_policy("flow", TINY, embed_language=False).eval()
    critic = ValueCritic(CriticConfig(hidden=32), embed_language=False)
    rollouts = []
    for wrap in (None, _TensorInterface):
        # 2-chunk episodes: the 5 decisions end episodes by their time limit (bootstrapped from final_obs)
        env = make_vec_env("PickCube", num_envs=2, chunk_size=4, max_episode_steps=8, backend="cpu", seed=3)
        try:
            torch.manual_seed(
                0
            )  # ManiSkill draws the episodes after an auto-reset from torch's global stream
            obs, _ = env.reset()
            args = (_TensorInterface(env), policy, _tensors(obs)) if wrap else (env, policy, obs)
            rollout, _ = collect(*args, 5, torch.Generator().manual_seed(0), critic, gamma=0.9)
        finally:
            env.close()
        rollouts.append(rollout)
    arrays, tensors = rollouts
    assert arrays.dones.sum() >= 4 and (arrays.bootstrap != 0).any()  # the truncation path ran
    for field in ("chains", "log_probs", "rewards", "bootstrap", "dones"):
        assert torch.equal(getattr(arrays, field), getattr(tensors, field)), field
    assert all(torch.equal(arrays.obs[k], tensors.obs[k]) for k in arrays.obs)
    assert (arrays.env_steps, arrays.episode_successes) == (tensors.env_steps, tensors.episode_successes)
