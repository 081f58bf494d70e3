"""The points of the razor analysis, read from run directories alone.

One point per evaluated policy: every periodic evaluation of a run (``eval/iter_N.json`` with its
snapshot) and its final evaluation (``eval/final.json`` with ``policy/``). A point holds the new-task
success, the retention (mean success over prior tasks), the forgetting against the base evaluated
on the same seeds and episode count, and every predictor of :mod:`.predictors`, measured on the same
new-task states for all runs. Predictors are cached per snapshot in ``<run>/analysis/``.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
from functools import cached_property
from pathlib import Path

from vla_razor.atomic import write_json
from vla_razor.config import read_yaml
from vla_razor.errors import CheckpointError
from vla_razor.progress import progress

from .predictors import measure_predictors, task_states


def _mean(values: list[float]) -> float:
    """The mean, exactly rounded (math.fsum), so that a report is the same on every Python: 3.12's sum()
    compensates its rounding and 3.11's does not. NaN for none."""
    return math.fsum(values) / len(values) if values else float("nan")


def _rate(task: dict) -> float:
    return task["successes"] / task["episodes"]


def _evaluations(run_dir: Path) -> list[tuple[str, Path, dict]]:
    """(tag, policy directory, evaluation) of every evaluation of a run, in training order: those whose policy
    is on disk, and those of an archived run (:mod:`.archive`) whose predictors were measured before."""

    def usable(tag: str, policy_dir: Path) -> bool:
        return (policy_dir / "config.json").is_file() or (run_dir / "analysis" / f"{tag}.json").is_file()

    out = []
    for path in sorted((run_dir / "eval").glob("iter_*.json")):
        ev = json.loads(path.read_text())
        if usable(path.stem, run_dir / "snapshots" / path.stem):
            out.append(
                (
                    path.stem,
                    run_dir / "snapshots" / path.stem,
                    {
                        "iteration": ev["iteration"],
                        "env_steps": ev["env_steps"],
                        "tasks": {t: {**x, "rate": _rate(x)} for t, x in ev["tasks"].items()},
                        "validation": {t: _rate(x) for t, x in ev.get("validation", {}).items()},
                    },
                )
            )
    final = run_dir / "eval" / "final.json"
    if final.is_file() and usable("final", run_dir / "policy"):
        ev = json.loads(final.read_text())
        out.append(
            (
                "final",
                run_dir / "policy",
                {
                    "iteration": ev["meta"].get("iteration"),
                    "env_steps": ev["meta"].get("env_steps"),
                    "tasks": {t: {**x, "rate": _rate(x)} for t, x in ev["tasks"].items()},
                    "validation": {t: _rate(x) for t, x in ev.get("validation", {}).items()},
                },
            )
        )
    return out


def measure_run(run_dir: Path, track) -> dict[str, dict]:
    """The predictors of every evaluation of one run, by tag, measured by ``track`` on the evaluated policy
    and cached in ``<run>/analysis/<tag>.json`` (keyed by the track's states and the policy's weights). Where
    the policy is not on disk (an archived run), the cache is used as it is when its states match."""
    from vla_razor.retention.evaluate import weights_hash

    out = {}
    for tag, policy_dir, _ in _evaluations(run_dir):
        cache = run_dir / "analysis" / f"{tag}.json"
        cached = json.loads(cache.read_text()) if cache.is_file() else {}
        if not (policy_dir / "config.json").is_file():
            if cached.get("key", {}).get("states") == track.key:
                out[tag] = cached["predictors"]
            continue
        key = {"states": track.key, "weights": weights_hash(policy_dir)}
        if cached.get("key") != key:
            if track.base_key is None:
                raise CheckpointError(
                    f"{policy_dir}: its predictors are not cached for these states ({track.key}) and the "
                    f"base policy {track.base_dir} that measures them is not on this machine: put it there"
                )
            cached = {"key": key, "predictors": track.predictors(policy_dir)}
            write_json(cache, cached)
        out[tag] = cached["predictors"]
    return out


class RobotTrack:
    """How the analysis measures chain policies: KLs on the base's new-task states, ManiSkill success.

    Each point also gets the forward and reverse KL on every prior task's own states (the base's rollouts
    there): ``kl/forward/<task>``, ``kl/reverse/<task>``, for "where forgetting happens"."""

    def __init__(
        self,
        base_dir: str,
        suite,
        state_episodes: int,
        state_seed: int,
        kl_states: int,
        eval_seed: int = 10_000,
    ):
        self.base_dir, self.suite, self.eval_seed = base_dir, suite, eval_seed
        self.new_task, self.prior_tasks = suite.new_task, list(suite.prior_tasks)
        self.state_episodes, self.kl_states, self.seed = state_episodes, kl_states, state_seed
        # "+action": the predictors include the action-marginal KL (caches measured before it are re-measured)
        self.key = (
            f"{suite.new_task}-{state_episodes}ep-seed{state_seed}-{kl_states}-priors:{','.join(self.prior_tasks)}"
            "+action"
        )

    # The base and its states are loaded when a policy is measured: a report rebuilt from an archive whose
    # predictors are all cached needs neither (nor the base's weights on this machine).
    @cached_property
    def base(self):
        from vla_razor.base_kl import freeze
        from vla_razor.policies import ChainPolicy

        return freeze(ChainPolicy.from_pretrained(self.base_dir))

    @cached_property
    def states(self):
        return task_states(self.base_dir, self.new_task, self.state_episodes, self.seed)

    @cached_property
    def prior_states(self) -> dict:
        return {t: task_states(self.base_dir, t, self.state_episodes, self.seed) for t in self.prior_tasks}

    @property
    def base_key(self) -> str | None:
        """What the base's rates depend on: its weights, the suite's tasks and the evaluation seed; None when
        its weights are not on this machine (:func:`base_evaluation` then takes the stored rates as the
        base's)."""
        from vla_razor.retention.evaluate import weights_hash

        if not (Path(self.base_dir) / "model.safetensors").is_file():
            return None
        tasks = ",".join([self.new_task, *self.prior_tasks])
        return f"{self.suite.name}:{tasks}-seed{self.eval_seed}-{weights_hash(self.base_dir)}"

    def base_rates(self, episodes: int) -> dict[str, float]:
        from vla_razor.retention import base_results

        return {
            t: r.rate for t, r in base_results(self.base_dir, self.suite, episodes, self.eval_seed).items()
        }

    def predictors(self, policy_dir: Path) -> dict[str, float]:
        import torch

        from vla_razor.base_kl import measure_kl_to_base
        from vla_razor.policies import ChainPolicy

        policy = ChainPolicy.from_pretrained(policy_dir)
        base = base_as_finetuned(self.base, policy)
        with torch.no_grad():
            out = measure_predictors(base, policy, self.states, self.kl_states, seed=self.seed)
            for task, states in self.prior_states.items():
                on_task = measure_kl_to_base(base, policy, states, self.kl_states, seed=self.seed)
                out[f"kl/forward/{task}"], out[f"kl/reverse/{task}"] = (
                    on_task["kl/forward"],
                    on_task["kl/reverse"],
                )
        return out


STOPPED_S = 600.0
"""A gap between two log records of a run longer than the later record's logged time (its iteration and
evaluation) by more than this was a stop (the run interrupted, then resumed): :func:`run_budgets` does not
count it. Longer than any evaluation of these sweeps."""


def run_budgets(run_dir: Path):
    """``budget(iteration, env_steps)``: what a run had spent by an evaluation, from its saved config and
    metrics alone (so an archived run has it too): ``budget/env_steps`` (training env steps; 0 for SFT),
    ``budget/gradient_steps`` (optimizer steps on the policy: PPO and GRPO after the critic's warm-up,
    epochs x minibatches an iteration; SFT steps_per_iteration), ``budget/demos`` (the demonstrations SFT
    learns from; None for the control, whose data are the RL policy's rollouts) and ``budget/wall_s`` (the
    seconds from the start of the first iteration to this one's log record, less the time the run was stopped:
    a gap between two records longer than the later one's logged time by more than :data:`STOPPED_S` is a
    stop, and counts as that logged time; an iteration redone after a resume counts once)."""
    config_file = run_dir / "config.yaml"
    cfg = (read_yaml(config_file.read_text()) or {}) if config_file.is_file() else {}
    seconds: dict[int, float] = {}  # the last record of each step: a step redone after a resume counts once
    previous = None
    metrics = run_dir / "metrics.jsonl"
    for line in metrics.read_text().splitlines() if metrics.is_file() else []:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a torn last line
        if "time/iteration_s" not in record:
            continue
        logged = record["time/iteration_s"] + record.get("time/eval_s", 0.0)
        gap = None if previous is None else record["time"] - previous
        seconds[int(record["step"])] = logged if gap is None or gap - logged > STOPPED_S else max(gap, logged)
        previous = record["time"]

    def budget(iteration: int | None, env_steps: int | None) -> dict:
        iteration = int(iteration or 0)
        if "steps_per_iteration" in cfg:  # SFT
            gradient, demos = (
                iteration * int(cfg["steps_per_iteration"]),
                (None if cfg.get("data") == "rl" else cfg.get("demos")),
            )
        elif "update_epochs" in cfg:  # PPO, GRPO
            updates = max(0, iteration - int(cfg.get("critic_warmup_iterations", 0)))
            gradient, demos = updates * int(cfg["update_epochs"]) * int(cfg.get("num_minibatches", 1)), 0
        else:
            gradient, demos = None, None
        wall = math.fsum(t for step, t in seconds.items() if step <= iteration) if seconds else None
        return {
            "budget/env_steps": int(env_steps or 0) if "steps_per_iteration" not in cfg else 0,
            "budget/gradient_steps": gradient,
            "budget/demos": demos,
            "budget/wall_s": None if wall is None else round(wall, 1),
        }

    return budget


BASE_EVALUATION = "base_evaluation.json"
"""The base's success rates a sweep's forgetting is measured against, in the sweep's directory and its archive
(:func:`base_evaluation`)."""


def base_evaluation(track, path: Path | None):
    """``rates(episodes) -> {task: rate}``: the base's success on every task at that episode count, read from
    ``path`` when it holds them for this base, track and evaluation seed, else evaluated and added to it.
    Kept with the sweep (and its archive), the base's rates do not move with the machine that re-reports it:
    a simulator run on another CPU or thread count can end a few episodes differently. Where the base's
    weights are not on this machine (a report rebuilt from an archive alone), the rates ``path`` holds are
    the base's; an episode count it lacks is a :class:`~vla_razor.errors.CheckpointError`."""
    key = track.base_key
    stored = json.loads(path.read_text()) if path is not None and path.is_file() else {}
    if key is not None and stored.get("key") != key:
        stored = {"key": key, "rates": {}}
    stored.setdefault("rates", {})

    def rates(episodes: int) -> dict[str, float]:
        if str(episodes) not in stored["rates"]:
            if key is None:
                raise CheckpointError(
                    f"the base policy {track.base_dir} is not on this machine and "
                    f"{path if path is not None else 'the sweep'} holds no evaluation of it at {episodes} "
                    f"episodes (it has {sorted(stored['rates'], key=int) or 'none'}): put the base there, "
                    "or report from the archive its runs were evaluated with"
                )
            stored["rates"][str(episodes)] = track.base_rates(episodes)
            if path is not None:
                write_json(path, stored)
        return stored["rates"][str(episodes)]

    return rates


def collect_points(run_root: Path, plan: list[dict], track, base_file: Path | None = None) -> list[dict]:
    """Every point of every run in ``plan`` (runs without evaluations are skipped), plus the base itself;
    ``track`` (:class:`RobotTrack`, or the LLM track's) measures policies and the base, whose rates are kept
    in ``base_file`` (:func:`base_evaluation`)."""
    base_rates = base_evaluation(track, base_file)

    def row(run: str, method: str, algo: str, grid: dict, tag: str, ev: dict) -> dict:
        method = point_method(method, grid)
        tasks = ev["tasks"]
        priors = [t for t in track.prior_tasks if t in tasks]
        forgetting = {t: base_rates(tasks[t]["episodes"])[t] - tasks[t]["rate"] for t in priors}
        return {
            "run": run,
            "method": method,
            "algo": algo,
            "grid": grid,
            "tag": tag,
            "iteration": ev["iteration"],
            "env_steps": ev["env_steps"],
            "new_task_success": tasks[track.new_task]["rate"],
            "retention": _mean([tasks[t]["rate"] for t in priors]),
            "forgetting": _mean(list(forgetting.values())),
            **{f"retention/{t}": tasks[t]["rate"] for t in priors},
            **{f"forgetting/{t}": f for t, f in forgetting.items()},
            **{f"successes/{t}": tasks[t]["successes"] for t in tasks},
            **{f"episodes/{t}": tasks[t]["episodes"] for t in tasks},
            **(
                {"validation/new_task_success": ev["validation"][track.new_task]}
                if track.new_task in ev.get("validation", {})
                else {}
            ),
        }

    points = []
    base_ev = base_rates(max(1, _largest_episode_count(run_root, plan)))
    priors = track.prior_tasks
    points.append(
        {
            "run": "base",
            "method": "base",
            "algo": "",
            "grid": {},
            "tag": "base",
            "iteration": 0,
            "env_steps": 0,
            "new_task_success": base_ev[track.new_task],
            "retention": _mean([base_ev[t] for t in priors]),
            "forgetting": 0.0,
            "kl/forward": 0.0,
            "kl/reverse": 0.0,
            "kl/forward_action": 0.0,
            "weights/l2_change": 0.0,
            "weights/update_density": 0.0,
            "features/change": 0.0,
        }
    )
    runs = [(spec, run_root / spec["name"]) for spec in plan]
    entries = [(spec, run_dir, tag, ev) for spec, run_dir in runs for tag, _, ev in _evaluations(run_dir)]
    measured: dict[str, dict] = {}
    budgets: dict[str, object] = {}
    for spec, run_dir, tag, ev in progress(entries, desc="analysis: predictors", unit="policy"):
        if spec["name"] not in measured:
            measured[spec["name"]] = measure_run(run_dir, track)
            budgets[spec["name"]] = run_budgets(run_dir)
        predictors = measured[spec["name"]].get(tag)
        if predictors is None:  # archived without its policy, measured on other states: cannot be a point
            continue
        points.append(
            {
                **row(spec["name"], spec["method"], spec["algo"], spec.get("grid", {}), tag, ev),
                **predictors,
                **budgets[spec["name"]](ev["iteration"], ev["env_steps"]),
            }
        )
    return points


def point_method(method: str, grid: dict) -> str:
    """The analysis's method of a run: ``rl_kl`` for an RL run that sets a KL penalty (its own group, apart
    from the paper's penalty-free RL), else the sweep's method."""
    if method == "rl" and any(key.startswith("kl_penalty") for key in grid):
        return "rl_kl"
    return method


def base_as_finetuned(base, policy):
    """The base as the run's frozen copy was: with the policy's sampling noise, when fine-tuning changed it
    (``noise_level``), so the KLs compare the weights' effect alone, like the run's own tracking."""
    level = getattr(policy.config, "noise_level", None)
    if level is None or level == getattr(base.config, "noise_level", None):
        return base
    aligned = copy.copy(base)  # shares the frozen weights; only the config differs
    aligned.config = dataclasses.replace(base.config, noise_level=level)
    return aligned


def _largest_episode_count(run_root: Path, plan: list[dict]) -> int:
    """The final evaluations' episode count (the base point is evaluated like the runs' final policies)."""
    for spec in plan:
        final = run_root / spec["name"] / "eval" / "final.json"
        if final.is_file():
            return int(json.loads(final.read_text())["episodes"])
    return 10
