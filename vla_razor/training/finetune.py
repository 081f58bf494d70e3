"""What every fine-tuning run shares, on both tracks: a frozen base, the KL to it every iteration,
periodic evaluation with snapshots, and the final evaluation against the base.

PPO, GRPO and SFT (robot) and GRPO and SFT (LLM) differ in how they update the policy; everything around
the update is here, so every run is measured the same way and writes the same run directory:

- the policy starts from the base checkpoint; the base is a frozen copy (no grad, eval mode) whose
  content hash is checked at the end (a changed base would invalidate every KL);
- every iteration logs ``kl/forward`` and ``kl/reverse`` to the base (with ``kl/states``, ``time/kl_s``),
  checked for NaN, and feeds the adaptive penalty coefficient (``kl/penalty_coef``);
- periodic evaluation on the new task (``success/new_task``) and the prior tasks (``retention/<task>``,
  ``retention/mean``), each with a snapshot (``snapshots/iter_N``) and ``eval/iter_N.json``;
- at the end, ``policy/`` and ``eval/final.json`` (a :class:`~vla_razor.retention.SuiteResult`:
  forgetting per prior task against the base), and the ``final/...`` metrics.

A track plugs in through a subclass that loads the policy and says how to evaluate it, measure its KL to
the base and save it (:class:`vla_razor.harness.RobotFinetuneHarness` for robots,
:class:`vla_razor.llm.harness.LLMFinetuneHarness` for language models).
"""

from __future__ import annotations

import hashlib
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from vla_razor import seeding as streams
from vla_razor.atomic import write_json
from vla_razor.divergence.penalty import PenaltyCoefficient
from vla_razor.errors import NonFiniteError

from .config import FinetuneFields, TrainerConfig
from .loop import TrainingLoop


class FinetuneHarness(TrainingLoop, ABC):
    """The harness of one fine-tuning run; the algorithm's loop owns the updates and calls into this.

    Subclasses (one per track) set ``policy``, ``base``, ``task`` and ``prior_tasks`` before calling
    :meth:`begin`, and implement :meth:`evaluate_tasks`, :meth:`measure_kl`, :meth:`save_policy` and
    :meth:`final_result`."""

    cfg: TrainerConfig | FinetuneFields
    policy: torch.nn.Module
    base: torch.nn.Module
    task: str
    prior_tasks: list[str]

    def begin(self, algo: str) -> None:
        """Called by the subclass once the policy and the frozen base exist."""
        self.algo = algo
        self._base_fingerprint = fingerprint(self.base)
        self.penalty = self.make_penalty()
        self._last_eval: dict = {}

    # -- the track's part ------------------------------------------------------------------------
    def make_penalty(self) -> PenaltyCoefficient:
        """The penalty toward the base: its coefficient (fixed or adapted to the measured KL every
        iteration), and for a track that computes the penalty itself, its loss (the robot's
        :class:`~vla_razor.base_kl.KLPenalty`)."""
        return PenaltyCoefficient(self.cfg.kl_penalty)

    @abstractmethod
    def evaluate_tasks(self, episodes: dict[str, int], seed: int | None = None) -> dict:
        """``{task: SuccessRate}`` of the policy in memory, ``episodes[task]`` each from ``seed`` (default
        ``cfg.eval_seed``)."""
        ...

    @abstractmethod
    def measure_kl(self, states: Any, seed: int) -> dict[str, float]:
        """``kl/forward``, ``kl/reverse`` (with ``_stderr``) and ``kl/states`` on this iteration's states."""
        ...

    @abstractmethod
    def save_policy(self, directory: Path) -> Path:
        """Write the policy in memory to ``directory`` (``from_pretrained`` reads it back)."""
        ...

    @abstractmethod
    def final_result(self, policy_dir: Path):
        """The final :class:`~vla_razor.retention.SuiteResult` of ``policy_dir``, with the base's results."""
        ...

    def record_videos(self, tag: str, tasks: list[str]) -> None:
        """Videos of the policy in memory (tracks without videos do nothing)."""

    # -- shared ----------------------------------------------------------------------------------
    def checkpoint_extra(self) -> dict:
        return {"kl_coef": self.penalty.coef}

    def restore_extra(self, extra: dict) -> None:
        if "kl_coef" in extra:
            self.penalty.coef = float(extra["kl_coef"])

    def track_kl(self, states: Any) -> dict[str, float]:
        """``kl/forward`` and ``kl/reverse`` to the base on this iteration's states (NaN-checked), and the
        penalty coefficient they set."""
        self.check_weights(self.policy)
        started = time.perf_counter()
        try:
            seed = streams.kl_sampling(self.cfg.seed, self.iteration) + streams.RANK_STRIDE * self.dp.rank
            out = self.dp.mean_metrics(self.measure_kl(states, seed=seed))  # over every rank's states
        except NonFiniteError as err:  # the sampler's own guard: name the run's last good checkpoint too
            self._stop(
                f"{str(err).split(';')[0]}, measuring the KL to the base after iteration {self.iteration}"
            )
        self.check_finite(**{"kl/forward": out["kl/forward"], "kl/reverse": out["kl/reverse"]})
        out["time/kl_s"] = time.perf_counter() - started
        self.penalty.update(out[self.penalty.measured])
        out["kl/penalty_coef"] = self.penalty.coef
        return out

    @property
    def tasks(self) -> list[str]:
        return [self.task, *self.prior_tasks]

    def evaluate(self) -> dict[str, float]:
        """Periodic evaluation of the policy in memory on the new task and the prior tasks, with a snapshot
        (``snapshots/iter_N``) and ``eval/iter_N.json`` for the analysis."""
        from vla_razor.evaluation import format_table

        started = time.perf_counter()
        tasks = self.tasks if self.retention_episodes else [self.task]
        results = self.evaluate_tasks(
            {t: self.cfg.eval_episodes if t == self.task else self.retention_episodes for t in tasks}
        )
        metrics = {"success/new_task": results[self.task].rate}
        metrics.update({f"retention/{t}": results[t].rate for t in tasks[1:]})
        if len(tasks) > 1:
            metrics["retention/mean"] = sum(results[t].rate for t in tasks[1:]) / (len(tasks) - 1)
        validation = self.validate()
        if validation:
            metrics["validation/new_task_success"] = validation[self.task]["rate"]
        tag = f"iter_{self.iteration:06d}"
        self.record_videos(tag, tasks)
        snapshot = self.save_policy(self.run.path / "snapshots" / tag)
        roles = {t: ("new" if t == self.task else "prior") for t in tasks}
        write_json(
            self.run.eval / f"{tag}.json",
            {
                "iteration": self.iteration,
                "env_steps": self.env_steps,
                "snapshot": str(snapshot),
                "tasks": {t: {**r.as_dict(), "role": roles[t]} for t, r in results.items()},
                **({"validation": validation} if validation else {}),
            },
        )
        tqdm.write(f"iteration {self.iteration} ({self.env_steps} env steps)\n{format_table(results, roles)}")
        self._last_eval = metrics
        metrics["time/eval_s"] = time.perf_counter() - started  # evaluation, videos and snapshot
        return metrics

    def validate(self) -> dict:
        """The new task on ``cfg.validation_episodes`` episodes from
        :func:`~vla_razor.seeding.validation_episodes` (``{task: rate dict}``; empty without validation
        episodes)."""
        if not self.cfg.validation_episodes:
            return {}
        seed = streams.validation_episodes(self.cfg.eval_seed)
        result = self.evaluate_tasks({self.task: self.cfg.validation_episodes}, seed=seed)[self.task]
        return {self.task: {**result.as_dict(), "seed": seed}}

    @property
    def retention_episodes(self) -> int:
        """Episodes per prior task of a periodic evaluation (0: the new task only)."""
        return self.cfg.eval_episodes

    def end_iteration(self, metrics: dict, before: int) -> None:
        """After :meth:`step`: evaluate when due (the final evaluation is :meth:`finish`'s), log, move the
        progress bar from the count ``before``, checkpoint when due (rank 0 alone evaluates and writes)."""
        if self.due(self.cfg.eval_every) and self.dp.main:
            metrics.update(self.evaluate())
        self.log(metrics)
        self.advance(before, self.postfix(metrics))
        self.checkpoint_if_due()

    def finish(self) -> Path:
        """Save the fine-tuned policy in ``policy/``, evaluate it on every task against the base, write
        ``eval/final.json`` and the ``final/...`` metrics (rank 0; the other ranks only leave the group)."""
        if not self.dp.main:
            self.dp.close()
            return self.run.path
        if fingerprint(self.base) != self._base_fingerprint:
            raise RuntimeError(
                "the frozen base policy changed during fine-tuning: every KL of this run is invalid (a bug)"
            )
        started = time.perf_counter()
        policy_dir = self.save_policy(self.run.path / "policy")
        result = self.final_result(policy_dir)
        result.meta.update(iteration=self.iteration, env_steps=self.env_steps, algo=self.algo)
        validation = self.validate()
        write_json(
            self.run.eval / "final.json",
            {**result.as_dict(), **({"validation": validation} if validation else {})},
        )
        self.record_videos("final", self.tasks)
        metrics = {
            "final/success/new_task": result.new_task_success,
            "final/retention/mean": result.retention,
            "final/forgetting/mean": result.mean_forgetting,
        }
        metrics.update({f"final/retention/{t}": result.tasks[t].rate for t in result.prior_tasks})
        if validation:
            metrics["final/validation/new_task_success"] = validation[self.task]["rate"]
        metrics["final/time/eval_s"] = time.perf_counter() - started  # evaluation against the base and videos
        self.log(metrics)
        self.run.close()
        print(result.table())
        print(f"fine-tuned policy: {policy_dir}")
        self.dp.close()
        return self.run.path

    def postfix(self, metrics: dict) -> dict:
        out = {k.split("/")[-1]: f"{metrics[k]:.3g}" for k in ("kl/forward", "kl/reverse") if k in metrics}
        if "success/new_task" in self._last_eval:
            out["eval_success"] = f"{self._last_eval['success/new_task']:.0%}"
        if "success/train" in metrics:
            out["train_success"] = f"{metrics['success/train']:.0%}"
        return out


def fingerprint(module: torch.nn.Module) -> str:
    """A content hash of every parameter and buffer (bit-exact)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().float().numpy().tobytes())
    return digest.hexdigest()
