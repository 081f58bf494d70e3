"""`make_vec_env`: vectorized ManiSkill3 or Meta-World tasks with canonical observations (Gymnasium 1.x
vector API).

Autoreset semantics (both backends): Gymnasium's SAME_STEP mode. When a sub-env's episode ends
(``terminated or truncated``), the observation returned by that same ``step`` is already the first
observation of its next episode; the last observation of the finished episode is in
``info["final_obs"]`` and its info (``success`` ...) in ``info["final_info"]``, both masked by
``info["_final_obs"]``. A learner bootstraps truncated episodes from ``final_obs``. ``info["success"]``
is the success flag of the step just taken (of the finished episode's last step for finished
sub-envs, taken from ``final_info``).

Backends (Meta-World runs on ``cpu``, state observations only, one MuJoCo model per sub-env):
- ``cpu``: ManiSkill's ``physx_cpu`` physics, one scene per sub-env. ``vectorization="sync"`` steps
  them in this process (:class:`InProcessVectorEnv`), ``"async"`` runs each in its own worker
  process (Gymnasium's AsyncVectorEnv), which pays off when a step is costly (RGB rendering).
  Observations are numpy arrays. Tasks may differ across sub-envs (multi-task).
- ``gpu``: ManiSkill's batched ``physx_cuda`` simulation, all sub-envs in one process, observations
  are torch tensors on the GPU; one task per vector env.
- ``auto``: ``gpu`` when CUDA is available and a single task is asked for, else ``cpu``.
"""

from __future__ import annotations

from typing import Literal, Sequence

import gymnasium as gym
import numpy as np
import torch

from .chunking import ActionChunkWrapper
from .maniskill import DEFAULT_CONTROL_MODE, ManiSkillTaskEnv, ObsMode, RewardMode
from .registry import get_task
from .suites import is_suite, load_suite

Backend = Literal["auto", "cpu", "gpu"]


def resolve_tasks(tasks: str | Sequence[str]) -> list[str]:
    """Task short names from a task name, a ManiSkill id, a suite name (all its tasks), or a list of those."""
    items = [tasks] if isinstance(tasks, str) else list(tasks)
    if not items:
        raise ValueError("no task given")
    names: list[str] = []
    for item in items:
        if is_suite(item):
            names.extend(load_suite(item).tasks)
        else:
            names.append(get_task(item).name)
    return names


def _stack(items: list[dict]) -> dict[str, np.ndarray]:
    return {key: np.stack([item[key] for item in items]) for key in items[0]}


def _stack_info(infos: list[dict], running: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The keys every (running) sub-env's info has, stacked; a sub-env left out (``running`` false) that
    lacks one (its last info is its reset's) gets that key's zero."""
    rows = [i for i, info in enumerate(infos) if running is None or running[i]] or range(len(infos))
    keys = [k for k in infos[rows[0]] if all(k in infos[i] for i in rows)]
    return {k: np.array([i[k] if k in i else np.zeros_like(infos[rows[0]][k]) for i in infos]) for k in keys}


class InProcessVectorEnv(gym.vector.VectorEnv):
    """Sub-envs stepped one after the other in this process, SAME_STEP autoreset.

    Gymnasium's SyncVectorEnv does the same job with general-purpose machinery (deep copies, per-key
    info masks) that costs about 7% of a ManiSkill CPU step; this loop costs well under 1%
    (benchmarks/bench_env_overhead.py). Observations are fresh arrays every step (safe to keep).
    """

    metadata = {"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP}

    def __init__(self, env_fns):
        self.envs = [fn() for fn in env_fns]
        self.num_envs = len(self.envs)
        self.single_observation_space = self.envs[0].observation_space
        self.single_action_space = self.envs[0].action_space
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, self.num_envs)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, self.num_envs)
        # Written in place each step, then copied once into the returned dict.
        self._obs_buffer = {
            key: np.zeros((self.num_envs, *space.shape), space.dtype)
            for key, space in self.single_observation_space.spaces.items()
        }

    def reset(self, *, seed=None, options=None):
        seeds = (
            seed
            if isinstance(seed, (list, tuple))
            else [None if seed is None else seed + i for i in range(self.num_envs)]
        )
        if len(seeds) != self.num_envs:
            raise ValueError(f"reset got {len(seeds)} seeds for {self.num_envs} sub-envs")
        results = [env.reset(seed=s, options=options) for env, s in zip(self.envs, seeds)]
        for i, (o, _) in enumerate(results):
            for key, value in o.items():
                self._obs_buffer[key][i] = value
        self._infos = [r[1] for r in results]
        return _stack([r[0] for r in results]), _stack_info(self._infos)

    def step(self, actions, running: np.ndarray | None = None):
        """Step every sub-env, or (``running``, a boolean mask) only those: the others are not stepped and
        return their last observation and info, no reward, and neither terminated nor truncated. An
        evaluation steps only its unfinished episodes, so a finished one costs nothing more."""
        actions = np.asarray(actions)
        if actions.shape != self.action_space.shape:
            raise ValueError(f"actions must have shape {self.action_space.shape}, got {actions.shape}")
        obs, infos, finals = self._obs_buffer, [], {}
        rewards = np.zeros(self.num_envs, np.float64)
        terminated = np.zeros(self.num_envs, bool)
        truncated = np.zeros(self.num_envs, bool)
        for i, env in enumerate(self.envs):
            if running is not None and not running[i]:
                infos.append(self._infos[i])
                continue
            o, rewards[i], terminated[i], truncated[i], info = env.step(actions[i])
            if terminated[i] or truncated[i]:
                finals[i] = (o, info)
                o, _ = env.reset()
            for key, value in o.items():
                obs[key][i] = value
            infos.append(info)
        self._infos = infos
        batch_info = _stack_info(infos, running)
        batch_obs = {key: value.copy() for key, value in obs.items()}
        if finals:
            done = terminated | truncated
            batch_info["final_obs"] = {key: value.copy() for key, value in batch_obs.items()}
            for i, (final_obs, _) in finals.items():
                for key, value in final_obs.items():
                    batch_info["final_obs"][key][i] = value
            batch_info["final_info"] = _stack_info(
                [finals[i][1] if i in finals else infos[i] for i in range(self.num_envs)]
            )
            batch_info["_final_obs"] = batch_info["_final_info"] = done
        return batch_obs, rewards, terminated, truncated, batch_info

    def render(self):
        return np.stack([env.render() for env in self.envs])

    def close_extras(self, **kwargs):
        for env in self.envs:
            env.close()


class TaskVectorEnv(gym.vector.VectorWrapper):
    """The vector env make_vec_env returns: task metadata per sub-env, the factory seed as default first
    reset.

    Also fills ``info["success"]`` of finished sub-envs from their ``final_info`` so that ``success``
    always refers to the step just taken.
    """

    def __init__(self, env: gym.vector.VectorEnv, task_names: list[str], seed: int | None):
        super().__init__(env)
        self.task_names = task_names
        self.instructions = [get_task(t).instruction for t in task_names]
        self._default_seed = seed
        self._reset_once = False

    def reset(self, *, seed=None, options=None):
        if seed is None and not self._reset_once:
            seed = self._default_seed
        self._reset_once = True
        return self.env.reset(seed=seed, options=options)

    def step(self, actions, running: np.ndarray | None = None):
        """One step of every sub-env; ``running`` (a boolean mask, in-process sub-envs only) steps only
        those."""
        if running is None:
            obs, reward, terminated, truncated, info = self.env.step(actions)
        elif isinstance(self.env, InProcessVectorEnv):
            obs, reward, terminated, truncated, info = self.env.step(actions, running)
        else:
            raise ValueError(
                "stepping some sub-envs only (running=...) needs the cpu backend's sync vectorization"
            )
        if "_final_obs" in info and not isinstance(info["final_obs"], dict):
            # Gymnasium's AsyncVectorEnv gives an object array of per-env dicts; the learner wants one batched
            # dict, the same layout as ``obs`` (rows of unfinished sub-envs hold their current observation).
            finished = info["_final_obs"]
            info["final_obs"] = {
                key: np.stack(
                    [info["final_obs"][i][key] if finished[i] else obs[key][i] for i in range(len(finished))]
                )
                for key in obs
            }
        if "_final_info" in info:
            # Gymnasium puts the reset's info in ``info`` for finished sub-envs; report the info of
            # the step just taken instead (as InProcessVectorEnv does), so ``success`` means the same
            # thing in every backend.
            finished, final = info["_final_info"], info["final_info"]
            for key, value in final.items():
                if key.startswith("_"):
                    continue
                current = info.get(key, value)
                info[key] = np.where(finished, value, current)
        return obs, reward, terminated, truncated, info


def make_vec_env(
    tasks: str | Sequence[str],
    num_envs: int = 1,
    obs_mode: ObsMode = "state",
    control_mode: str = DEFAULT_CONTROL_MODE,
    backend: Backend = "auto",
    seed: int | None = None,
    reward_mode: RewardMode = "normalized_dense",
    chunk_size: int = 1,
    vectorization: Literal["sync", "async"] = "sync",
    image_size: int = 64,
    max_episode_steps: int | None = None,
    render_mode: str | None = None,
    render_size: int = 256,
) -> gym.vector.VectorEnv:
    """A vector env of ``num_envs`` sub-envs; sub-env ``i`` runs task ``tasks[i % len(tasks)]``.

    ``seed`` is used by the first ``reset()`` that is called without one (sub-env i gets seed + i).
    ``chunk_size > 1`` makes every action an ``[H, 7]`` chunk (see :class:`ActionChunkWrapper`).
    The env has ``task_names`` and ``instructions`` (one per sub-env).
    """
    names = resolve_tasks(tasks)
    if num_envs < 1:
        raise ValueError(f"num_envs must be >= 1, got {num_envs}")
    worlds = {get_task(t).world for t in names}
    if len(worlds) > 1:
        raise ValueError(f"one vector env runs one world, got tasks of {sorted(worlds)}: {names}")
    metaworld = worlds == {"metaworld"}
    if metaworld and (obs_mode != "state" or backend == "gpu"):
        raise ValueError(
            "Meta-World runs state observations on the CPU here (obs_mode='state', backend 'cpu' or 'auto'); "
            f"got obs_mode={obs_mode!r}, backend={backend!r}"
        )
    if backend == "auto":
        backend = "gpu" if not metaworld and torch.cuda.is_available() and len(set(names)) == 1 else "cpu"
    per_env = [names[i % len(names)] for i in range(num_envs)]

    if backend == "gpu":
        from .gpu import ManiSkillGPUVectorEnv

        if len(set(names)) > 1:
            raise ValueError(
                f"the gpu backend batches one task per vector env, got {sorted(set(names))}; "
                "make one vector env per task, or use backend='cpu' for a mixed multi-task env"
            )
        env = ManiSkillGPUVectorEnv(
            get_task(names[0]),
            num_envs,
            obs_mode,
            control_mode,
            reward_mode,
            image_size,
            chunk_size,
            max_episode_steps,
            render_mode,
            render_size,
            seed,
        )
        env.task_names, env.instructions = per_env, [get_task(t).instruction for t in per_env]
        return env
    if backend != "cpu":
        raise ValueError(f"backend must be 'auto', 'cpu' or 'gpu', got {backend!r}")

    def factory(task: str):
        def make():
            if metaworld:
                from .metaworld import MetaWorldTaskEnv

                env = MetaWorldTaskEnv(task, render_mode, render_size, max_episode_steps, reward_mode)
                return ActionChunkWrapper(env, chunk_size) if chunk_size > 1 else env
            env = ManiSkillTaskEnv(
                task,
                obs_mode,
                control_mode,
                reward_mode,
                image_size,
                render_mode,
                render_size,
                max_episode_steps,
            )
            return ActionChunkWrapper(env, chunk_size) if chunk_size > 1 else env

        return make

    fns = [factory(t) for t in per_env]
    mode = gym.vector.AutoresetMode.SAME_STEP
    if vectorization == "sync":
        vec = InProcessVectorEnv(fns)
    elif vectorization == "async":
        vec = gym.vector.AsyncVectorEnv(fns, autoreset_mode=mode, context="spawn")
    else:
        raise ValueError(f"vectorization must be 'sync' or 'async', got {vectorization!r}")
    return TaskVectorEnv(vec, per_env, seed)
