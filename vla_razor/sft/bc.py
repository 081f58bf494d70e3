"""SFT: behaviour cloning of the new task with the family's ``bc_loss``, measured exactly like RL.

One iteration is ``steps_per_iteration`` gradient steps; after each, the KL to the base is measured on
that iteration's (new-task) training states, and evaluation, logging and checkpoints follow the same
schedule as PPO and GRPO, so RL and SFT runs are directly comparable.

Two data sources:
- ``data: demos``: the new task's demonstrations (ManiSkill motion planning, the shared demo store);
- ``data: rl``: successful rollouts of an RL-fine-tuned policy (``rl_policy``), the paper's "SFT on RL
  data" control: same data distribution as RL, trained by SFT.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from tqdm import tqdm

from vla_razor import seeding as streams
from vla_razor.data.lerobot import LeRobotSource, load_lerobot_episodes
from vla_razor.errors import DatasetError, NoRLDataError
from vla_razor.harness import RobotFinetuneHarness, RobotTaskFields
from vla_razor.progress import progress
from vla_razor.training import FinetuneFields, TrainerConfig
from vla_razor.training.schedules import lr_scheduler

from ..config import NonNegativeFloat, PositiveInt


@dataclass
class SFTConfig(LeRobotSource, RobotTaskFields, FinetuneFields, TrainerConfig):
    """Behaviour cloning's config: the shared trainer fields, the fine-tuning and robot groups, where a
    LeRobotDataset is read from, and SFT's own below (the optimizer is AdamW)."""

    defaults = dict(lr=1e-4, checkpoint_every=5)

    lr_schedule: Literal["constant", "cosine"] = "constant"
    """'constant', or 'cosine': from ``lr`` down to 0 over all ``iterations x steps_per_iteration`` steps
    (late evaluations then see a policy that has settled)."""
    iterations: PositiveInt = 100
    """Iterations (each ``steps_per_iteration`` gradient steps, then KL tracking)."""
    steps_per_iteration: PositiveInt = 20
    """Gradient steps per iteration."""
    batch_size: PositiveInt = 64
    """(observation, action chunk) samples per gradient step."""
    weight_decay: NonNegativeFloat = 0.0
    """AdamW weight decay."""
    data: Literal["demos", "rl", "lerobot"] = "demos"
    """'demos' (demonstrations of the new task), 'rl' (successful rollouts of ``rl_policy``) or 'lerobot'
    (the new task's successful episodes in the LeRobotDataset at ``lerobot_root``, up to ``demos``)."""
    demos: PositiveInt = 50
    """Demonstrations of the new task (data: demos)."""
    demo_dir: str = "runs/demos"
    """Shared demonstration store (generated on demand)."""
    rl_policy: str = ""
    """data: rl: the RL-fine-tuned policy directory (e.g. runs/ppo-PickCube/policy)."""
    rl_episodes: PositiveInt = 64
    """data: rl: rollouts to collect (only successful ones are kept)."""

    def __post_init__(self):
        super().__post_init__()
        if self.device != "cpu":
            raise ValueError(
                f"device={self.device!r}: SFT runs on the CPU here; the GPU path is PPO's (docs/scaling.md)"
            )
        if self.kl_penalty.kind != "none":
            raise ValueError(
                "kl_penalty: the robot SFT loss has no penalty toward the base (PPO, GRPO and the LLM "
                "track's SFT do); leave kl_penalty.kind none"
            )
        if self.data == "lerobot" and not self.lerobot_root:
            raise ValueError("data: lerobot needs lerobot_root=<a local LeRobotDataset directory>")
        if self.data == "rl" and not self.rl_policy:
            raise ValueError("data: rl needs rl_policy=<an RL run's policy directory>")


def demo_dataset(cfg: SFTConfig, task: str, chunk_size: int):
    from vla_razor.data import ChunkDataset
    from vla_razor.envs.demos import generate_demos, load_demos

    if cfg.data == "lerobot":
        found = load_lerobot_episodes(cfg.lerobot_root, cfg.lerobot_keys, cfg.lerobot_tasks)
        episodes = [ep for ep in found if ep.task == task and ep.success][: cfg.demos]
        if not episodes:
            raise DatasetError(
                f"{cfg.lerobot_root} holds no successful episode of {task} "
                f"(it has: {sorted({ep.task for ep in found})})"
            )
        return ChunkDataset.from_episodes(episodes, chunk_size)
    index = generate_demos(task, cfg.demos, out_dir=cfg.demo_dir, seed=cfg.seed, progress=True)
    episodes = load_demos(index.path, successful_only=True)[: cfg.demos]
    return ChunkDataset.from_episodes(episodes, chunk_size)


@torch.no_grad()
def rl_dataset(cfg: SFTConfig, task: str, chunk_size: int):
    """(observation, chunk) pairs of the successful episodes of ``cfg.rl_policy``, sampled stochastically
    as during RL training (the data RL learned from)."""
    from vla_razor.data import ChunkDataset
    from vla_razor.envs import make_vec_env
    from vla_razor.policies import ChainPolicy
    from vla_razor.policies.encoders import as_tensor_obs

    teacher = ChainPolicy.from_pretrained(cfg.rl_policy).eval()
    if teacher.config.chunk_size != chunk_size:
        raise ValueError(
            f"{cfg.rl_policy} acts in chunks of {teacher.config.chunk_size}, the base in {chunk_size}"
        )
    n = cfg.rl_episodes
    env = make_vec_env(task, num_envs=n, backend="cpu", chunk_size=chunk_size)
    generator = torch.Generator().manual_seed(cfg.seed)
    obs, _ = env.reset(seed=[streams.teacher_episodes(cfg.seed) + i for i in range(n)])
    alive, success = np.ones(n, bool), np.zeros(n, bool)
    pairs: list[tuple[int, dict, torch.Tensor]] = []
    bar = progress(total=n, desc=f"rollouts of {cfg.rl_policy}", unit="ep")
    try:
        while alive.any():
            tensor_obs = as_tensor_obs(obs)
            actions, _ = teacher.sample(tensor_obs, "stochastic", generator=generator)
            for i in np.flatnonzero(alive):
                pairs.append((i, {k: v[i] for k, v in tensor_obs.items()}, actions[i]))
            obs, _, terminated, truncated, info = env.step(actions.numpy())
            done = (terminated | truncated) & alive
            success[done] = np.asarray(info["success"])[done]
            alive &= ~done
            bar.update(int(done.sum()))
    finally:
        bar.close()
        env.close()
    kept = [(o, a) for i, o, a in pairs if success[i]]
    if not kept:
        raise NoRLDataError(f"{cfg.rl_policy} succeeded in none of {n} episodes of {task}: no data to clone")
    tqdm.write(
        f"SFT on RL data: {int(success.sum())}/{n} successful episodes, "
        f"{len(kept)} (observation, chunk) pairs"
    )
    obs = {k: torch.stack([o[k] for o, _ in kept]) for k in kept[0][0]}
    return ChunkDataset(obs, torch.stack([a for _, a in kept]).float(), {task: int(success.sum())})


def train(cfg: SFTConfig, resume: bool = False):
    ft = RobotFinetuneHarness(cfg, "sft" if cfg.data == "demos" else "sft-rl", resume=resume)
    policy = ft.policy
    chunk = policy.config.chunk_size
    # demonstrations cover a policy's whole prediction horizon (a LeRobot policy's can exceed the chunk it
    # executes)
    horizon = getattr(policy.config, "horizon", chunk)
    data = rl_dataset(cfg, ft.task, chunk) if cfg.data == "rl" else demo_dataset(cfg, ft.task, horizon)
    optimizer = torch.optim.AdamW(policy.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = lr_scheduler(optimizer, cfg.lr_schedule, cfg.iterations * cfg.steps_per_iteration)
    generator = torch.Generator().manual_seed(streams.minibatches(cfg.seed))
    ft.restore({"policy": policy}, {"optimizer": optimizer, "scheduler": scheduler}, generator)

    ft.start(cfg.iterations, "iteration")
    try:
        while not ft.done:
            started, before = time.perf_counter(), ft.progress_count
            policy.train()
            losses, states = [], []
            for j in range(cfg.steps_per_iteration):
                lr = scheduler.get_last_lr()[0]
                index = torch.randint(0, len(data), (cfg.batch_size,), generator=generator)
                obs, actions = data.batch(index)
                loss = policy.bc_loss(obs, actions, generator=generator)
                ft.check_finite(**{"loss/bc": loss})
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.max_grad_norm)
                optimizer.step()
                scheduler.step()
                losses.append(float(loss.detach()))
                states.append(obs)
            ft.step()
            iteration_states = {k: torch.cat([s[k] for s in states]) for k in states[0]}
            metrics = {
                "loss/bc": sum(losses) / len(losses),
                "lr": lr,
                "sft/samples_seen": ft.iteration * cfg.steps_per_iteration * cfg.batch_size,
            }
            metrics.update(ft.track_kl(iteration_states))
            metrics["time/iteration_s"] = time.perf_counter() - started
            ft.end_iteration(metrics, before)
    finally:
        ft.close()
    return ft.finish()
