"""Expert demonstrations: generate them with ManiSkill's own tools, store them, load them canonically.

Two sources, chosen by the task's ``demo_source`` in the registry:

* ``motion_planning``: ManiSkill's motion-planning solutions
  (:mod:`mani_skill.examples.motionplanning.panda.solutions`), recorded exactly as ManiSkill's
  ``motionplanning/panda/run.py`` does (``pd_joint_pos`` control, :class:`RecordEpisode`), then
  converted by ManiSkill's replay tool (:mod:`mani_skill.trajectory.replay_trajectory`) to the target
  control mode (default ``pd_ee_delta_pose``) and the ``state_dict`` observation mode. A plan that the
  solver gives up on (returns -1 or raises) or whose last step is not a success is dropped and counted
  as a failed plan; a plan whose converted replay does not end in success is dropped and counted as a
  failed conversion. Seeds are tried in order (``seed``, ``seed + 1``, ...) until enough demos are
  kept, up to ``2 * num_episodes + 10`` attempts per call.
* ``rl_expert`` (no planner exists): :func:`train_rl_expert` trains a state-based stable-baselines3
  PPO expert directly in the target control mode, then rolls it out (deterministic actions) under
  :class:`RecordEpisode`. With ``keep="all"`` (the default) EVERY rollout is kept with its per-step
  and final ``success`` flag, because an expert trained on this CPU budget is weak and keeping only
  successes could leave nothing; filter with ``load_demos(..., successful_only=True)``. With
  ``keep="success"`` only successful rollouts are kept (up to the same attempt cap).

Layout, under ``out_dir/<TaskName>/<control_mode>/``::

    trajectory.state_dict.<control_mode>.physx_cpu.h5    ManiSkill's trajectory format (traj_<i> groups)
    trajectory.state_dict.<control_mode>.physx_cpu.json  ManiSkill's episode metadata (seeds, success, ...)
    index.json                                           vla-razor's summary (:class:`DemoIndex`), written
                                                         last
    expert/ppo.zip, expert/expert.json                   the RL expert (rl_expert tasks only)

The trajectory files are assembled in a private staging directory and renamed into place, and
``index.json`` is written atomically after them, so the index is the completeness marker.

Episode length vs the task horizon: motion-planned demos are often LONGER than ManiSkill's default
horizons (PickCube's 20 demos take 49-91 steps against ManiSkill's 50; PlaceSphere's reach 282;
conversion to end-effector control can add steps too). They are KEPT whole and not truncated: cutting a demo
at the horizon would drop the part that reaches success. The index stores every episode's length,
length statistics and ``num_longer_than_horizon``, so the training and evaluation code can choose a
horizon from data (or filter demos by length). RL-expert rollouts are at most the horizon by
construction.

Re-running with the same arguments reuses what exists: when ``index.json`` matches the request
(task, control mode, observation mode, source, base seed, ManiSkill version, and for RL experts the
training budget and keep policy), its files are intact and it holds at least ``num_episodes`` demos,
nothing is generated (a larger existing set is returned whole). When it matches but holds fewer,
ONLY the missing demos are generated, from the next untried seed, and merged into the existing files.
Anything that does not match is regenerated from scratch.

Loading (:func:`load_demos`) gives per episode canonical observations (:func:`canonicalize`) with
``T + 1`` entries (the observation before every action plus the final one; ``obs[k][t]`` is what
``actions[t]`` was taken from) and canonical actions ``[T, 7]``: the end-effector delta pose and
gripper. Tasks whose robot has no gripper (PushT's stick, 6-D actions) get a zero appended as the
gripper entry, which :func:`to_task_action` drops again."""

from .generate import generate_demos
from .index import (
    CANONICAL_CONTROL_MODES,
    DEFAULT_CONTROL_MODE,
    DEFAULT_OUT,
    DEFAULT_RL_TIMESTEPS,
    INDEX_FORMAT,
    INDEX_NAME,
    SMOKE_EPISODES,
    SMOKE_RL_TIMESTEPS,
    DemoEpisode,
    DemoFileError,
    DemoGenerationError,
    DemoIndex,
    demo_dir,
    length_stats,
    summary_line,
    trajectory_name,
)
from .load import canonical_actions, load_demos
from .rl_expert import train_rl_expert

__all__ = [
    "CANONICAL_CONTROL_MODES",
    "DEFAULT_CONTROL_MODE",
    "DEFAULT_OUT",
    "DEFAULT_RL_TIMESTEPS",
    "INDEX_FORMAT",
    "INDEX_NAME",
    "SMOKE_EPISODES",
    "SMOKE_RL_TIMESTEPS",
    "DemoEpisode",
    "DemoFileError",
    "DemoGenerationError",
    "DemoIndex",
    "canonical_actions",
    "demo_dir",
    "generate_demos",
    "length_stats",
    "load_demos",
    "summary_line",
    "train_rl_expert",
    "trajectory_name",
]
