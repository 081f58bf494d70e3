"""The training harness: what every fine-tuning run (PPO, GRPO, SFT) shares.

PPO, GRPO and SFT differ in how they update the policy; everything around the update is here, so
the three are measured the same way and are directly comparable:

- the policy starts from a base checkpoint; the base itself is a frozen copy (no grad, eval mode);
- every iteration logs ``kl/forward`` and ``kl/reverse`` to the base on that iteration's new-task
  states (:mod:`vla_razor.base_kl`);
- periodic evaluation on the new task (``success/new_task``) and on every prior task of the suite
  (``retention/<task>``, ``retention/mean``), with videos and a policy snapshot per evaluation;
- checkpoints (policy, critic, optimizer, RNG, counters) that ``--resume`` continues from;
- a NaN or inf in a loss or a KL stops the run, naming the quantity and the iteration, and leaves
  the last good checkpoint in place.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from vla_razor.progress import progress

from .atomic import write_json
from .base_kl import KLPenalty, KLPenaltyConfig, freeze, measure_kl_to_base
from .config import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt
from .errors import CheckpointError, NonFiniteError
from .rundir import RunDir
from .runtime import tune_malloc


@dataclass
class FinetuneConfig:
    """Fields every fine-tuning algorithm shares (each algorithm's config extends this one)."""

    name: str = ""
    """Run directory name under ``runs_dir`` (default: ``<algo>-<task>``)."""
    runs_dir: str = "runs"
    """Where run directories go."""
    base: str = "runs/base/policy"
    """The base policy: a directory written by ``save_pretrained`` (``vla-razor pretrain`` writes ``runs/<name>/policy``)."""
    suite: str = "default"
    """Task suite: fine-tune on its new task, measure retention on its prior tasks."""
    task: str = ""
    """Task to fine-tune on (default: the suite's new task)."""
    seed: NonNegativeInt = 0
    """Seed of environments, sampling and minibatches."""
    lr: PositiveFloat = 3e-6
    """Policy learning rate (Adam). On PickCube from the base, PPO at 1e-5 wiped out every prior task
    within 25 iterations (kl/forward ~3); at 3e-6 they held for 24k env steps (docs/results.md)."""
    max_grad_norm: PositiveFloat = 1.0
    """Global gradient-norm clip."""
    eval_every: NonNegativeInt = 10
    """Iterations between evaluations (new task + retention); 0: only at the end."""
    eval_episodes: PositiveInt = 20
    """New-task evaluation episodes (fixed seeds, deterministic sampling)."""
    retention_episodes: NonNegativeInt = 10
    """Episodes per prior task in each evaluation (0: skip retention)."""
    final_eval_episodes: PositiveInt = 50
    """New-task and prior-task episodes of the final evaluation."""
    video_episodes: NonNegativeInt = 2
    """Episodes per task recorded to ``videos/`` at each evaluation (0: no videos)."""
    periodic_videos: bool = True
    """Record videos at the periodic evaluations too (false: only the final evaluation's, which sweeps
    prefer: rendering is a large share of a short run's time)."""
    eval_seed: NonNegativeInt = 10_000
    """First episode seed of evaluation (disjoint from training seeds)."""
    checkpoint_every: PositiveInt = 5
    """Iterations between checkpoints."""
    kl_states: int = 256
    """New-task states per iteration on which the KL to the base is measured."""
    noise_level: NonNegativeFloat = 0.0
    """Flow-SDE exploration noise while fine-tuning, for the policy and the frozen base alike (0: the base's
    own). The base of docs/results.md succeeds on PullCube in 10% of stochastic episodes at its 0.5, 40% at
    0.2 and 65% at 0.1 (deterministic: 60%): at 0.5 PPO has almost nothing to reinforce."""
    kl_penalty: KLPenaltyConfig = field(default_factory=KLPenaltyConfig)
    """Optional penalty toward the base policy (default none, as in the paper)."""
    threads: NonNegativeInt = 0
    """torch threads (0: torch's default)."""

    def __post_init__(self):
        if self.lr <= 0 or self.max_grad_norm <= 0:
            raise ValueError("lr and max_grad_norm must be > 0")
        if (
            self.eval_episodes < 1
            or self.final_eval_episodes < 1
            or self.retention_episodes < 0
            or self.video_episodes < 0
        ):
            raise ValueError(
                "need eval_episodes >= 1, final_eval_episodes >= 1, retention_episodes >= 0, video_episodes >= 0"
            )
        if self.noise_level < 0:
            raise ValueError(f"noise_level must be >= 0 (0: the base's own), got {self.noise_level}")
        if self.checkpoint_every < 1 or self.kl_states < 2:
            raise ValueError("need checkpoint_every >= 1 and kl_states >= 2")


class FinetuneRun:
    """The harness of one fine-tuning run: run directory, base and policy, KL tracking, evaluation,
    checkpoints. The algorithm's loop owns the updates and calls into this."""

    def __init__(self, cfg: FinetuneConfig, algo: str, resume: bool = False):
        from vla_razor.envs import get_task, load_suite
        from vla_razor.policies import ChainPolicy

        tune_malloc()
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.cfg, self.algo = cfg, algo
        self.suite = load_suite(cfg.suite)
        self.task = get_task(cfg.task).name if cfg.task else self.suite.new_task
        self.prior_tasks = [t for t in self.suite.prior_tasks if t != self.task]
        base_dir = Path(cfg.base)
        if not (base_dir / "config.json").is_file():
            raise CheckpointError(
                f"base policy {base_dir} not found: pass base=runs/<pretrain run>/policy "
                "(vla-razor pretrain writes one) or any directory written by save_pretrained"
            )
        torch.manual_seed(cfg.seed)
        self.policy = ChainPolicy.from_pretrained(base_dir)
        if cfg.noise_level:
            set_noise_level(self.policy, cfg.noise_level)
        self.base = freeze(self.policy)  # after the noise change: every KL compares like with like
        self._base_fingerprint = _fingerprint(self.base)
        self.penalty = KLPenalty(cfg.kl_penalty)
        name = cfg.name or f"{algo}-{self.task}"
        self.run = RunDir.create(cfg.runs_dir, name, cfg, resume=resume)
        self.iteration = 0
        self.env_steps = 0
        self._last_eval: dict = {}

    # -- checkpoints -------------------------------------------------------------------------
    def restore(
        self,
        modules: dict[str, torch.nn.Module],
        optimizers: dict[str, torch.optim.Optimizer],
        generator: torch.Generator,
    ) -> dict:
        """Register what checkpoints hold, then load the latest checkpoint into it (if there is one);
        returns the checkpoint's extras."""
        self._state = (modules, optimizers, generator)
        found = self.run.load_latest_checkpoint()
        if found is None:
            self.run.truncate_metrics(0)  # a killed first attempt may have logged before its first checkpoint
            return {}
        _, _, state = found
        for key, module in modules.items():
            module.load_state_dict(state[key])
        for key, optimizer in optimizers.items():
            optimizer.load_state_dict(state[key])
        generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        self.iteration, self.env_steps = int(state["iteration"]), int(state["env_steps"])
        self.penalty.coef = float(state["kl_coef"])
        self.run.truncate_metrics(self.iteration)
        tqdm.write(f"resuming {self.run.path} from iteration {self.iteration} ({self.env_steps} env steps)")
        return state.get("extra", {})

    def checkpoint(self, extra: dict | None = None) -> Path:
        """Save the modules, optimizers and generator registered by :meth:`restore`, with the counters."""
        modules, optimizers, generator = self._state
        state = {key: m.state_dict() for key, m in modules.items()}
        state.update({key: o.state_dict() for key, o in optimizers.items()})
        state.update(
            generator=generator.get_state(),
            torch_rng=torch.get_rng_state(),
            iteration=self.iteration,
            env_steps=self.env_steps,
            kl_coef=self.penalty.coef,
            extra=extra or {},
        )
        return self.run.save_checkpoint(self.iteration, state)

    def end_iteration(self, metrics: dict, bar: tqdm, advance: int, more_to_come: bool) -> None:
        """After ``self.iteration`` was counted: evaluate when due (the final evaluation is :meth:`finish`'s),
        log, move the progress bar by ``advance``, checkpoint when due."""
        if self.cfg.eval_every and self.iteration % self.cfg.eval_every == 0 and more_to_come:
            metrics.update(self.evaluate())
        self.log(metrics)
        bar.update(advance)
        bar.set_postfix(self.postfix(metrics))
        if self.iteration % self.cfg.checkpoint_every == 0:
            self.checkpoint()

    # -- metrics -------------------------------------------------------------------------------
    def check_finite(self, **values: float | torch.Tensor) -> None:
        for name, value in values.items():
            v = float(value.detach()) if isinstance(value, torch.Tensor) else float(value)
            if not math.isfinite(v):
                latest = self.run.latest_checkpoint()
                where = (
                    f"The last good checkpoint is {latest} (resume from it with a lower lr or a KL penalty)"
                    if latest
                    else "No checkpoint was written yet: start again with a lower lr"
                )
                raise NonFiniteError(
                    f"{name} is {v} at iteration {self.iteration + 1}; the run stopped. {where}"
                )

    def track_kl(self, states: dict) -> dict[str, float]:
        """``kl/forward`` and ``kl/reverse`` to the base on this iteration's new-task states."""
        start = time.perf_counter()
        from vla_razor.policies.encoders import as_tensor_obs

        out = measure_kl_to_base(
            self.base,
            self.policy,
            as_tensor_obs(states),
            self.cfg.kl_states,
            seed=self.cfg.seed * 100_003 + self.iteration,
        )
        self.check_finite(**{"kl/forward": out["kl/forward"], "kl/reverse": out["kl/reverse"]})
        out["time/kl_s"] = time.perf_counter() - start
        self.penalty.update(out["kl/forward" if self.cfg.kl_penalty.direction == "forward" else "kl/reverse"])
        out["kl/penalty_coef"] = self.penalty.coef
        return out

    def log(self, metrics: dict) -> None:
        self.run.log(self.iteration, {"env_steps": self.env_steps, **metrics})

    # -- evaluation ----------------------------------------------------------------------------
    @property
    def eval_suite(self):
        """The suite evaluations use: this run's task as the new task, the suite's other tasks as priors."""
        from vla_razor.envs.suites import Suite

        return Suite(self.suite.name, self.task, self.prior_tasks)

    def _record_videos(self, tag: str, tasks: list[str]) -> None:
        from vla_razor.envs.video import record_episodes
        from vla_razor.evaluation import deterministic_actor

        for task in tasks:
            record_episodes(
                task,
                deterministic_actor(self.policy),
                self.run.videos / f"{tag}_{task}.mp4",
                num_episodes=self.cfg.video_episodes,
                seed=self.cfg.eval_seed,
            )

    def evaluate(self) -> dict[str, float]:
        """Periodic evaluation of the policy in memory: new task and retention suite (fixed seeds),
        videos, and a policy snapshot (``snapshots/iter_N``) for later analysis."""
        from vla_razor.evaluation import evaluate_task, format_table

        cfg = self.cfg
        tasks = [self.task] + (self.prior_tasks if cfg.retention_episodes else [])
        results = {
            t: evaluate_task(
                self.policy,
                t,
                cfg.eval_episodes if t == self.task else cfg.retention_episodes,
                seed=cfg.eval_seed,
            )
            for t in tasks
        }
        metrics = {"success/new_task": results[self.task].rate}
        metrics.update({f"retention/{t}": results[t].rate for t in tasks[1:]})
        if len(tasks) > 1:
            metrics["retention/mean"] = sum(results[t].rate for t in tasks[1:]) / (len(tasks) - 1)
        tag = f"iter_{self.iteration:06d}"
        if cfg.video_episodes and cfg.periodic_videos:
            self._record_videos(tag, tasks)
        snapshot = self.run.path / "snapshots" / tag
        self.policy.save_pretrained(snapshot)
        roles = {t: ("new" if t == self.task else "prior") for t in tasks}
        write_json(
            self.run.eval / f"{tag}.json",
            {
                "iteration": self.iteration,
                "env_steps": self.env_steps,
                "snapshot": str(snapshot),
                "tasks": {t: {**r.as_dict(), "role": roles[t]} for t, r in results.items()},
            },
        )
        tqdm.write(f"iteration {self.iteration} ({self.env_steps} env steps)\n{format_table(results, roles)}")
        self._last_eval = metrics
        return metrics

    def finish(self) -> Path:
        """Save the fine-tuned policy in ``policy/``, then evaluate it on the whole suite with the
        retention code (``vla-razor eval``), forgetting measured against the (cached) base results."""
        from vla_razor.retention import evaluate_suite

        cfg = self.cfg
        if _fingerprint(self.base) != self._base_fingerprint:
            raise RuntimeError(
                "the frozen base policy changed during fine-tuning: every KL of this run is invalid (a bug)"
            )
        policy_dir = self.policy.save_pretrained(self.run.path / "policy")
        result = evaluate_suite(
            policy_dir, self.eval_suite, cfg.final_eval_episodes, cfg.eval_seed, base_dir=cfg.base
        )
        result.meta.update(iteration=self.iteration, env_steps=self.env_steps, algo=self.algo)
        write_json(self.run.eval / "final.json", result.as_dict())
        if cfg.video_episodes:
            self._record_videos("final", self.eval_suite.tasks)
        metrics = {
            "final/success/new_task": result.new_task_success,
            "final/retention/mean": result.retention,
            "final/forgetting/mean": result.mean_forgetting,
        }
        metrics.update({f"final/retention/{t}": result.tasks[t].rate for t in result.prior_tasks})
        self.log(metrics)
        self.run.close()
        print(result.table())
        print(f"fine-tuned policy: {policy_dir}")
        return self.run.path

    def progress(self, total: int, unit: str) -> tqdm:
        return progress(
            total=total,
            initial=min(self.env_steps if unit == "env step" else self.iteration, total),
            desc=f"{self.algo} {self.task}",
            unit=unit,
            dynamic_ncols=True,
        )

    def postfix(self, metrics: dict) -> dict:
        out = {k.split("/")[-1]: f"{metrics[k]:.3g}" for k in ("kl/forward", "kl/reverse") if k in metrics}
        if "success/new_task" in self._last_eval:
            out["eval_success"] = f"{self._last_eval['success/new_task']:.0%}"
        if "success/train" in metrics:
            out["train_success"] = f"{metrics['success/train']:.0%}"
        return out


def set_noise_level(policy, level: float) -> None:
    """Set a Flow-SDE policy's exploration noise (it is saved with the policy's config)."""
    if not hasattr(policy.config, "noise_level") or getattr(policy.config, "noise_method", "sde") != "sde":
        raise ValueError(
            f"noise_level applies to Flow-SDE policies; this base is a {type(policy).__name__} "
            f"({getattr(policy.config, 'noise_method', 'no noise_level')})"
        )
    policy.config.noise_level = float(level)


def _fingerprint(module: torch.nn.Module) -> str:
    """A content hash of every parameter and buffer (bit-exact)."""
    import hashlib

    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()
