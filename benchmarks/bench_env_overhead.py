"""Raw ManiSkill step rate vs vla-razor's wrapped vector env, same task and control mode, one process.

The baseline is what a ManiSkill user writes: ``gym.make(id, num_envs=1, obs_mode="state",
sim_backend="physx_cpu")`` stepped with torch actions (resetting when an episode ends). Ours is
``make_vec_env(task, num_envs=1, backend="cpu")``: canonical observations, numpy in and out, and
Gymnasium autoreset. Both run in this process, in alternating blocks so that drifting machine load
hits both alike; the overhead is computed per block pair and the median reported. Prints JSON.

    .venv/bin/python benchmarks/bench_env_overhead.py [--tasks PickCube PushCube ...] [--steps 1000] [--blocks 5]
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import gymnasium as gym
import numpy as np
import torch


def raw_env(task):
    import mani_skill.envs  # noqa: F401

    return gym.make(task.env_id, num_envs=1, obs_mode="state", control_mode="pd_ee_delta_pose",
                    sim_backend="physx_cpu", render_backend="cpu", reward_mode="normalized_dense",
                    max_episode_steps=task.max_episode_steps)


def run_raw(env, actions: np.ndarray) -> float:
    env.reset(seed=0)
    acts = torch.from_numpy(actions[:, : env.action_space.shape[-1]])
    start = time.perf_counter()
    for a in acts:
        _, _, terminated, truncated, _ = env.step(a[None])
        if bool(terminated) or bool(truncated):
            env.reset()
    return len(actions) / (time.perf_counter() - start)


def run_ours(env, actions: np.ndarray) -> float:
    env.reset(seed=0)
    start = time.perf_counter()
    for a in actions:
        env.step(a[None])  # autoreset happens inside
    return len(actions) / (time.perf_counter() - start)


def main() -> None:
    from vla_razor.envs import get_task, load_suite, make_vec_env

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=load_suite("default").tasks)
    parser.add_argument("--steps", type=int, default=1000, help="env steps per block")
    parser.add_argument("--blocks", type=int, default=5, help="alternating raw/ours block pairs")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    results = {}
    for name in args.tasks:
        task = get_task(name)
        actions = rng.uniform(-1, 1, size=(args.steps, 7)).astype(np.float32)
        raw, ours = raw_env(task), make_vec_env(task.name, num_envs=1, backend="cpu")
        run_raw(raw, actions[:50]), run_ours(ours, actions[:50])  # warm-up
        raw_rates, our_rates = [], []
        for _ in range(args.blocks):
            raw_rates.append(run_raw(raw, actions))
            our_rates.append(run_ours(ours, actions))
        overheads = [r / o - 1.0 for r, o in zip(raw_rates, our_rates)]
        results[name] = {
            "raw_steps_per_s": statistics.median(raw_rates),
            "ours_steps_per_s": statistics.median(our_rates),
            "overhead_median": statistics.median(overheads),
            "overhead_per_block": overheads,
        }
        raw.close(), ours.close()
    print(json.dumps({"benchmark": "env wrapper overhead (1 env, physx_cpu, pd_ee_delta_pose, state)",
                      "steps_per_block": args.steps, "blocks": args.blocks, "tasks": results}, indent=2))


if __name__ == "__main__":
    main()
