"""A fine-tuning run's periodic evaluation of a whole suite, repeated: kept evaluation envs that cover the
suite against a sub-env budget smaller than one evaluation (the least recently used env is closed first).

A periodic evaluation plays the new task's test and validation episodes and ``--retention`` episodes of
every prior task, in the suite's order. With a budget below one evaluation's sub-envs, the least recently
used env is always the one the next task needs, so every evaluation rebuilds every env. One process, the
same policy, episodes and seeds: ``--evaluations`` evaluations with ``MAX_EVAL_SUB_ENVS`` at
``--small-cap``, then as many at the shipped budget; prints JSON with the seconds per evaluation and the
resident memory. Then, each in a fresh process, a final evaluation (``--final`` episodes of every task, as
pretraining's success table plays) under the shipped budget and with no budget (every env kept, as a cap on
the number of envs did for 11 tasks): the memory the kept envs hold afterwards and the process's peak.

    .venv/bin/python benchmarks/bench_suite_eval.py [--suite metaworld]
        [--policy checkpoints/metaworld-base/policy] [--evaluations 3]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import time

import torch
from bench_eval_envs import rss_mb  # this script's folder is first on the path


def final_evaluation(suite_name: str, policy_dir: str, episodes: int, budget: int) -> dict:
    """A final evaluation in this (fresh) process under ``budget`` kept sub-envs: seconds, resident memory
    afterwards and peak, in MB."""
    torch.set_num_threads(1)
    from vla_razor import evaluation
    from vla_razor.envs import load_suite
    from vla_razor.policies import ChainPolicy

    evaluation.MAX_EVAL_SUB_ENVS = budget
    policy = ChainPolicy.from_pretrained(policy_dir)
    start = time.perf_counter()
    evaluation.evaluate(policy, load_suite(suite_name).tasks, episodes, seed=10_000, progress=False)
    return {
        "budget": budget,
        "seconds": round(time.perf_counter() - start, 1),
        "rss_mb": rss_mb(),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="metaworld")
    parser.add_argument("--policy", default="checkpoints/metaworld-base/policy")
    parser.add_argument("--episodes", type=int, default=20, help="test (and validation) episodes, new task")
    parser.add_argument("--retention", type=int, default=3, help="episodes of each prior task")
    parser.add_argument("--evaluations", type=int, default=3)
    parser.add_argument("--final", type=int, default=50, help="final-evaluation episodes per task (0: skip)")
    parser.add_argument(
        "--small-cap", type=int, default=40, help="a sub-env budget one evaluation does not fit in"
    )
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

    shipped = evaluation.MAX_EVAL_SUB_ENVS
    result = {"suite": suite.name, "tasks": len(suite.tasks), "policy": args.policy, "shipped_cap": shipped}
    for name, cap in (("small_cap", args.small_cap), ("shipped_cap", shipped)):
        evaluation.close_evaluation_envs()
        evaluation.MAX_EVAL_SUB_ENVS = cap
        seconds = [round(one_evaluation(), 2) for _ in range(args.evaluations)]
        result[name] = {"cap": cap, "seconds": seconds, "rss_mb": rss_mb()}
        print(json.dumps({name: result[name]}), flush=True)
    # after the first evaluation (which builds every env either way)
    small, kept = result["small_cap"]["seconds"][1:], result["shipped_cap"]["seconds"][1:]
    if small and kept:
        result["later_evaluations_speedup"] = round(sum(small) / sum(kept), 2)
    evaluation.close_evaluation_envs()
    if args.final:
        for name, budget in (("final_shipped_budget", shipped), ("final_no_budget", 10**9)):
            with multiprocessing.get_context("spawn").Pool(1) as pool:
                result[name] = pool.apply(final_evaluation, (args.suite, args.policy, args.final, budget))
            print(json.dumps({name: result[name]}), flush=True)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
