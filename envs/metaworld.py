"""One Meta-World v3 task as a plain Gymnasium env with canonical observations and actions (MuJoCo, CPU).

Meta-World's observation is 39 numbers: the hand position (3) and gripper opening (1), two objects'
positions and quaternions (2 x 7; the second is zero in one-object tasks), the same 18 numbers of the
previous step, and the goal position (3). In the canonical layout of :mod:`vla_razor.envs.observations`:

=============  ==================================================================================
``proprio``    hand xyz, gripper, previous hand xyz, previous gripper (8 of 25, zero-padded)
``state``      objects (14), previous objects (14), goal (3): 31 of 32, ``state_mask`` 1 there
``task_id``    the task's index among Meta-World's 50 (:func:`~vla_razor.envs.registry.task_index`)
=============  ==================================================================================

Actions are canonical 7-D; Meta-World reads the first four (hand position delta, gripper), as every task
reads the leading entries of the canonical action. Resets are seeded and randomise the object and goal
positions (Meta-World's ``seeded_rand_vec``: the same seed gives the same scene); an episode ends on success
(as ManiSkill's do, and LeRobot's Meta-World environment) or at the task's horizon (Meta-World's 500 steps).
"""

from __future__ import annotations

import os
import warnings
from importlib.metadata import version

import gymnasium as gym
import numpy as np

from vla_razor.errors import BadInputError

from .observations import ACTION_DIM, PROPRIO_DIM, STATE_DIM
from .registry import METAWORLD_TASKS, get_task, task_index

RAW_DIM = 39
ACTION_WIDTH = 4
"""Meta-World's own action: hand position delta (3) and gripper (1), in [-1, 1]."""
CONTROL_MODE = "mocap_delta_xyz_gripper"
"""The name demonstrations of Meta-World are stored under (its only control mode)."""
_PROPRIO = np.r_[0:4, 18:22]
_STATE = np.r_[4:18, 22:36, 36:39]


class MetaWorldRenderError(BadInputError):
    """Meta-World cannot render here: MuJoCo found no OpenGL context (``MUJOCO_GL``: egl on a GPU machine,
    osmesa with libOSMesa installed)."""


def import_metaworld():
    """Import Meta-World, with its gymnasium deprecation warnings silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import metaworld
    return metaworld


def canonicalize(raw: np.ndarray, task_id: int) -> dict[str, np.ndarray]:
    """Meta-World observations ``[..., 39]`` of the task with id ``task_id`` (:func:`task_index`) -> the
    canonical arrays (float32)."""
    raw = np.asarray(raw, dtype=np.float32)
    if raw.shape[-1] != RAW_DIM:
        raise ValueError(f"a Meta-World observation has {RAW_DIM} entries, got shape {raw.shape}")
    lead = raw.shape[:-1]
    proprio = np.zeros((*lead, PROPRIO_DIM), np.float32)
    proprio[..., : len(_PROPRIO)] = raw[..., _PROPRIO]
    state = np.zeros((*lead, STATE_DIM), np.float32)
    state[..., : len(_STATE)] = raw[..., _STATE]
    mask = np.zeros((*lead, STATE_DIM), np.float32)
    mask[..., : len(_STATE)] = 1.0
    return {
        "proprio": proprio,
        "state": state,
        "state_mask": mask,
        "task_id": np.full(lead, task_id, np.int64),
    }


def metaworld_version() -> str:
    return f"metaworld {version('metaworld')}"


def scripted_expert(task: str):
    """Meta-World's scripted policy of ``task``: ``expert.get_action(raw_obs)`` -> its 4-D action."""
    import_metaworld()
    from metaworld.policies import ENV_POLICY_MAP

    return ENV_POLICY_MAP[get_task(task).env_id]()


def observation_space() -> gym.spaces.Dict:
    """The canonical observation space of Meta-World tasks (state only)."""
    return gym.spaces.Dict(
        {
            "proprio": gym.spaces.Box(-np.inf, np.inf, (PROPRIO_DIM,), np.float32),
            "state": gym.spaces.Box(-np.inf, np.inf, (STATE_DIM,), np.float32),
            "state_mask": gym.spaces.Box(0.0, 1.0, (STATE_DIM,), np.float32),
            "task_id": gym.spaces.Discrete(len(METAWORLD_TASKS)),
        }
    )


class MetaWorldTaskEnv(gym.Env):
    """A single Meta-World v3 task with canonical observations and 7-D canonical actions in [-1, 1]."""

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(
        self,
        task: str,
        render_mode: str | None = None,
        render_size: int = 256,
        max_episode_steps: int | None = None,
        reward_mode: str = "dense",
    ):
        self.task = get_task(task)
        if self.task.world != "metaworld":
            raise ValueError(f"{self.task.name} is a {self.task.world} task, not a Meta-World one")
        if reward_mode not in ("dense", "normalized_dense", "sparse"):
            raise ValueError(
                f"reward_mode must be 'dense', 'normalized_dense' or 'sparse', got {reward_mode!r}"
            )
        metaworld = import_metaworld()
        cls = metaworld.ALL_V3_ENVIRONMENTS_GOAL_OBSERVABLE[f"{self.task.env_id}-goal-observable"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._env = cls(seed=0, render_mode=render_mode)
        if render_mode is not None:
            self._env.mujoco_renderer.width = self._env.mujoco_renderer.height = render_size
        # A new object and goal position at every reset, drawn from the env's seeded generator.
        self._env._freeze_rand_vec = False
        self._env.seeded_rand_vec = True
        self.max_episode_steps = min(
            max_episode_steps or self.task.max_episode_steps, self._env.max_path_length
        )
        self.reward_mode = reward_mode
        self.render_mode = render_mode
        self.observation_space = observation_space()
        self.action_space = gym.spaces.Box(-1.0, 1.0, (ACTION_DIM,), np.float32)
        self._task_id = task_index(self.task.name)
        self._steps = 0
        self.raw_obs: np.ndarray | None = None
        """Meta-World's 39-number observation of the last reset or step (what its scripted experts read)."""

    @property
    def instruction(self) -> str:
        return self.task.instruction

    @property
    def control_freq(self) -> int:
        """Actions per simulated second (a dataset's fps): MuJoCo's timestep times Meta-World's frame skip."""
        return int(round(1.0 / (self._env.model.opt.timestep * self._env.frame_skip)))

    def _obs(self, raw: np.ndarray) -> dict:
        out = canonicalize(raw, self._task_id)
        out["task_id"] = self._task_id  # a plain int, as ManiSkill's envs give
        return out

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self._env.seed(seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            raw, _ = self._env.reset()
        self._steps = 0
        self.raw_obs = raw
        return self._obs(raw), {"success": False, "task_id": self._task_id}

    def step(self, action):
        action = np.asarray(action, dtype=np.float32)
        if action.shape != (ACTION_DIM,):
            raise ValueError(f"{self.task.name}: action must have shape ({ACTION_DIM},), got {action.shape}")
        raw, reward, _, _, info = self._env.step(np.clip(action[:ACTION_WIDTH], -1.0, 1.0))
        self._steps += 1
        self.raw_obs = raw
        success = bool(info.get("success", 0.0))
        if self.reward_mode == "sparse":
            reward = float(success)
        elif self.reward_mode == "normalized_dense":
            reward = float(reward) / 10.0  # Meta-World's dense reward lies in [0, 10]
        truncated = not success and self._steps >= self.max_episode_steps
        return (
            self._obs(raw),
            float(reward),
            success,
            truncated,
            {"success": success, "task_id": self._task_id},
        )

    def render(self):
        try:
            return self._env.render()
        except (AttributeError, ImportError, RuntimeError) as err:  # PyOpenGL/MuJoCo without a GL context
            raise MetaWorldRenderError(
                f"Meta-World cannot render {self.task.name} on this machine ({type(err).__name__}: {err}); "
                f"MUJOCO_GL={os.environ.get('MUJOCO_GL', '(unset)')}: use MUJOCO_GL=egl on a GPU machine, "
                "or set video_episodes=0"
            ) from err

    def close(self):
        self._env.close()
