"""The task registry: every task vla-razor can train or evaluate on, with its language instructions, by
world (simulator).

- ``maniskill``: ManiSkill3 Panda tabletop tasks that need no asset download (a task that needs
  downloaded assets is refused up front: ManiSkill would otherwise prompt on stdin and die with EOFError in
  a non-interactive run).
- ``metaworld``: Meta-World v3's 50 Sawyer tasks, by Meta-World's own names (``pick-place-v3``).

A policy serves one world: task ids (:func:`task_index`) count within a world.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Literal

from vla_razor.errors import BadInputError

DemoSource = Literal["motion_planning", "rl_expert", "scripted"]
World = Literal["maniskill", "metaworld"]
WORLDS: tuple[World, ...] = ("maniskill", "metaworld")


@dataclass(frozen=True)
class TaskSpec:
    name: str
    """Short name used everywhere in vla-razor (``PickCube``)."""
    env_id: str
    """The simulator's environment id (``PickCube-v1``, ``pick-place-v3``)."""
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
    """Where expert demonstrations come from: ManiSkill's motion-planning solution, an RL expert, or
    Meta-World's scripted policy."""
    world: World = "maniskill"
    """The simulator the task runs in."""

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
"""The ManiSkill tasks (the ``maniskill`` world), in task-id order."""

# Meta-World v3's 50 tasks (metaworld.ALL_V3_ENVIRONMENTS order), each with the task string LeRobot's
# Meta-World environment uses for it (lerobot/envs/metaworld_config.json): an exported LeRobotDataset
# names its tasks as LeRobot does.
METAWORLD_INSTRUCTIONS = {
    "assembly-v3": "Pick up a nut and place it onto a peg",
    "basketball-v3": "Dunk the basketball into the basket",
    "bin-picking-v3": "Grasp the puck from one bin and place it into another bin",
    "box-close-v3": "Grasp the cover and close the box with it",
    "button-press-topdown-v3": "Press a button from the top",
    "button-press-topdown-wall-v3": "Bypass a wall and press a button from the top",
    "button-press-v3": "Press a button",
    "button-press-wall-v3": "Bypass a wall and press a button",
    "coffee-button-v3": "Push a button on the coffee machine",
    "coffee-pull-v3": "Pull a mug from a coffee machine",
    "coffee-push-v3": "Push a mug under a coffee machine",
    "dial-turn-v3": "Rotate a dial 180 degrees",
    "disassemble-v3": "Pick a nut out of a peg",
    "door-close-v3": "Close a door with a revolving joint",
    "door-lock-v3": "Lock the door by rotating the lock clockwise",
    "door-open-v3": "Open a door with a revolving joint",
    "door-unlock-v3": "Unlock the door by rotating the lock counter-clockwise",
    "hand-insert-v3": "Insert the gripper into a hole",
    "drawer-close-v3": "Push and close a drawer",
    "drawer-open-v3": "Open a drawer",
    "faucet-open-v3": "Rotate the faucet counter-clockwise",
    "faucet-close-v3": "Rotate the faucet clockwise",
    "hammer-v3": "Hammer a screw on the wall",
    "handle-press-side-v3": "Press a handle down sideways",
    "handle-press-v3": "Press a handle down",
    "handle-pull-side-v3": "Pull a handle up sideways",
    "handle-pull-v3": "Pull a handle up",
    "lever-pull-v3": "Pull a lever down 90 degrees",
    "pick-place-wall-v3": "Pick a puck, bypass a wall and place the puck",
    "pick-out-of-hole-v3": "Pick up a puck from a hole",
    "pick-place-v3": "Pick and place a puck to a goal",
    "plate-slide-v3": "Slide a plate into a cabinet",
    "plate-slide-side-v3": "Slide a plate into a cabinet sideways",
    "plate-slide-back-v3": "Get a plate from the cabinet",
    "plate-slide-back-side-v3": "Get a plate from the cabinet sideways",
    "peg-insert-side-v3": "Insert a peg sideways",
    "peg-unplug-side-v3": "Unplug a peg sideways",
    "soccer-v3": "Kick a soccer into the goal",
    "stick-push-v3": "Grasp a stick and push a box using the stick",
    "stick-pull-v3": "Grasp a stick and pull a box with the stick",
    "push-v3": "Push the puck to a goal",
    "push-wall-v3": "Bypass a wall and push a puck to a goal",
    "push-back-v3": "Push the puck to a goal",
    "reach-v3": "Reach a goal position",
    "reach-wall-v3": "Bypass a wall and reach a goal",
    "shelf-place-v3": "Pick and place a puck onto a shelf",
    "sweep-into-v3": "Sweep a puck into a hole",
    "sweep-v3": "Sweep a puck off the table",
    "window-open-v3": "Push and open a window",
    "window-close-v3": "Push and close a window",
}

METAWORLD_TASKS: dict[str, TaskSpec] = {
    name: TaskSpec(
        name,
        name,
        (instruction,),
        500,  # Meta-World's max_path_length
        "Meta-World's success flag (task-specific distance thresholds)",
        "scripted",
        "metaworld",
    )
    for name, instruction in METAWORLD_INSTRUCTIONS.items()
}
"""The Meta-World v3 tasks (the ``metaworld`` world), in task-id order."""

WORLD_TASKS: dict[str, dict[str, TaskSpec]] = {"maniskill": TASKS, "metaworld": METAWORLD_TASKS}
ALL_TASKS: dict[str, TaskSpec] = {**TASKS, **METAWORLD_TASKS}
_BY_ENV_ID = {t.env_id: t for t in ALL_TASKS.values()}

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
    """Look a task up by short name (``PickCube``, ``pick-place-v3``) or ManiSkill id (``PickCube-v1``)."""
    if name in ALL_TASKS:
        return ALL_TASKS[name]
    if name in _BY_ENV_ID:
        return _BY_ENV_ID[name]
    short = name.split("-v")[0]
    if any(short.startswith(prefix) or prefix in short for prefix in NEEDS_ASSETS):
        raise UnknownTaskError(
            f"task {name!r} needs downloaded assets, which vla-razor does not fetch (no downloads at run "
            f"time); use one of the asset-free tasks: {', '.join(TASKS)}"
        )
    close = difflib.get_close_matches(name, list(ALL_TASKS), n=2, cutoff=0.6)
    hint = f" Did you mean {' or '.join(close)}?" if close else ""
    raise UnknownTaskError(
        f"unknown task {name!r}.{hint} Known tasks: ManiSkill {', '.join(TASKS)}; Meta-World "
        f"{', '.join(METAWORLD_TASKS)}"
    )


def world_tasks(world: str) -> dict[str, TaskSpec]:
    """The tasks of one world, in task-id order."""
    if world not in WORLD_TASKS:
        raise UnknownTaskError(f"unknown world {world!r}; worlds: {', '.join(WORLDS)}")
    return WORLD_TASKS[world]


def task_index(name: str) -> int:
    """A stable integer id of the task within its world (its position there), used in observations."""
    spec = get_task(name)
    return list(WORLD_TASKS[spec.world]).index(spec.name)
