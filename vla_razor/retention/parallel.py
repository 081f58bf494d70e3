"""Fan evaluations of (policy directory, task) pairs out as Ray tasks.

Local Ray by default (``workers`` CPUs); ``address`` (or the ``RAY_ADDRESS`` environment variable)
joins an existing cluster instead. One job, or ``workers=1``, runs in this process: starting Ray
costs seconds that a single evaluation does not repay.
"""

from __future__ import annotations

import os
from collections import defaultdict

from vla_razor.errors import WorkerError
from vla_razor.evaluation import SuccessRate, evaluate_task
from vla_razor.progress import progress
from vla_razor.runtime import ray_session


def evaluate_one(policy_dir: str, task: str, episodes: int, seed: int, threads: int | None = None) -> dict:
    import torch

    from vla_razor.policies import ChainPolicy

    if threads:
        torch.set_num_threads(threads)
    policy = ChainPolicy.from_pretrained(policy_dir)
    return evaluate_task(policy, task, episodes, seed=seed).as_dict()


def run_evaluations(
    jobs: list[tuple[str, str]], episodes: int, seed: int, workers: int = 1, address: str | None = None
) -> dict[str, dict[str, SuccessRate]]:
    """``{policy_dir: {task: SuccessRate}}`` for every (policy_dir, task) job."""
    address = address or os.environ.get("RAY_ADDRESS")
    results: dict[str, dict[str, SuccessRate]] = defaultdict(dict)

    def store(job, d):
        results[job[0]][job[1]] = SuccessRate(d["successes"], d["episodes"], d["ci_low"], d["ci_high"])

    if (workers <= 1 and not address) or len(jobs) == 1:
        for job in progress(jobs, desc="evaluate", unit="task", leave=False, disable=len(jobs) == 1):
            store(job, evaluate_one(*job, episodes, seed))
        return dict(results)

    with ray_session(address, workers) as ray:
        remote = ray.remote(num_cpus=1)(evaluate_one)
        pending = {remote.remote(p, t, episodes, seed, 1): (p, t) for p, t in jobs}
        with progress(
            total=len(jobs), desc=f"evaluate ({workers} Ray workers)", unit="task", leave=False
        ) as bar:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    job = pending.pop(ref)
                    try:
                        store(job, ray.get(ref))
                    except ray.exceptions.RayError as err:  # Ray retried the task and its worker died again
                        raise WorkerError(
                            f"the Ray worker evaluating {job[0]} on {job[1]} was lost "
                            f"({type(err).__name__}: {str(err)[:300]}); run again, or with "
                            "--workers 1 to see the failure in this process"
                        ) from None
                    bar.update(1)
    return dict(results)
