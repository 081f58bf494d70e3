"""Retention: evaluate a policy on every task of a suite, and its forgetting against the base policy.

Episode ``i`` of every task starts from ``reset(seed=seed + i)`` for every policy, so the base and a
fine-tuned policy face the same initial states. Forgetting on a prior task is ``base success -
policy success`` (positive = forgotten); the suite's forgetting is the mean over prior tasks.

The base policy's results are cached beside its weights, keyed by the weights' content hash, the
suite, the episode count and the seed: they are computed once, whatever evaluates against them.
Evaluations fan out over (checkpoint, task) pairs as Ray tasks when there is more than one
(``vla_razor.retention.parallel``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from tabulate import tabulate

from vla_razor.atomic import write_json
from vla_razor.evaluation import SuccessRate


@dataclass
class SuiteResult:
    """One policy's success on a suite's tasks (and, given the base's, its forgetting)."""

    suite: str
    new_task: str
    prior_tasks: list[str]
    episodes: int
    seed: int
    tasks: dict[str, SuccessRate]
    base: dict[str, SuccessRate] | None = None
    policy: str = ""
    meta: dict = field(default_factory=dict)

    @property
    def new_task_success(self) -> float:
        return self.tasks[self.new_task].rate

    @property
    def retention(self) -> float:
        """Mean success over the prior tasks (nan without prior tasks)."""
        rates = [self.tasks[t].rate for t in self.prior_tasks]
        return sum(rates) / len(rates) if rates else float("nan")

    def forgetting(self, task: str) -> float | None:
        if self.base is None or task not in self.base:
            return None
        return self.base[task].rate - self.tasks[task].rate

    @property
    def mean_forgetting(self) -> float | None:
        values = [self.forgetting(t) for t in self.prior_tasks]
        return None if self.base is None or not values else sum(values) / len(values)

    def as_dict(self) -> dict:
        return {
            "suite": self.suite,
            "new_task": self.new_task,
            "prior_tasks": self.prior_tasks,
            "episodes": self.episodes,
            "seed": self.seed,
            "policy": self.policy,
            "meta": self.meta,
            "new_task_success": self.new_task_success,
            "retention": self.retention,
            "mean_forgetting": self.mean_forgetting,
            "tasks": {
                t: {
                    **r.as_dict(),
                    "role": "new" if t == self.new_task else "prior",
                    "forgetting": self.forgetting(t),
                }
                for t, r in self.tasks.items()
            },
            "base": {t: r.as_dict() for t, r in self.base.items()} if self.base else None,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "SuiteResult":
        def rate(x):
            return SuccessRate(x["successes"], x["episodes"], x["ci_low"], x["ci_high"])

        return cls(
            d["suite"],
            d["new_task"],
            d["prior_tasks"],
            d["episodes"],
            d["seed"],
            {t: rate(x) for t, x in d["tasks"].items()},
            {t: rate(x) for t, x in d["base"].items()} if d.get("base") else None,
            d.get("policy", ""),
            d.get("meta", {}),
        )

    def table(self) -> str:
        rows = []
        for task, r in self.tasks.items():
            f = self.forgetting(task)
            rows.append(
                (task, "new" if task == self.new_task else "prior", str(r), "" if f is None else f"{f:+.1%}")
            )
        headers = ("task", "role", "success [95% CI]", "forgetting vs base")
        lines = [tabulate(rows, headers=headers, tablefmt="simple", disable_numparse=True)]
        summary = f"new task {self.new_task_success:.1%} | retention (prior mean) {self.retention:.1%}"
        if self.mean_forgetting is not None:
            summary += f" | mean forgetting {self.mean_forgetting:+.1%}"
        return "\n".join(lines + [summary])


def weights_hash(policy_dir: str | Path) -> str:
    digest = hashlib.sha256()
    with open(Path(policy_dir) / "model.safetensors", "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def evaluate_policy_dir(
    policy_dir: str | Path, tasks: list[str], episodes: int, seed: int, workers: int = 1
) -> dict[str, SuccessRate]:
    """Success of the saved policy on each task (Ray tasks over tasks when ``workers > 1``)."""
    from .parallel import run_evaluations

    return run_evaluations([(str(policy_dir), task) for task in tasks], episodes, seed, workers)[
        str(policy_dir)
    ]


def base_results(
    base_dir: str | Path, suite, episodes: int, seed: int, workers: int = 1
) -> dict[str, SuccessRate]:
    """The base policy's success on every suite task, computed once and cached beside its weights."""
    base_dir = Path(base_dir)
    key = f"{suite.name}-{episodes}ep-seed{seed}-{weights_hash(base_dir)}"
    cache = base_dir / "retention_cache" / f"{key}.json"
    if cache.exists():
        try:
            cached = json.loads(cache.read_text())
            return {
                t: SuccessRate(**{k: x[k] for k in ("successes", "episodes", "ci_low", "ci_high")})
                for t, x in cached.items()
            }
        except (json.JSONDecodeError, KeyError, TypeError):
            pass  # a damaged cache is recomputed
    results = evaluate_policy_dir(base_dir, suite.tasks, episodes, seed, workers)
    cache.parent.mkdir(parents=True, exist_ok=True)
    write_json(cache, {t: r.as_dict() for t, r in results.items()})
    return results


def evaluate_suite(
    policy_dir: str | Path,
    suite,
    episodes: int,
    seed: int = 10_000,
    base_dir: str | Path | None = None,
    workers: int = 1,
) -> SuiteResult:
    """Evaluate a saved policy on every suite task; with ``base_dir``, forgetting against the (cached)
    base."""
    tasks = evaluate_policy_dir(policy_dir, suite.tasks, episodes, seed, workers)
    base = base_results(base_dir, suite, episodes, seed, workers) if base_dir else None
    return SuiteResult(
        suite.name, suite.new_task, list(suite.prior_tasks), episodes, seed, tasks, base, str(policy_dir)
    )
