"""Raw ManiSkill step rate vs vla-razor's wrapped vector env, same task and control mode, one process.

The baseline is what a ManiSkill user writes: ``gym.make(id, num_envs=1, obs_mode="state",
sim_backend="physx_cpu")`` stepped with torch actions (resetting when an episode ends). Ours is
``make_vec_env(task, num_envs=1, backend="cpu")``: canonical observations, numpy in and out, and
Gymnasium autoreset. Both run in this process, in short alternating segments so that drifting machine load \
hits
both alike. The overhead is reported on wall time and on process CPU time (time.process_time),
which a virtual machine's stolen time does not inflate; the CPU-time figure is the steadier one
on a shared 2-core machine. Prints JSON.

    .venv/bin/python benchmarks/bench_env_overhead.py [--tasks PickCube PushCube ...] [--segment 50] \
[--blocks 60]
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

    return gym.make(
        task.env_id,
        num_envs=1,
        obs_mode="state",
        control_mode="pd_ee_delta_pose",
        sim_backend="physx_cpu",
        render_backend="cpu",
        reward_mode="normalized_dense",
        max_episode_steps=task.max_episode_steps,
    )


class Segment:
    """Step an env through a fixed action sequence; measure wall and process CPU time."""

    def __init__(self, env, step, reset):
        self.env, self.step, self.reset = env, step, reset

    def __call__(self, actions) -> tuple[float, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        for a in actions:
            self.step(a)
        return time.perf_counter() - wall, time.process_time() - cpu


def raw_segment(env) -> Segment:
    env.reset(seed=0)

    def step(a):
        _, _, terminated, truncated, _ = env.step(torch.from_numpy(a[: env.action_space.shape[-1]])[None])
        if bool(terminated) or bool(truncated):
            env.reset()

    return Segment(env, step, env.reset)


def our_segment(env) -> Segment:
    env.reset(seed=0)
    return Segment(env, lambda a: env.step(a[None]), env.reset)  # autoreset happens inside


def main() -> None:
    from vla_razor.envs import get_task, load_suite, make_vec_env

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", nargs="+", default=load_suite("default").tasks)
    parser.add_argument("--segment", type=int, default=50, help="env steps per measured segment")
    parser.add_argument("--blocks", type=int, default=60, help="alternating raw/ours segment pairs per task")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    results = {}
    for name in args.tasks:
        task = get_task(name)
        actions = rng.uniform(-1, 1, size=(1000, 7)).astype(np.float32)
        raw_env_, our_env = raw_env(task), make_vec_env(task.name, num_envs=1, backend="cpu")
        raw, ours = raw_segment(raw_env_), our_segment(our_env)
        raw(actions[:20]), ours(actions[:20])  # warm-up
        totals = {"raw": [0.0, 0.0], "ours": [0.0, 0.0]}
        pair_ratios = []
        for block in range(args.blocks):
            # short segments, alternating which goes first, so load drift hits both alike
            chunk = actions[(block * args.segment) % len(actions) :][: args.segment]
            order = [("raw", raw), ("ours", ours)] if block % 2 == 0 else [("ours", ours), ("raw", raw)]
            times = {}
            for label, seg in order:
                times[label] = seg(chunk)
                totals[label][0] += times[label][0]
                totals[label][1] += times[label][1]
            pair_ratios.append(times["ours"][1] / times["raw"][1] - 1.0)
        steps = args.blocks * args.segment
        results[name] = {
            "raw_steps_per_s": steps / totals["raw"][0],
            "ours_steps_per_s": steps / totals["ours"][0],
            "overhead_wall": totals["ours"][0] / totals["raw"][0] - 1.0,
            "overhead_cpu": totals["ours"][1] / totals["raw"][1] - 1.0,
            "overhead_cpu_median_of_pairs": statistics.median(pair_ratios),
        }
        raw_env_.close(), our_env.close()
    print(
        json.dumps(
            {
                "benchmark": "env wrapper overhead (1 env, physx_cpu, pd_ee_delta_pose, state)",
                "steps_per_segment": args.segment,
                "segments_each": args.blocks,
                "tasks": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
