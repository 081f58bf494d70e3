"""Periodic evaluations with kept evaluation envs vs a new env each time: memory growth and wall time.

ManiSkill does not give back all of a closed scene's memory, so building the evaluation env anew at every
periodic evaluation makes a long training run grow and slow down. vla-razor keeps the evaluation envs
(``vla_razor.evaluation._EVAL_ENVS``). One process, the same policy, task, episodes and seeds: first
``--evaluations`` evaluations that close their env after each (a new one every time), then as many with
the kept env; prints JSON with the resident memory after each evaluation and the time per evaluation.

    .venv/bin/python benchmarks/bench_eval_envs.py [--policy checkpoints/quickstart-base/policy]
        [--episodes 10]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch


def rss_mb() -> int:
    return (
        int(Path(f"/proc/{os.getpid()}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 2**20
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy", default="checkpoints/quickstart-base/policy")
    parser.add_argument("--task", default="PullCube")
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--evaluations", type=int, default=8)
    parser.add_argument(
        "--max-episode-steps", type=int, default=20, help="short episodes: the env's cost shows"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)

    from vla_razor.evaluation import close_evaluation_envs, evaluate_task
    from vla_razor.policies import ChainPolicy

    policy = ChainPolicy.from_pretrained(args.policy)
    out = {"task": args.task, "episodes": args.episodes, "max_episode_steps": args.max_episode_steps}
    for mode in ("new_env_each_time", "kept_env"):
        rss, start = [], time.perf_counter()
        for _ in range(args.evaluations):
            evaluate_task(
                policy, args.task, args.episodes, seed=10_000, max_episode_steps=args.max_episode_steps
            )
            if mode == "new_env_each_time":
                close_evaluation_envs()
            rss.append(rss_mb())
        out[mode] = {
            "rss_mb_after_each": rss,
            "rss_growth_mb_per_evaluation": round((rss[-1] - rss[0]) / (len(rss) - 1), 1),
            "s_per_evaluation": round((time.perf_counter() - start) / args.evaluations, 2),
        }
    close_evaluation_envs()
    out["time_ratio_kept_over_new"] = round(
        out["kept_env"]["s_per_evaluation"] / out["new_env_each_time"]["s_per_evaluation"], 3
    )
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
