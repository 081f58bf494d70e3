"""The robot track's fine-tuning harness: PPO, GRPO and SFT on a chain policy in ManiSkill.

What every fine-tuning run shares (frozen base, KL every iteration, evaluation, snapshots, checkpoints,
the NaN guard, ``final.json``) is :mod:`vla_razor.training`; this module is the robot's adapter to it:
the policy from a ``save_pretrained`` directory, evaluation on the suite's tasks (with videos), the chain
KL to the base (:mod:`vla_razor.base_kl`) and the final evaluation through the retention code.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .base_kl import KLPenalty, freeze, measure_kl_to_base
from .config import Device, NonNegativeFloat, NonNegativeInt
from .errors import CheckpointError, ConfigError
from .evaluation import check_world, deterministic_actor, evaluate_task
from .runtime import tune_malloc
from .training import FinetuneFields, FinetuneHarness, TrainerConfig


@dataclass
class RobotTaskFields:
    """Fields every robot fine-tuning trainer adds: the suite and task, the retention and video budgets, the
    exploration noise and the device."""

    suite: str = "default"
    """Task suite: fine-tune on its new task, measure retention on its prior tasks."""
    task: str = ""
    """Task to fine-tune on (default: the suite's new task)."""
    retention_episodes: NonNegativeInt = 10
    """Episodes per prior task in each periodic evaluation (0: skip retention)."""
    video_episodes: NonNegativeInt = 2
    """Episodes per task recorded to ``videos/`` at each evaluation (0: no videos)."""
    periodic_videos: bool = True
    """Record videos at the periodic evaluations too (false: only the final evaluation's, which sweeps
    prefer: rendering is a large share of a short run's time)."""
    noise_level: NonNegativeFloat = 0.0
    """Flow-SDE exploration noise while fine-tuning, for the policy and the frozen base alike (0: the base's
    own). It sets how often stochastic rollouts succeed, so how much PPO has to reinforce."""
    device: Device = "cpu"
    """Where the policy, its frozen base and PPO's critic run: 'cpu', 'cuda' (under torchrun, each rank's
    own GPU, ``cuda:$LOCAL_RANK``), 'cuda:N' or 'auto' (a GPU when torch sees one). Evaluations still step
    the CPU simulator."""


def resolve_device(name: str):
    """``cpu``, ``cuda:N``, or ``cuda``: this rank's GPU under torchrun (``LOCAL_RANK``), else GPU 0."""
    import torch

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ConfigError(f"device={name!r} but torch sees no CUDA device (torch {torch.__version__})")
    device = torch.device(name if ":" in name else f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}")
    torch.cuda.set_device(device)
    return device


class RobotFinetuneHarness(FinetuneHarness):
    """The robot track's fine-tuning harness: a chain policy from a ``save_pretrained`` directory, the
    suite's tasks in ManiSkill, the chain KL to the base. The algorithm's loop owns the updates."""

    cfg: RobotTaskFields | FinetuneFields | TrainerConfig
    """The algorithm's config: it extends all three (PPO's, GRPO's, SFT's)."""

    def __init__(self, cfg, algo: str, resume: bool = False, data_parallel_ok: bool = False):
        from vla_razor.envs import get_task, load_suite
        from vla_razor.envs.video import require_video_support
        from vla_razor.policies import ChainPolicy

        self.suite = load_suite(cfg.suite)
        self.task = get_task(cfg.task).name if cfg.task else self.suite.new_task
        self.prior_tasks = [t for t in self.suite.prior_tasks if t != self.task]
        # a LeRobot policy (base=lerobot:/path, or any directory LeRobot saved) is detected from its
        # config.json
        self.base_dir = base_dir = Path(cfg.base.removeprefix("lerobot:"))
        if not (base_dir / "config.json").is_file():
            raise CheckpointError(
                f"base policy {base_dir} not found: pass base=runs/<pretrain run>/policy "
                "(vla-razor pretrain writes one) or any directory written by save_pretrained"
            )
        self.device = resolve_device(cfg.device)  # before the run directory: a bad device leaves none behind
        # autograd's large buffers stay mapped between minibatches (the LLM track's small decoding
        # tensors run slower with it: not for every loop)
        tune_malloc()
        # the base before the run directory: a base that does not load, or does not take the settings,
        # leaves no directory behind
        self.policy = ChainPolicy.from_pretrained(base_dir, device=self.device)
        for task in [self.task, *self.prior_tasks]:
            check_world(self.policy, task)
        if cfg.video_episodes:  # before any training: a world without videos fails now, not at the end
            require_video_support(self.task)
        if cfg.noise_level:
            set_noise_level(self.policy, cfg.noise_level)
        super().__init__(
            cfg, cfg.name or f"{algo}-{self.task}", resume=resume, data_parallel_ok=data_parallel_ok
        )
        self.base = freeze(self.policy)  # after the noise change: every KL compares like with like
        self.begin(algo)

    def make_penalty(self) -> KLPenalty:
        return KLPenalty(self.cfg.kl_penalty)

    @property
    def retention_episodes(self) -> int:
        return self.cfg.retention_episodes

    @property
    def eval_suite(self):
        """The suite evaluations use: this run's task as the new task, the suite's other tasks as priors."""
        from vla_razor.envs.suites import Suite

        return Suite(self.suite.name, self.task, self.prior_tasks)

    def start(self, total: int, unit: str = "iteration", desc: str = ""):
        return super().start(total, unit, desc or f"{self.algo} {self.task}")

    # -- the track's part ------------------------------------------------------------------------
    def evaluate_tasks(self, episodes: dict[str, int], seed: int | None = None) -> dict:
        seed = self.cfg.eval_seed if seed is None else seed
        return {t: evaluate_task(self.policy, t, n, seed=seed) for t, n in episodes.items()}

    def measure_kl(self, states, seed: int) -> dict[str, float]:
        from vla_razor.policies.encoders import as_tensor_obs

        # several learner ranks each measure their share of the states (the harness averages them)
        count = max(2, self.cfg.kl_states // self.dp.world)
        return measure_kl_to_base(
            self.base, self.policy, as_tensor_obs(states, self.device), count, seed=seed
        )

    def save_policy(self, directory: Path) -> Path:
        return self.policy.save_pretrained(directory)

    def final_result(self, policy_dir: Path):
        from vla_razor.retention import evaluate_suite

        cfg = self.cfg
        return evaluate_suite(
            policy_dir, self.eval_suite, cfg.final_eval_episodes, cfg.eval_seed, base_dir=self.base_dir
        )

    def record_videos(self, tag: str, tasks: list[str]) -> None:
        from vla_razor.envs.video import record_episodes

        if not self.cfg.video_episodes or (tag != "final" and not self.cfg.periodic_videos):
            return
        for task in tasks:
            record_episodes(
                task,
                deterministic_actor(self.policy),
                self.run.videos / f"{tag}_{task}.mp4",
                num_episodes=self.cfg.video_episodes,
                seed=self.cfg.eval_seed,
            )


def set_noise_level(policy, level: float) -> None:
    """Set a Flow-SDE policy's exploration noise (it is saved with the policy's config)."""
    if not hasattr(policy.config, "noise_level") or getattr(policy.config, "noise_method", "sde") != "sde":
        raise ConfigError(
            f"noise_level applies to Flow-SDE policies; this base is a {type(policy).__name__} "
            f"({getattr(policy.config, 'noise_method', 'no noise_level')}): pass noise_level=0 (a diffusion "
            "policy explores with its own DDPM noise)"
        )
    policy.config.noise_level = float(level)
