"""`vla-razor pretrain`: multi-task behaviour cloning of the base policy on the suite's demonstrations.

Many demonstrations of every prior task and a few of the new task (pi_RL's "few-shot SFT" start),
so the base policy is good at the prior tasks and mediocre at the new one: the starting point of
every fine-tuning experiment. Reads top to bottom: data, policy, optimizer, one training loop with
periodic evaluation and checkpoints; resumable.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from tqdm import tqdm

from vla_razor.errors import ConfigError, DatasetError

from . import seeding as streams
from .atomic import write_json
from .config import NonNegativeFloat, NonNegativeInt, PositiveInt
from .data.lerobot import LeRobotSource
from .training import TrainerConfig, TrainingLoop
from .training.schedules import lr_scheduler


@dataclass
class PretrainConfig(LeRobotSource, TrainerConfig):
    """Robot pretraining's config: the shared trainer fields (``eval_every`` and ``checkpoint_every`` count
    gradient steps; ``lr`` is AdamW's peak, after a linear warm-up, before a cosine decay to 0), where a
    LeRobotDataset is read from, and pretraining's own below."""

    defaults = dict(
        name="base",
        lr=3e-4,
        eval_every=10_000,
        eval_episodes=10,
        final_eval_episodes=30,
        checkpoint_every=1_000,
    )

    suite: str = "default"
    """Task suite: prior tasks get ``prior_demos`` demonstrations each, the new task ``new_demos``."""
    data: Literal["demos", "lerobot"] = "demos"
    """'demos' (the demonstration store, generated on demand) or 'lerobot' (a local LeRobotDataset at
    ``lerobot_root``: its episodes of the suite's tasks, up to ``prior_demos`` / ``new_demos`` each)."""
    demo_dir: str = "runs/demos"
    """Shared demonstration store (generated on demand)."""
    prior_demos: PositiveInt = 50
    """Demonstrations per prior task."""
    new_demos: NonNegativeInt = 5
    """Demonstrations of the new task (few-shot)."""
    family: str = "flow"
    """Policy family: flow, diffusion or gaussian."""
    policy: dict[str, Any] = field(
        default_factory=lambda: {"chunk_size": 8, "num_steps": 5, "hidden": 128, "num_layers": 2}
    )
    """Fields of the family's config (e.g. hidden, num_layers, chunk_size, num_steps)."""
    steps: PositiveInt = 30_000
    """Gradient steps (the loop's iterations)."""
    batch_size: PositiveInt = 256
    """Samples (observation, action chunk) per step."""
    warmup_steps: NonNegativeInt = 500
    """Linear warm-up steps."""
    weight_decay: NonNegativeFloat = 1e-4
    """AdamW weight decay."""

    def __post_init__(self):
        super().__post_init__()
        if self.data == "lerobot" and not self.lerobot_root:
            raise ValueError("data: lerobot needs lerobot_root=<a local LeRobotDataset directory>")


SMOKE = dict(
    name="base-smoke",
    suite="smoke",
    prior_demos=2,
    new_demos=1,
    steps=20,
    batch_size=32,
    warmup_steps=5,
    eval_every=0,
    eval_episodes=2,
    final_eval_episodes=2,
    checkpoint_every=10,
    policy={"chunk_size": 8, "num_steps": 3, "hidden": 32, "num_layers": 1},
)


def _suite_episodes(cfg: PretrainConfig, suite) -> dict[str, list]:
    """Each suite task's successful demonstrations, from the store or from a LeRobotDataset."""
    from vla_razor.data.lerobot import episodes_by_task, load_lerobot_episodes
    from vla_razor.envs.demos import generate_demos, load_demos

    if cfg.data == "demos":
        out = {}
        for task in suite.tasks:
            wanted = cfg.new_demos if task == suite.new_task else cfg.prior_demos
            if not wanted:  # new_demos=0: the base never sees the new task (zero-shot)
                continue
            index = generate_demos(task, wanted, out_dir=cfg.demo_dir, seed=cfg.seed, progress=True)
            out[task] = load_demos(index.path, successful_only=True)
        return out
    found = episodes_by_task(
        [
            ep
            for ep in load_lerobot_episodes(cfg.lerobot_root, cfg.lerobot_keys, cfg.lerobot_tasks)
            if ep.success
        ]
    )
    if not set(found) & set(suite.tasks):
        raise DatasetError(
            f"{cfg.lerobot_root} holds episodes of {sorted(found)}, none a task of suite {cfg.suite!r} "
            f"({', '.join(suite.tasks)})"
        )
    for task in sorted(set(found) - set(suite.tasks)):
        tqdm.write(f"{cfg.lerobot_root}: {len(found[task])} episode(s) of {task} left out (not in the suite)")
    return {task: found.get(task, []) for task in suite.tasks}


def load_dataset(cfg: PretrainConfig, suite, chunk_size: int):
    from vla_razor.data import ChunkDataset
    from vla_razor.envs import get_task

    episodes = []
    for task, found in _suite_episodes(cfg, suite).items():
        wanted = cfg.new_demos if task == suite.new_task else cfg.prior_demos
        # A demo longer than the task's horizon teaches a pace the policy cannot finish in time
        # (e.g. a 702-step LiftPegUpright plan against a 220-step horizon): leave it out, say so.
        horizon = get_task(task).max_episode_steps
        usable = [ep for ep in found if ep.length <= horizon]
        dropped = len(found) - len(usable)
        if dropped:
            tqdm.write(f"{task}: {dropped} demo(s) longer than the {horizon}-step horizon left out")
        episodes += usable[:wanted]
    return ChunkDataset.from_episodes(episodes, chunk_size)


def pretrain(cfg: PretrainConfig, resume: bool = False) -> Path:
    """Train the base; a run directory that exists is resumed from its last checkpoint."""
    from vla_razor.envs import load_suite
    from vla_razor.evaluation import evaluate, format_table
    from vla_razor.policies.factory import make_policy

    suite = load_suite(cfg.suite)
    if cfg.policy.get("world", suite.world) != suite.world:
        raise ConfigError(
            f"policy.world={cfg.policy['world']!r} but suite {suite.name} is a {suite.world} suite: leave "
            "policy.world out (it follows the suite)"
        )
    loop = TrainingLoop(cfg, cfg.name, resume=True)
    run = loop.run
    policy = make_policy(cfg.family, {**cfg.policy, "world": suite.world})
    data = load_dataset(cfg, suite, policy.config.chunk_size)
    policy.set_normalization(data.obs, data.actions)
    optimizer = torch.optim.AdamW(policy.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = lr_scheduler(optimizer, "cosine", cfg.steps, cfg.warmup_steps)
    generator = torch.Generator().manual_seed(streams.minibatches(cfg.seed))
    loop.restore({"policy": policy}, {"optimizer": optimizer, "scheduler": scheduler}, generator, unit="step")
    roles = {t: ("new" if t == suite.new_task else "prior") for t in suite.tasks}

    def evaluate_and_log(episodes: int) -> dict:
        results = evaluate(policy, suite.tasks, episodes, seed=cfg.eval_seed)
        prior = [results[t].rate for t in suite.prior_tasks]
        run.log(
            loop.iteration,
            {
                **{f"success/{t}": r.rate for t, r in results.items()},
                "success/prior_mean": sum(prior) / len(prior),
                "success/new_task": results[suite.new_task].rate,
            },
        )
        tqdm.write(f"step {loop.iteration}\n{format_table(results, roles)}")
        return results

    policy.train()
    loop.start(cfg.steps, "step", desc=f"pretrain {cfg.family}")
    last_log = time.perf_counter()
    try:
        while not loop.done:
            before = loop.progress_count
            lr = scheduler.get_last_lr()[0]
            index = torch.randint(0, len(data), (cfg.batch_size,), generator=generator)
            obs, actions = data.batch(index)
            loss = policy.bc_loss(obs, actions, generator=generator)
            loop.check_finite(**{"loss/bc": loss})
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
            loop.step()
            postfix = None
            if loop.iteration % 50 == 0 or loop.done:
                now = time.perf_counter()
                run.log(
                    loop.iteration,
                    {
                        "loss/bc": loss.item(),
                        "grad_norm": grad_norm.item(),
                        "lr": lr,
                        "time/steps_per_s": 50 / max(now - last_log, 1e-9),
                    },
                )
                last_log, postfix = now, {"loss": f"{loss.item():.4f}"}
            loop.advance(before, postfix)
            if loop.due(cfg.eval_every):
                evaluate_and_log(cfg.eval_episodes)
            loop.checkpoint_if_due()
    finally:
        loop.close()

    policy.save_pretrained(run.path / "policy")
    results = evaluate_and_log(cfg.final_eval_episodes)
    write_json(
        run.eval / "success.json",
        {
            "suite": suite.name,
            "episodes_per_task": cfg.final_eval_episodes,
            "eval_seed": cfg.eval_seed,
            "demos": data.task_counts,
            "tasks": {t: {**r.as_dict(), "role": roles[t]} for t, r in results.items()},
        },
    )
    run.close()
    print(format_table(results, roles))
    print(f"base policy: {run.path / 'policy'}")
    return run.path
