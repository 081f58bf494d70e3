"""A razor sweep's settings and plan: :class:`RazorConfig`, the runs it plans (:class:`RunSpec`, one per
point of the grids and seed) and the control's runs."""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..config import NonNegativeInt, PositiveInt


@dataclass
class RazorConfig:
    """A sweep, complete in its own file: every field's default adds nothing (no grid point, extra seed,
    control run or archive), so the plan is exactly what the config says. Where the sweep's archive is,
    if it has one, is said on the command line (``vla-razor razor --archive DIR``), never in a config."""

    name: str = "razor"
    """Sweep directory name under ``runs_dir``."""
    track: str = "robot"
    """robot (chain policies on a ManiSkill suite; configs/finetune_<algo>.yaml) or llm (token policies on
    the arithmetic tasks; configs/llm_finetune.yaml, rl_algo grpo)."""
    runs_dir: str = "runs"
    """Where run directories go."""
    base: str = "runs/base/policy"
    """The base policy every run starts from (a ``save_pretrained`` directory)."""
    suite: str = "default"
    """Task suite (robot track): fine-tune on its new task, measure retention on its prior tasks."""
    rl_algo: str = ""
    """RL algorithm of the sweep: ppo or grpo (default: ppo on the robot track, grpo on the llm track)."""
    rl_grid: dict[str, list[Any]] = field(default_factory=dict)
    """RL config fields to sweep (the cartesian product of the lists; dotted keys reach nested fields);
    empty: one RL run per seed at the ``common`` and ``rl`` settings."""
    rl_extra_grids: list[dict[str, list[Any]]] = field(default_factory=list)
    """Further RL grids, each a cartesian product of its own, whose runs join rl_grid's (e.g. KL-penalty
    settings at one learning rate, without multiplying every learning rate by them). A grid's ``seed`` list
    sets the seeds of that grid alone (otherwise ``rl_extra_seeds``)."""
    rl_extra_seeds: list[int] = field(default_factory=list)
    """The seeds the extra grids run with (empty: every seed of ``seeds``)."""
    sft_grid: dict[str, list[Any]] = field(default_factory=dict)
    """SFT config fields to sweep; empty: one SFT run per seed at the ``common`` and ``sft`` settings."""
    sft_extra_grids: list[dict[str, list[Any]]] = field(default_factory=list)
    """Further SFT grids, each a cartesian product of its own, whose runs join sft_grid's (e.g. replicates
    with validation evaluations). A grid's ``seed`` list sets the seeds of that grid alone (otherwise
    ``seeds``)."""
    seeds: list[int] = field(default_factory=lambda: [0])
    """Every grid point runs once per seed."""
    rl_seeds: list[int] = field(default_factory=list)
    """The seeds rl_grid runs with (empty: every seed of ``seeds``); sft_grid always runs every seed."""
    common: dict[str, Any] = field(default_factory=dict)
    """Overrides of every run (e.g. eval_every, retention_episodes, final_eval_episodes)."""
    rl: dict[str, Any] = field(default_factory=dict)
    """Overrides of every RL run (e.g. total_env_steps)."""
    sft: dict[str, Any] = field(default_factory=dict)
    """Overrides of every SFT run (e.g. iterations)."""
    control_grid: dict[str, list[Any]] = field(default_factory=dict)
    """The "SFT on RL data" control runs (SFT overrides plus these; ``seed`` in it sets their seeds, else the
    first of ``seeds``); empty: no control."""
    control_teacher: str = ""
    """The RL run of this sweep (its name) whose successful rollouts the control clones; its control runs are
    named after it (``sft_on_rl-<teacher>-...``) and run first once it has finished. Empty: the RL run with
    the best final new-task success, after every other run."""
    workers: PositiveInt = 1
    """Runs at a time (Ray tasks when > 1). On a 2-core machine keep 1: runs starve each other."""
    ray_address: str = ""
    """Join this Ray cluster instead of starting a local one."""
    state_episodes: PositiveInt = 16
    """Base-policy episodes of the new task whose states every KL and feature change is measured on."""
    state_seed: NonNegativeInt = 20_000
    """First seed of those episodes (disjoint from training and evaluation seeds)."""
    kl_states: PositiveInt = 512
    """States (subsampled from those episodes) per KL estimate."""
    targets: list[float] = field(default_factory=list)
    """New-task success rates at which the report compares the methods with the run as the unit (each run's
    checkpoint nearest each target; :func:`vla_razor.analysis.numbers.run_level`); empty: none."""
    report_videos: bool = True
    """Embed the per-task evaluation videos of the best RL and SFT runs in the HTML report."""

    def __post_init__(self):
        if self.track not in ("robot", "llm"):
            raise ValueError(f"track must be robot or llm, got {self.track!r}")
        self.rl_algo = self.rl_algo or ("grpo" if self.track == "llm" else "ppo")
        if self.rl_algo not in ("ppo", "grpo") or (self.track == "llm" and self.rl_algo != "grpo"):
            raise ValueError(f"rl_algo must be ppo or grpo (grpo on the llm track), got {self.rl_algo!r}")
        grids = [("rl_grid", self.rl_grid), ("sft_grid", self.sft_grid), ("control_grid", self.control_grid)]
        grids += [(f"rl_extra_grids[{i}]", g) for i, g in enumerate(self.rl_extra_grids)]
        grids += [(f"sft_extra_grids[{i}]", g) for i, g in enumerate(self.sft_extra_grids)]
        for name, grid in grids:
            if not isinstance(grid, dict):
                raise ValueError(
                    f"{name} must be a mapping of config fields to lists of values, got {grid!r}"
                )
            for key, values in grid.items():
                if not isinstance(values, list) or not values:
                    raise ValueError(f"{name}.{key} must be a non-empty list of values, got {values!r}")
        if any(not 0 < t < 1 for t in self.targets):
            raise ValueError(f"targets are new-task success rates in (0, 1), got {self.targets}")
        if not self.seeds or self.workers < 1 or self.state_episodes < 1 or self.kl_states < 2:
            raise ValueError("need seeds (non-empty), workers >= 1, state_episodes >= 1 and kl_states >= 2")

    def make_track(self):
        """What measures this sweep's policies: :class:`~.points.RobotTrack` or the LLM track's."""
        if self.track == "llm":
            from vla_razor.llm.razor import LLMTrack

            return LLMTrack(self.base, self.run_root, self.state_episodes, self.state_seed, self.kl_states)
        from vla_razor.envs import load_suite

        from .points import RobotTrack

        return RobotTrack(
            self.base, load_suite(self.suite), self.state_episodes, self.state_seed, self.kl_states
        )

    @property
    def path(self) -> Path:
        return Path(self.runs_dir) / self.name

    @property
    def run_root(self) -> Path:
        return self.path / "runs"


SMOKE = dict(
    name="razor-smoke",
    suite="smoke",
    base="runs/base-smoke/policy",
    rl_grid={"lr": [1e-5, 1e-4]},
    rl_extra_grids=[],
    rl_extra_seeds=[],
    sft_extra_grids=[],
    rl_seeds=[],
    control_grid={"lr": [1e-3]},
    control_teacher="",
    sft_grid={"lr": [1e-4, 1e-3]},
    seeds=[0],
    state_episodes=2,
    kl_states=16,
    report_videos=True,
    common={
        "eval_every": 1,
        "eval_episodes": 2,
        "retention_episodes": 2,
        "final_eval_episodes": 2,
        "video_episodes": 1,
        "kl_states": 8,
    },
    rl={
        "total_env_steps": 128,
        "num_envs": 2,
        "num_decisions": 4,
        "update_epochs": 1,
        "num_minibatches": 2,
        "critic_warmup_iterations": 1,
    },
    sft={"iterations": 2, "steps_per_iteration": 2, "batch_size": 8, "demos": 1},
)


LLM_SMOKE = dict(
    name="razor-llm-smoke",
    base="runs/llm-base-smoke/policy",
    rl_grid={"lr": [1e-4, 1e-3]},
    rl_extra_grids=[],
    rl_extra_seeds=[],
    sft_extra_grids=[],
    rl_seeds=[],
    sft_grid={"lr": [1e-4, 1e-3]},
    seeds=[0],
    state_episodes=1,
    kl_states=8,
    control_grid={"lr": [1e-3]},
    control_teacher="",
    rl={},
    sft={},
    common={
        "iterations": 2,
        "num_prompts": 2,
        "group_size": 2,
        "kl_states": 4,
        "eval_every": 1,
        "eval_episodes": 4,
        "final_eval_episodes": 4,
        "checkpoint_every": 1,
    },
)


@dataclass(frozen=True)
class RunSpec:
    """One run of the sweep: which method, algorithm and config overrides."""

    name: str
    method: str
    """rl, sft or sft_on_rl (the control)."""
    track: str
    """robot or llm."""
    algo: str
    overrides: tuple[str, ...]
    grid: dict = field(default_factory=dict, hash=False)
    """The swept values of this run (for the report's labels)."""

    def as_dict(self) -> dict:
        return {**asdict(self), "overrides": list(self.overrides)}


def _override(key: str, value: Any) -> str:
    return f"{key}={json.dumps(value)}"  # JSON is YAML: the config parser reads it back exactly


def _label(key: str, value: Any) -> str:
    text = f"{key.split('.')[-1]}{value:g}" if isinstance(value, float) else f"{key.split('.')[-1]}{value}"
    return re.sub(r"[^A-Za-z0-9_.+-]", "", text)


def _grid(grid: dict[str, list]) -> list[dict]:
    keys = sorted(grid)
    return [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]


def plan_runs(cfg: RazorConfig) -> list[RunSpec]:
    """The RL and SFT runs of the sweep (the control comes later, from the RL results), seed by seed: every
    setting's first seed runs before any setting's second, so a sweep stopped part-way has seen every
    setting."""
    rl = [("rl", cfg.rl_algo, point, cfg.rl) for point in _grid(cfg.rl_grid)]
    sft = [("sft", "sft", point, cfg.sft) for point in _grid(cfg.sft_grid)]
    rl_seeds = cfg.rl_seeds or cfg.seeds
    extra_seeds = cfg.rl_extra_seeds or cfg.seeds
    # an extra grid's own "seed" list, when it has one, replaces rl_extra_seeds for that grid
    extra = [
        ("rl", cfg.rl_algo, point, cfg.rl, grid.get("seed") or extra_seeds)
        for grid in cfg.rl_extra_grids
        for point in _grid({k: v for k, v in grid.items() if k != "seed"})
    ]
    extra += [
        ("sft", "sft", point, cfg.sft, grid.get("seed") or cfg.seeds)
        for grid in cfg.sft_extra_grids
        for point in _grid({k: v for k, v in grid.items() if k != "seed"})
    ]
    specs = []
    for seed in dict.fromkeys([*cfg.seeds, *rl_seeds, *(s for *_, seeds in extra for s in seeds)]):
        groups = (rl if seed in rl_seeds else []) + (sft if seed in cfg.seeds else [])
        groups += [group[:4] for group in extra if seed in group[4]]
        for method, algo, point, overrides_of_method in groups:
            specs.append(_spec(cfg, method, algo, algo, {**point, "seed": seed}, overrides_of_method))
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ValueError("two runs of the sweep got the same name: make the grid values distinct")
    return specs


def _spec(cfg: RazorConfig, method: str, algo: str, prefix: str, values: dict, extra: dict) -> RunSpec:
    """One run: named by ``prefix`` and its swept ``values``, configured by the sweep's common overrides,
    then ``extra`` (the method's), then the values, then where it starts from and writes to."""
    name = "-".join([prefix] + [_label(k, v) for k, v in values.items()])
    overrides = {
        **cfg.common,
        **extra,
        **values,
        "base": cfg.base,
        "runs_dir": str(cfg.run_root),
        "name": name,
    }
    if cfg.track == "robot":
        overrides["suite"] = cfg.suite
    return RunSpec(
        name, method, cfg.track, algo, tuple(_override(k, v) for k, v in overrides.items()), values
    )


def plan_control(cfg: RazorConfig, rl_policy: str) -> list[RunSpec]:
    """The SFT-on-RL-data runs: SFT on the successful rollouts of ``rl_policy``."""
    extra = {**cfg.sft, "rl_policy": rl_policy, "data": "rl"}
    prefix = f"sft_on_rl-{cfg.control_teacher}" if cfg.control_teacher else "sft_on_rl"
    # the control grid may set its own seeds
    return [
        _spec(cfg, "sft_on_rl", "sft", prefix, {"seed": cfg.seeds[0], **point}, extra)
        for point in (_grid(cfg.control_grid) if cfg.control_grid else [])
    ]
