"""PPO environment throughput vs the raw simulator, and the KL tracking's share of an iteration.

One process, the same env (the suite's new task, ``num_envs`` CPU sub-envs, action chunks):

1. raw: the vector env stepped with random action chunks (no policy), env steps per second;
2. PPO: ``vla-razor finetune --algo ppo`` iterations (flow policy, 5 denoising steps, state
   observations): rollout with the policy, old log-probs and values, GAE, clipped updates, and
   the KL to the base; env steps per second over the whole iteration (evaluation excluded).
   Once per ``--workers`` entry: 0 is on-policy (everything in this process); N >= 1 is
   ``rollout_workers=N``, the rollouts overlapped with the update in N Ray actors.

Prints JSON with, per mode, ``ppo_over_raw`` (against one raw process) and ``ppo_over_raw_parallel``
(against N raw processes stepping the same N blocks of sub-envs at once: like against like), and
``kl_share``. With ``--repeats K`` every mode runs K times, interleaved (odd repeats in reverse order),
the raw rates measured between repeats; the JSON then holds each repeat's ratios and their medians.

    .venv/bin/python benchmarks/bench_ppo_throughput.py [--base runs/base/policy] [--iterations 6]
        [--repeats 3] [--suite mt10]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def raw_rate(task: str, num_envs: int, chunk: int, decisions: int, seed: int = 0) -> float:
    from vla_razor.envs import make_vec_env

    env = make_vec_env(task, num_envs=num_envs, backend="cpu", chunk_size=chunk)
    env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    steps, start = 0, time.perf_counter()
    for _ in range(decisions):
        actions = rng.uniform(-1, 1, (num_envs, chunk, 7)).astype(np.float32) * 0.3
        _, _, _, _, info = env.step(actions)
        steps += int(info["chunk_steps"].sum())
    elapsed = time.perf_counter() - start
    env.close()
    return steps / elapsed


def _raw_block(args) -> tuple[int, float, float]:
    torch.set_num_threads(1)
    start = time.perf_counter()
    rate = raw_rate(*args)
    return rate, start, time.perf_counter()


def raw_rate_parallel(
    task: str, num_envs: int, chunk: int, decisions: int, workers: int, seed: int = 0
) -> float:
    """``workers`` spawned processes, each stepping ``num_envs / workers`` sub-envs: total env steps per
    second while they all run (process start-up excluded: each times its own stepping)."""
    import multiprocessing as mp

    if workers <= 1:
        return raw_rate(task, num_envs, chunk, decisions, seed)
    size = num_envs // workers
    with mp.get_context("spawn").Pool(workers) as pool:
        parts = pool.map(
            _raw_block, [(task, size, chunk, decisions, seed + i * size) for i in range(workers)]
        )
    # each block's own rate, summed: the blocks run side by side
    return sum(rate for rate, _, _ in parts)


def _timing(parallelism: int, records: list[dict]) -> dict:
    """Env steps per second over a PPO run's iterations (the first, which pays warm-up, excluded) and the
    learner's time split."""
    every = [r for r in records if "time/iteration_s" in r]
    iterations = every[1:]
    total_time = sum(r["time/iteration_s"] for r in iterations)
    env_steps = every[-1]["env_steps"] - every[0]["env_steps"]  # those of the timed iterations
    return {
        "parallelism": parallelism,
        "iterations_timed": len(iterations),
        "ppo_env_steps_per_s": round(env_steps / total_time, 1),
        # on-policy: the rollout itself; with rollout workers: the learner's wait for a rollout
        "rollout_share": round(sum(r["time/rollout_s"] for r in iterations) / total_time, 3),
        "update_share": round(sum(r["time/update_s"] for r in iterations) / total_time, 3),
        "kl_share": round(sum(r["time/kl_s"] for r in iterations) / total_time, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--base", default="runs/base/policy", help="base policy (a fresh flow policy when missing)"
    )
    parser.add_argument(
        "--suite", default="default", help="the suite whose new task is stepped (mt10: Meta-World)"
    )
    parser.add_argument("--iterations", type=int, default=6)
    parser.add_argument("--num-envs", type=int, default=16)
    parser.add_argument("--num-decisions", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (process-wide)")
    parser.add_argument(
        "--repeats", type=int, default=1, help="times every mode is run (interleaved, for the spread)"
    )
    parser.add_argument(
        "--workers",
        type=int,
        nargs="+",
        default=[0, 1],
        help="rollout_workers settings to time (0: on-policy)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from vla_razor.envs import load_suite
    from vla_razor.policies import make_policy
    from vla_razor.rl.ppo import PPOConfig, train

    suite = load_suite(args.suite)
    task = suite.new_task
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(args.base)
        if not (base / "config.json").exists():
            base = Path(tmp) / "fresh"
            make_policy(
                "flow",
                {"chunk_size": 8, "num_steps": 5, "hidden": 128, "num_layers": 2, "world": suite.world},
            ).save_pretrained(base)
        chunk = 8
        parallel = sorted({1} | {max(w, 1) for w in args.workers})

        def raw_point(seed: int) -> dict[int, float]:
            return {
                n: raw_rate_parallel(task, args.num_envs, chunk, args.num_decisions * 2, n, seed=seed)
                for n in parallel
            }

        runs = list(args.workers)
        # The raw rate is measured before the first repeat and after every one; a repeat's ratios use the
        # mean of the measurements on either side of it. Odd repeats run the modes in reverse order, so a
        # drift of the machine's speed within a repeat does not favour one mode.
        raw_points = [raw_point(0)]
        timed: dict[str, list[tuple[int, dict]]] = {}
        for repeat in range(args.repeats):
            for workers in runs if repeat % 2 == 0 else runs[::-1]:
                mode = f"rollout_workers_{workers}"
                cfg = PPOConfig(
                    name=f"{mode}-{repeat}",
                    runs_dir=tmp,
                    base=str(base),
                    num_envs=args.num_envs,
                    num_decisions=args.num_decisions,
                    total_env_steps=args.iterations * args.num_envs * args.num_decisions * chunk,
                    eval_every=0,
                    retention_episodes=0,
                    final_eval_episodes=1,
                    video_episodes=0,
                    critic_warmup_iterations=1,
                    checkpoint_every=1000,
                    rollout_workers=workers,
                    suite=suite.name,
                )
                with contextlib.redirect_stdout(sys.stderr):  # stdout carries only the JSON
                    train(cfg)
                records = (Path(tmp) / f"{mode}-{repeat}" / "metrics.jsonl").read_text().splitlines()
                timed.setdefault(mode, []).append(
                    (repeat, _timing(max(workers, 1), [json.loads(line) for line in records]))
                )
            raw_points.append(raw_point(repeat + 1))

    raws = {n: statistics.mean(point[n] for point in raw_points) for n in parallel}
    out = {
        "task": task,
        "num_envs": args.num_envs,
        "decisions_per_iteration": args.num_decisions,
        "chunk": chunk,
        "torch_threads": torch.get_num_threads(),
        "repeats": args.repeats,
        "raw_env_steps_per_s": round(raws[1], 1),
        "raw_measurements": [round(point[1], 1) for point in raw_points],
        "raw_parallel_env_steps_per_s": {str(n): round(r, 1) for n, r in raws.items()},
    }
    for mode, entries in timed.items():
        per_repeat = []
        for repeat, timing in entries:
            n = timing["parallelism"]
            raw_one = statistics.mean([raw_points[repeat][1], raw_points[repeat + 1][1]])
            raw_same = statistics.mean([raw_points[repeat][n], raw_points[repeat + 1][n]])
            per_repeat.append(
                {
                    **{k: v for k, v in timing.items() if k != "parallelism"},
                    "ppo_over_raw": round(timing["ppo_env_steps_per_s"] / raw_one, 3),
                    "ppo_over_raw_parallel": round(timing["ppo_env_steps_per_s"] / raw_same, 3),
                }
            )
        out[mode] = {
            "ppo_over_raw_parallel_median": round(
                statistics.median(r["ppo_over_raw_parallel"] for r in per_repeat), 3
            ),
            "ppo_env_steps_per_s_median": round(
                statistics.median(r["ppo_env_steps_per_s"] for r in per_repeat), 1
            ),
            "repeats": per_repeat,
        }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
