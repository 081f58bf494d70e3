"""The task registry: every task vla-razor can train or evaluate on, with its language instructions.

Only ManiSkill3 Panda tabletop tasks that need no asset download are registered; a task that needs
downloaded assets is refused up front (ManiSkill would otherwise prompt on stdin and die with EOFError
in a non-interactive run).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Literal

from vla_razor.errors import BadInputError

DemoSource = Literal["motion_planning", "rl_expert"]


@dataclass(frozen=True)
class TaskSpec:
    name: str
    """Short name used everywhere in vla-razor (``PickCube``)."""
    env_id: str
    """ManiSkill environment id (``PickCube-v1``)."""
    instructions: tuple[str, ...]
    """Natural-language instructions; the first is the canonical one, the others paraphrases."""
    max_episode_steps: int
    """Episode horizon in environment steps. For tasks with motion-planning demos it is set from the
    measured demo lengths in pd_ee_delta_pose (about 1.2x the longest of 20 demos, docs/benchmarks.md),
    not ManiSkill's default of 50: a policy that imitates the planner needs that long. The other tasks
    keep ManiSkill's default."""
    success: str
    """What ManiSkill's ``success`` flag means for this task."""
    demo_source: DemoSource
    """Where expert demonstrations come from: ManiSkill's motion-planning solution, or an RL expert."""

    @property
    def instruction(self) -> str:
        return self.instructions[0]


_TASKS = [
    TaskSpec(
        "PickCube",
        "PickCube-v1",
        ("pick up the red cube and move it to the green goal", "lift the red cube to the green target point"),
        100,
        "cube within 2.5 cm of the goal and the robot static",
        "motion_planning",
    ),
    TaskSpec(
        "PushCube",
        "PushCube-v1",
        ("push the red cube to the target region", "slide the cube forward onto the goal"),
        100,
        "cube inside the goal region",
        "motion_planning",
    ),
    TaskSpec(
        "PullCube",
        "PullCube-v1",
        ("pull the red cube back to the target region", "drag the cube toward the robot onto the goal"),
        100,
        "cube inside the goal region",
        "motion_planning",
    ),
    TaskSpec(
        "StackCube",
        "StackCube-v1",
        ("stack the red cube on top of the green cube", "put the red block on the green block"),
        160,
        "red cube on the green cube and released",
        "motion_planning",
    ),
    TaskSpec(
        "PokeCube",
        "PokeCube-v1",
        ("use the peg to poke the cube to the goal", "grab the peg and push the cube with it"),
        50,
        "cube at the goal, pushed with the peg",
        "rl_expert",
    ),
    TaskSpec(
        "LiftPegUpright",
        "LiftPegUpright-v1",
        ("lift the peg and stand it upright", "turn the lying peg so it stands up"),
        220,
        "peg upright on the table",
        "motion_planning",
    ),
    TaskSpec(
        "PlaceSphere",
        "PlaceSphere-v1",
        ("place the sphere into the bin", "put the ball in the little bin"),
        200,
        "sphere inside the bin and released",
        "motion_planning",
    ),
    TaskSpec(
        "PegInsertionSide",
        "PegInsertionSide-v1",
        ("insert the peg into the hole from the side", "push the peg sideways into the box hole"),
        240,
        "peg inserted half-way into the hole",
        "motion_planning",
    ),
    TaskSpec(
        "RollBall",
        "RollBall-v1",
        ("roll the ball to the goal region", "push the ball so it rolls onto the target"),
        80,
        "ball inside the goal region",
        "rl_expert",
    ),
    TaskSpec(
        "PushT",
        "PushT-v1",
        ("push the T-shaped block to match the target pose", "align the T block with its outline"),
        100,
        "T block overlaps its goal pose by 90%",
        "rl_expert",
    ),
]

TASKS: dict[str, TaskSpec] = {t.name: t for t in _TASKS}
_BY_ENV_ID = {t.env_id: t for t in _TASKS}

# ManiSkill tasks that download assets on first use (YCB objects, PartNet-Mobility, scenes). Named
# here so the error can say why they are refused rather than just "unknown".
NEEDS_ASSETS = (
    "PickSingleYCB",
    "PickClutterYCB",
    "OpenCabinetDrawer",
    "OpenCabinetDoor",
    "TurnFaucet",
    "AssemblingKits",
    "PlugCharger",
    "ReplicaCAD",
    "ArchitecTHOR",
)


class UnknownTaskError(BadInputError, KeyError):
    """A task name that is not in the registry; the message lists the known ones."""

    def __str__(self) -> str:  # KeyError would print the message with quotes
        return self.args[0]


def get_task(name: str) -> TaskSpec:
    """Look a task up by short name (``PickCube``) or ManiSkill id (``PickCube-v1``)."""
    if name in TASKS:
        return TASKS[name]
    if name in _BY_ENV_ID:
        return _BY_ENV_ID[name]
    short = name.split("-v")[0]
    if any(short.startswith(prefix) or prefix in short for prefix in NEEDS_ASSETS):
        raise UnknownTaskError(
            f"task {name!r} needs downloaded assets, which vla-razor does not fetch (no downloads at run "
            f"time); use one of the asset-free tasks: {', '.join(TASKS)}"
        )
    close = difflib.get_close_matches(short, list(TASKS), n=2, cutoff=0.6)
    hint = f" Did you mean {' or '.join(close)}?" if close else ""
    raise UnknownTaskError(f"unknown task {name!r}.{hint} Known tasks: {', '.join(TASKS)}")


def task_index(name: str) -> int:
    """A stable integer id of the task (its position in the registry), used in observations."""
    return list(TASKS).index(get_task(name).name)
