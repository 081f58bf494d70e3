"""A fine-tuning run's periodic evaluation of a whole suite, repeated: kept evaluation envs that cover the
suite against a cap smaller than the suite (the least recently used env is closed first).

A periodic evaluation plays the new task's test and validation episodes and ``--retention`` episodes of
every prior task, in the suite's order. With fewer kept envs than tasks, the least-recently-used env is
always the one the next task needs, so every evaluation rebuilds every env. One process, the same policy,
episodes and seeds: ``--evaluations`` evaluations with ``MAX_EVAL_ENVS`` at ``--small-cap``, then as many at
the shipped cap; prints JSON with the seconds per evaluation and the resident memory.

    .venv/bin/python benchmarks/bench_suite_eval.py [--suite metaworld]
        [--policy checkpoints/metaworld-base/policy] [--evaluations 3]
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from bench_eval_envs import rss_mb  # this script's folder is first on the path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="metaworld")
    parser.add_argument("--policy", default="checkpoints/metaworld-base/policy")
    parser.add_argument("--episodes", type=int, default=20, help="test (and validation) episodes, new task")
    parser.add_argument("--retention", type=int, default=3, help="episodes of each prior task")
    parser.add_argument("--evaluations", type=int, default=3)
    parser.add_argument("--small-cap", type=int, default=8, help="the cap the suite does not fit in")
    args = parser.parse_args()
    torch.set_num_threads(1)

    from vla_razor import evaluation
    from vla_razor.envs import load_suite
    from vla_razor.policies import ChainPolicy

    suite = load_suite(args.suite)
    policy = ChainPolicy.from_pretrained(args.policy)

    def one_evaluation() -> float:
        start = time.perf_counter()
        evaluation.evaluate_task(policy, suite.new_task, args.episodes, seed=0)
        evaluation.evaluate_task(policy, suite.new_task, args.episodes, seed=1_000)  # validation
        for task in suite.prior_tasks:
            evaluation.evaluate_task(policy, task, args.retention, seed=0)
        return time.perf_counter() - start

    shipped = evaluation.MAX_EVAL_ENVS
    result = {"suite": suite.name, "tasks": len(suite.tasks), "policy": args.policy, "shipped_cap": shipped}
    for name, cap in (("small_cap", args.small_cap), ("shipped_cap", shipped)):
        evaluation.close_evaluation_envs()
        evaluation.MAX_EVAL_ENVS = cap
        seconds = [round(one_evaluation(), 2) for _ in range(args.evaluations)]
        result[name] = {"cap": cap, "seconds": seconds, "rss_mb": rss_mb()}
        print(json.dumps({name: result[name]}), flush=True)
    # after the first evaluation (which builds every env either way)
    small, kept = result["small_cap"]["seconds"][1:], result["shipped_cap"]["seconds"][1:]
    if small and kept:
        result["later_evaluations_speedup"] = round(sum(small) / sum(kept), 2)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
