"""Evaluate a policy on tasks: success rates with Wilson 95% intervals, fixed seeds, real simulator.

Episode ``i`` of a task starts from ``reset(seed=seed + i)``, so two policies evaluated with the same
seed face the same initial states (paired comparisons: base vs fine-tuned).
"""

from __future__ import annotations

import atexit
import math
from collections import OrderedDict
from dataclasses import asdict, dataclass

import numpy as np
import torch
from tabulate import tabulate

from vla_razor.envs.registry import get_task
from vla_razor.errors import ConfigError
from vla_razor.progress import progress as progress_bar


@dataclass(frozen=True)
class SuccessRate:
    successes: int
    episodes: int
    ci_low: float
    ci_high: float

    @property
    def rate(self) -> float:
        return self.successes / self.episodes if self.episodes else float("nan")

    def as_dict(self) -> dict:
        return {**asdict(self), "rate": self.rate}

    def __str__(self) -> str:
        return (
            f"{self.rate:6.1%} [{self.ci_low:5.1%}, {self.ci_high:5.1%}] ({self.successes}/{self.episodes})"
        )


def wilson_interval(successes: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (95% by default); (0, 1) for n = 0."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


_EVAL_ENVS: OrderedDict[tuple, object] = OrderedDict()
"""Evaluation envs kept alive between evaluations in this process, by their settings, the most recently used
last. ManiSkill does not give back all of a closed scene's memory (a few MB per sub-env), so a training run
that built new envs at every periodic evaluation grew by about 160 MB an evaluation and slowed down; reset
with the evaluation's seeds, a kept env starts the very episodes a new one would (tested)."""
MAX_EVAL_SUB_ENVS = 256
"""How many evaluation sub-envs (episodes played at once, summed over the kept envs) stay alive at most; the
least recently used env is closed first, and the env in use is always kept. The budget is in sub-envs
because their memory is: a Meta-World sub-env holds about 25 MB, so a final evaluation of 50 episodes on each
of 11 tasks kept 550 of them (10 GB) under a cap on the number of envs. A periodic evaluation visits every
suite task in turn, so a budget below one evaluation's sub-envs closes exactly the env the next task needs
and rebuilds them all every time: 256 holds an 11-task Meta-World suite's periodic evaluation (20 test and
validation episodes of the new task, 3 of each prior task: 50 sub-envs) several times over
(benchmarks/bench_suite_eval.py)."""


def _evaluation_env(
    task: str, episodes: int, execute: int, max_episode_steps: int | None, observations: dict
):
    """The kept evaluation env of these settings, built on first use."""
    from vla_razor.envs import make_vec_env

    key = (task, episodes, execute, max_episode_steps, tuple(sorted(observations.items())))
    env = _EVAL_ENVS.pop(key, None)
    if env is None:
        env = make_vec_env(
            task,
            num_envs=episodes,
            backend="cpu",
            chunk_size=execute,
            max_episode_steps=max_episode_steps,
            **observations,
        )
    _EVAL_ENVS[key] = env
    while len(_EVAL_ENVS) > 1 and sum(k[1] for k in _EVAL_ENVS) > MAX_EVAL_SUB_ENVS:
        _EVAL_ENVS.popitem(last=False)[1].close()
    return env


@atexit.register
def close_evaluation_envs() -> None:
    """Close every kept evaluation env (also when the interpreter exits)."""
    while _EVAL_ENVS:
        _EVAL_ENVS.popitem()[1].close()


def check_world(policy, task: str) -> None:
    """Refuse (:class:`~vla_razor.errors.ConfigError`) a task of another world than the policy serves."""
    world = getattr(policy.config, "world", "maniskill")  # LeRobot's policies serve ManiSkill here
    if get_task(task).world != world:
        raise ConfigError(
            f"{task} is a {get_task(task).world} task but the policy serves {world} (task ids and "
            "observations are per world): give a policy pretrained on that world's suite"
        )


@torch.no_grad()
def evaluate_task(
    policy,
    task: str,
    episodes: int,
    seed: int = 0,
    mode: str = "deterministic",
    max_episode_steps: int | None = None,
    progress: bool = False,
    execute_steps: int | None = None,
    observations: list | None = None,
) -> SuccessRate:
    """Run ``episodes`` episodes of ``task`` in parallel sub-envs, one episode each; success = ManiSkill's
    flag at the episode's end (ManiSkill ends an episode when it succeeds).

    ``execute_steps`` (default: the whole chunk) executes only the first actions of every predicted
    chunk before predicting again (receding horizon). ``observations``, when given, receives the
    observation of every still-running episode at every decision (the states the policy met). The env is
    kept for the next evaluation with the same settings (:data:`_EVAL_ENVS`)."""
    check_world(policy, task)
    execute = execute_steps or policy.config.chunk_size
    if not 1 <= execute <= policy.config.chunk_size:
        raise ValueError(f"execute_steps must be in [1, {policy.config.chunk_size}], got {execute_steps}")
    env = _evaluation_env(task, episodes, execute, max_episode_steps, policy_observations(policy))
    was_training = policy.training
    policy.eval()
    try:
        obs, _ = env.reset(seed=seed)
        # The policy's noise is seeded too, so an evaluation is a pure function of (policy, seed).
        generator = torch.Generator(policy.device).manual_seed(seed)
        done = np.zeros(episodes, bool)
        success = np.zeros(episodes, bool)
        bar = progress_bar(total=episodes, desc=f"eval {task}", unit="ep", leave=False, disable=not progress)
        while not done.all():
            if observations is not None:
                from vla_razor.policies.encoders import as_tensor_obs

                running = torch.as_tensor(~done)
                observations.append({k: v[running].clone() for k, v in as_tensor_obs(obs).items()})
            # every row is sampled (the generator's draws, hence every episode, do not depend on which ones
            # have finished); only the unfinished episodes are stepped
            actions, _ = policy.sample(obs, mode, generator=generator)
            chunk = actions[:, :execute] if execute > 1 else actions[:, 0]  # a 1-step env takes plain actions
            obs, _, terminated, truncated, info = env.step(chunk.cpu().numpy(), running=~done)
            finished = (terminated | truncated) & ~done
            success[finished] = info["success"][finished]
            done |= finished
            bar.update(int(finished.sum()))
        bar.close()
    except BaseException:
        # interrupted or failed mid-episode: a fresh env next time, whatever state this one is in
        for key in [k for k, kept in _EVAL_ENVS.items() if kept is env]:
            del _EVAL_ENVS[key]
        env.close()
        raise
    finally:
        policy.train(was_training)
    k = int(success.sum())
    return SuccessRate(k, episodes, *wilson_interval(k, episodes))


def evaluate(
    policy, tasks: list[str], episodes: int, seed: int = 0, mode: str = "deterministic", progress: bool = True
) -> dict[str, SuccessRate]:
    return {task: evaluate_task(policy, task, episodes, seed, mode, progress=progress) for task in tasks}


def format_table(results: dict[str, SuccessRate], roles: dict[str, str] | None = None) -> str:
    """A plain-text table of success rates per task (with each task's role)."""
    rows = [(task, (roles or {}).get(task, ""), str(rate)) for task, rate in results.items()]
    return tabulate(
        rows, headers=("task", "role", "success [95% CI]"), tablefmt="simple", disable_numparse=True
    )


def policy_observations(policy) -> dict:
    """The env settings of the observations ``policy`` reads: state, or state and RGB camera images."""
    rgb = bool(getattr(policy.config, "use_rgb", False))
    return {"obs_mode": "rgb" if rgb else "state", "image_size": policy.config.image_size}


def deterministic_actor(policy):
    """A video callable: the policy's deterministic chunk, executed whole, one action per call."""
    from vla_razor.policies.encoders import as_tensor_obs

    queues: dict[int, list] = {}

    @torch.no_grad()
    def act(obs, running):
        need = [j for j, i in enumerate(running) if not queues.get(i)]
        if need:
            sub = {k: v[need] for k, v in obs.items()}
            actions, _ = policy.sample(as_tensor_obs(sub, policy.device), "deterministic")
            for j, chunk in zip(need, actions.cpu().numpy()):
                queues[running[j]] = list(chunk)
        return [queues[i].pop(0) for i in running]

    return act
