"""Task suites: the prior tasks the base policy should keep (the retention suite) and the new task."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from vla_razor.config import ConfigError, load_config

from .registry import get_task

SUITES_DIR = Path(__file__).resolve().parents[1] / "configs" / "suites"


@dataclass
class Suite:
    name: str
    """Suite name (the YAML file's stem by convention)."""
    new_task: str
    """The task to fine-tune on."""
    prior_tasks: list[str] = field(default_factory=list)
    """Tasks the base policy was trained on and should not forget (the retention suite)."""
    description: str = ""
    """Why these tasks: what was measured when choosing them."""

    def __post_init__(self):
        self.new_task = get_task(self.new_task).name
        self.prior_tasks = [get_task(t).name for t in self.prior_tasks]
        if self.new_task in self.prior_tasks:
            raise ValueError(
                f"suite {self.name!r}: the new task {self.new_task} is also listed as a prior task"
            )
        if len(set(self.prior_tasks)) != len(self.prior_tasks):
            raise ValueError(f"suite {self.name!r}: a prior task is listed twice")
        worlds = {get_task(t).world for t in self.tasks}
        if len(worlds) > 1:
            raise ValueError(
                f"suite {self.name!r} mixes worlds ({', '.join(sorted(worlds))}): a policy serves one"
            )

    @property
    def world(self) -> str:
        """The simulator of the suite's tasks."""
        return get_task(self.new_task).world

    @property
    def tasks(self) -> list[str]:
        """Prior tasks, then the new task."""
        return [*self.prior_tasks, self.new_task]


def known_suites() -> list[str]:
    return sorted(p.stem for p in SUITES_DIR.glob("*.yaml"))


def is_suite(name: str) -> bool:
    return (SUITES_DIR / f"{name}.yaml").is_file() or (
        name.endswith((".yaml", ".yml")) and Path(name).is_file()
    )


def load_suite(name_or_path: str) -> Suite:
    """A suite by name (``configs/suites/<name>.yaml``) or by path to a YAML file."""
    path = Path(name_or_path)
    if not (name_or_path.endswith((".yaml", ".yml")) and path.is_file()):
        path = SUITES_DIR / f"{name_or_path}.yaml"
        if not path.is_file():
            raise ConfigError(
                f"unknown suite {name_or_path!r}; known suites: {', '.join(known_suites())} (in {SUITES_DIR})"
            )
    return load_config(Suite, path)
