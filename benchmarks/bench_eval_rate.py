"""Evaluation's env-step rate against the raw simulator's, at the same parallelism, in one process.

A final evaluation runs ``--episodes`` episodes of each task in as many sub-envs (one episode each) with the
policy choosing every chunk. Measured here, per task and in total, in one thread:

- ``build_s``: building the evaluation env (ManiSkill scenes), once per process and settings;
- ``evaluation``: ``vla_razor.evaluation.evaluate_task`` on the kept env (reset with the evaluation's seeds,
  the policy's chunks, only unfinished episodes stepped), in env steps really taken per second;
- ``raw``: the same vector env stepped with random chunks for the same number of env steps, no policy.

``ratio`` = evaluation rate / raw rate. Prints JSON.

    .venv/bin/python benchmarks/bench_eval_rate.py [--episodes 50]
        [--tasks PullCube PushCube PickCube LiftPegUpright]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch


def count_steps(env, step_all: bool = False) -> list[int]:
    """Wrap ``env``'s in-process vector env so that it counts the env steps of unfinished episodes (the
    evaluation's useful work); ``step_all`` steps the finished sub-envs too (as evaluation did before)."""
    vec = env.unwrapped
    counter = [0]
    step = vec.step

    def counted(actions, running=None):
        out = step(actions, None if step_all else running)
        taken = np.asarray(out[4]["chunk_steps"]) if "chunk_steps" in out[4] else np.ones(vec.num_envs)
        counter[0] += int(taken[running].sum() if running is not None else taken.sum())
        return out

    vec.step = counted
    return counter


def raw_rate(env, steps_wanted: int, chunk: int, seed: int) -> float:
    """Env steps per second of ``env`` under random chunks, all sub-envs stepped (autoreset keeps them
    busy)."""
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    shape = env.action_space.shape
    taken, start = 0, time.perf_counter()
    while taken < steps_wanted:
        _, _, _, _, info = env.step(rng.uniform(-1, 1, shape).astype(np.float32))
        taken += int(np.asarray(info["chunk_steps"]).sum()) if chunk > 1 else env.num_envs
    return taken / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy", default="checkpoints/quickstart-base/policy")
    parser.add_argument("--tasks", nargs="+", default=["PullCube", "PushCube", "PickCube", "LiftPegUpright"])
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--seed", type=int, default=10_000)
    parser.add_argument(
        "--step-all",
        action="store_true",
        help="step finished sub-envs too (the evaluation loop before 2026-12-06)",
    )
    parser.add_argument("--smoke", action="store_true", help="2 episodes of PullCube: checks the script runs")
    args = parser.parse_args()
    if args.smoke:
        args.tasks, args.episodes = ["PullCube"], 2
    torch.set_num_threads(1)

    from vla_razor.evaluation import _evaluation_env, evaluate_task, policy_observations
    from vla_razor.policies import ChainPolicy

    policy = ChainPolicy.from_pretrained(args.policy)
    chunk = policy.config.chunk_size
    out = {
        "policy": args.policy,
        "episodes": args.episodes,
        "chunk": chunk,
        "step_all": args.step_all,
        "tasks": {},
    }
    totals = {"eval_steps": 0, "eval_s": 0.0, "raw_steps_s_weighted": 0.0, "build_s": 0.0}
    for task in args.tasks:
        start = time.perf_counter()
        env = _evaluation_env(task, args.episodes, chunk, None, policy_observations(policy))
        build_s = time.perf_counter() - start
        counter = count_steps(env, args.step_all)
        start = time.perf_counter()
        result = evaluate_task(policy, task, args.episodes, seed=args.seed)
        eval_s = time.perf_counter() - start
        steps = counter[0]
        raw = raw_rate(env, max(steps, args.episodes * chunk), chunk, args.seed)
        row = {
            "success": result.rate,
            "build_s": round(build_s, 2),
            "eval_s": round(eval_s, 2),
            "eval_env_steps": steps,
            "eval_steps_per_s": round(steps / eval_s, 1),
            "raw_steps_per_s": round(raw, 1),
            "ratio": round(steps / eval_s / raw, 3),
        }
        out["tasks"][task] = row
        print(json.dumps({task: row}), flush=True)
        totals["eval_steps"] += steps
        totals["eval_s"] += eval_s
        totals["raw_steps_s_weighted"] += steps / raw
        totals["build_s"] += build_s
    out["total"] = {
        "build_s": round(totals["build_s"], 1),
        "eval_s": round(totals["eval_s"], 1),
        "eval_env_steps": totals["eval_steps"],
        "eval_steps_per_s": round(totals["eval_steps"] / totals["eval_s"], 1),
        "raw_steps_per_s": round(totals["eval_steps"] / totals["raw_steps_s_weighted"], 1),
        "ratio": round(totals["raw_steps_s_weighted"] / totals["eval_s"], 3),
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
