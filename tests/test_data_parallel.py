"""Data-parallel learners (torchrun, gloo on this CPU): one PPO update on 2 ranks, each holding half the
sub-envs of a real rollout, leaves the same parameters as the update on 1 rank with the whole batch; a
2-rank PPO run launched by torchrun writes one run directory from rank 0, reduces its metrics over the
ranks, and resumes after it is killed."""

import copy
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

from vla_razor.errors import ConfigError
from vla_razor.policies import make_policy
from vla_razor.policies.critic import CriticConfig, ValueCritic
from vla_razor.rl.ppo import PPOConfig, UpdateBatch, update
from vla_razor.rl.rollout import gae
from vla_razor.rl.rollout_worker import InlineRollouts, RolloutSpec
from vla_razor.rundir import RunDir
from vla_razor.training.distributed import DataParallel

TINY = {"hidden": 32, "num_layers": 1, "num_heads": 4, "chunk_size": 4, "num_steps": 2}
ENVS, DECISIONS = 4, 4


def _models(seed=0):
    torch.manual_seed(seed)
    policy = make_policy("flow", TINY, embed_language=False)
    critic = ValueCritic(CriticConfig(hidden=32), embed_language=False)
    optimizer = torch.optim.Adam(
        [{"params": policy.parameters(), "lr": 1e-3}, {"params": critic.parameters(), "lr": 1e-3}], eps=1e-5
    )
    return policy, critic, optimizer


def _cfg():
    # several epochs and minibatches, advantage normalisation, no early stop: every step must agree
    return PPOConfig(
        update_epochs=2, num_minibatches=4, target_kl=0.0, num_envs=ENVS, num_decisions=DECISIONS
    )


def _rollout_tensors(policy, critic) -> dict[str, torch.Tensor]:
    """A real PickCube rollout of ENVS sub-envs, with its advantages: ``[T, N, ...]`` tensors."""
    spec = RolloutSpec(
        "PickCube", ENVS, 4, "sparse", "sync", DECISIONS, 0.9, 1.0, reset_seed=3, sampling_seed=4
    )
    rollouts = InlineRollouts(spec, torch.Generator().manual_seed(1))
    try:
        rollout = rollouts.next(policy, critic)
    finally:
        rollouts.close()
    with torch.no_grad():
        values = critic(rollout.flat_obs()).reshape(DECISIONS, ENVS)
        # a rollout of 4 decisions rarely holds a success: give the advantages some spread
        rewards = rollout.rewards + torch.linspace(0, 1, DECISIONS * ENVS).reshape(DECISIONS, ENVS)
        advantages, returns = gae(rewards, values, rollout.dones, critic(rollout.next_obs), 0.9, 0.95)
    out = {f"obs.{k}": v for k, v in rollout.obs.items()}
    out.update(points=rollout.chains, anchor=rollout.log_probs, advantages=advantages, returns=returns)
    return out


def _batch(tensors, rank, world) -> UpdateBatch:
    """Rank ``rank``'s block of sub-envs, flattened decision-major as its own rollout would be."""
    size = ENVS // world
    block = {k: v[:, rank * size : (rank + 1) * size].flatten(0, 1) for k, v in tensors.items()}
    return UpdateBatch(
        obs={k[4:]: v for k, v in block.items() if k.startswith("obs.")},
        points=block["points"],
        clip_anchor=block["anchor"],
        advantages=block["advantages"],
        returns=block["returns"],
        num_decisions=DECISIONS,
        local_envs=size,
    )


def _update(policy, critic, optimizer, batch, dp, update_policy=True):
    generator = torch.Generator().manual_seed(11)
    return update(policy, critic, optimizer, batch, _cfg(), generator, update_policy, dp=dp)


def _rank_main(rank, world, store, tensors_file, out_dir):
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        policy, critic, optimizer = _models()
        dp = DataParallel(rank=rank, world=world)
        batch = _batch(load_file(tensors_file), rank, world)
        # a critic-only update first (the warm-up), then two full ones: the optimizer's state must agree too
        _update(policy, critic, optimizer, batch, dp, update_policy=False)
        stats = [_update(policy, critic, optimizer, batch, dp)[0] for _ in range(2)]
        state = {f"policy.{k}": v for k, v in policy.state_dict().items()}
        state.update({f"critic.{k}": v for k, v in critic.state_dict().items()})
        state["stats"] = torch.tensor([list(s.values()) for s in stats], dtype=torch.float64)
        save_file({k: v.contiguous() for k, v in state.items()}, f"{out_dir}/rank{rank}.safetensors")
    finally:
        dist.destroy_process_group()


def test_one_update_on_two_ranks_equals_one_update_on_one_rank_with_the_same_batch(tmp_path):
    policy, critic, optimizer = _models()
    tensors = _rollout_tensors(policy, critic)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp_path / "batch.safetensors"))
    before = copy.deepcopy(policy.state_dict())

    single = DataParallel()
    full = _batch(tensors, 0, 1)
    _update(policy, critic, optimizer, full, single, update_policy=False)
    stats = [_update(policy, critic, optimizer, full, single)[0] for _ in range(2)]

    mp.spawn(
        _rank_main,
        args=(2, str(tmp_path / "store"), str(tmp_path / "batch.safetensors"), str(tmp_path)),
        nprocs=2,
        join=True,
    )
    ranks = [load_file(str(tmp_path / f"rank{r}.safetensors")) for r in range(2)]
    moved = max(float((policy.state_dict()[k] - before[k]).abs().max()) for k in before)
    assert moved > 1e-3  # the updates changed the policy (so the equality below says something)
    for prefix, module in (("policy.", policy), ("critic.", critic)):
        for name, value in module.state_dict().items():
            for rank in ranks:
                torch.testing.assert_close(rank[prefix + name], value, rtol=1e-5, atol=1e-6)
    # the ranks hold identical weights, and their reduced statistics are the single rank's
    for name in ranks[0]:
        torch.testing.assert_close(ranks[0][name], ranks[1][name], rtol=0, atol=0)
    expected = torch.tensor([list(s.values()) for s in stats], dtype=torch.float64)
    torch.testing.assert_close(ranks[0]["stats"], expected, rtol=1e-4, atol=1e-6)


def test_data_parallel_shards_and_refuses_what_it_cannot_split():
    dp = DataParallel(rank=1, world=2)
    assert dp.shard(32) == 16 and not dp.main and dp.active
    with pytest.raises(ConfigError, match="multiple of the number of learner ranks"):
        dp.shard(5)
    # one rank: the metrics pass through untouched
    metrics = {"kl/forward": 1.5, "kl/forward_stderr": 0.1, "kl/states": 8}
    assert DataParallel().mean_metrics(metrics) == metrics


def test_loops_without_data_parallel_learners_refuse_several_ranks(monkeypatch, tmp_path):
    from vla_razor.training import TrainerConfig, TrainingLoop

    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="data-parallel learners are PPO's"):
        TrainingLoop(TrainerConfig(runs_dir=str(tmp_path)), "sft-run")


def _torchrun(root, base, *extra):
    port = 29500 + os.getpid() % 1000
    launcher = f"-m torch.distributed.run --nproc-per-node 2 --master-port {port}".split()
    cmd = [
        sys.executable,
        *launcher,
        *"-m vla_razor.cli finetune --algo ppo --smoke".split(),
        f"runs_dir={root}",
        f"base={base}",
        "name=dp",
        "num_envs=4",
        "num_decisions=4",
        "total_env_steps=640",  # 5 or more iterations of 4 envs x 4 chunks of 8 actions
        "checkpoint_every=1",
        "threads=1",
        *extra,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True
    )


def test_a_two_rank_run_writes_from_rank_0_reduces_its_metrics_and_resumes_after_a_kill(smoke_base, tmp_path):
    base = smoke_base / "base-smoke" / "policy"
    run = RunDir(tmp_path / "dp")
    first = _torchrun(tmp_path, base)
    deadline = time.time() + 600
    while time.time() < deadline and first.poll() is None:
        latest = run.latest_checkpoint()
        if latest is not None and int(latest.name.split("_")[1]) >= 2:
            break
        time.sleep(0.5)
    assert first.poll() is None, first.stdout.read()[-3000:]
    # every rank and the launcher at once (torchrun starts its ranks in sessions of their own)
    for process in [*psutil.Process(first.pid).children(recursive=True), psutil.Process(first.pid)]:
        process.send_signal(signal.SIGKILL)
    first.wait()
    killed_at = int(run.latest_checkpoint().name.split("_")[1])
    assert killed_at >= 2

    second = _torchrun(tmp_path, base, "--resume")
    out, _ = second.communicate(timeout=900)
    assert second.returncode == 0, out[-4000:]
    assert f"resuming {run.path} from iteration {killed_at}" in out
    assert out.count("resuming") == 1  # rank 0 alone reports (and writes)
    records = [r for r in run.read_metrics() if "kl/forward" in r]
    assert [r["step"] for r in records] == list(range(1, len(records) + 1)) and len(records) > killed_at
    assert all(r["dist/ranks"] == 2 for r in records)
    # env steps count both ranks' sub-envs (one rank's 2 sub-envs take at most 2 x 4 chunks of 8 actions),
    # and the KL is measured on both ranks' states
    assert 64 < records[0]["env_steps"] <= 128 and records[-1]["env_steps"] >= 640
    assert all(r["kl/states"] == 8 for r in records)
    assert (run.eval / "final.json").is_file() and (run.path / "policy" / "config.json").is_file()
