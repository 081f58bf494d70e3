"""Evaluation wall time with and without freezing the Python heap around ManiSkill env creation/close.

ManiSkill runs a full ``gc.collect()`` each time an env is built or closed; vla-razor freezes the
heap for those calls (``vla_razor.envs.maniskill.frozen_python_heap``) so the collector skips the long-lived
objects of torch, transformers and the policy. Same policy, task, episodes and seeds, in one process,
alternating:

    .venv/bin/python benchmarks/bench_eval_gc.py [--policy runs/base-pull/policy] [--task PullCube]
        [--episodes 4]
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import statistics
import time

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--policy",
        default="runs/base-pull/policy",
        help="a policy directory (a fresh flow policy if missing)",
    )
    parser.add_argument("--task", default="PullCube")
    parser.add_argument("--episodes", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    from pathlib import Path

    import vla_razor.envs.maniskill as maniskill
    from vla_razor.evaluation import evaluate_task
    from vla_razor.policies import ChainPolicy, make_policy

    policy = (
        ChainPolicy.from_pretrained(args.policy)
        if (Path(args.policy) / "config.json").exists()
        else make_policy("flow", {})
    ).eval()
    frozen = maniskill.frozen_python_heap
    times: dict[str, list[float]] = {"gc_collect_every_env": [], "frozen_heap": []}
    rates = set()
    for _ in range(args.repeats):
        for name in times:
            maniskill.frozen_python_heap = frozen if name == "frozen_heap" else contextlib.nullcontext
            start = time.perf_counter()
            rates.add(evaluate_task(policy, args.task, args.episodes, seed=10_000).rate)
            times[name].append(time.perf_counter() - start)
    maniskill.frozen_python_heap = frozen
    median = {k: statistics.median(v) for k, v in times.items()}
    print(
        json.dumps(
            {
                "task": args.task,
                "episodes": args.episodes,
                "repeats": args.repeats,
                "tracked_objects": len(gc.get_objects()),
                "seconds_median": median,
                "same_success_both_ways": len(rates) == 1,
                "speedup": round(median["gc_collect_every_env"] / median["frozen_heap"], 3),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
