"""`vla-razor spread`: whether RL has anything to reinforce on a task, from a policy's sampled outcomes per
initial state (vla_razor/rl/spread.py)."""

from __future__ import annotations

from pathlib import Path

from tabulate import tabulate

from vla_razor.atomic import write_json
from vla_razor.errors import BadInputError
from vla_razor.progress import progress


def main(args) -> int:
    from vla_razor.envs import get_task
    from vla_razor.harness import set_noise_level
    from vla_razor.policies import ChainPolicy
    from vla_razor.rl.spread import outcome_spread

    for flag, value, low in (("--states", args.states, 1), ("--group-size", args.group_size, 2)):
        if value < low:
            raise BadInputError(f"{flag} must be >= {low}, got {value}")
    tasks = [get_task(t).name for t in args.task]  # unknown names fail here, before any episode
    policy_dir = Path(args.policy)
    if (policy_dir / "policy" / "config.json").is_file():
        policy_dir = policy_dir / "policy"  # a run directory: its final policy
    policy = ChainPolicy.from_pretrained(policy_dir)
    torch_threads(args.threads)
    if args.noise_level is not None:
        set_noise_level(policy, args.noise_level)
    results = []
    bar = progress(tasks, desc="spread", unit="task")
    for task in bar:
        bar.set_postfix_str(task)
        results.append(
            outcome_spread(
                policy, task, args.states, args.group_size, seed=args.seed, sampling_seed=args.seed
            )
        )
    rows = [
        (r.task, f"{r.success:.0%}", f"{r.mixed:.0%}", f"{r.always:.0%}", f"{r.never:.0%}", f"{r.signal:.3f}")
        for r in results
    ]
    headers = ("task", "success", "mixed states", "always", "never", "signal p(1-p)")
    print(f"{policy_dir}: {args.states} initial states x {args.group_size} sampled episodes per task")
    print(tabulate(rows, headers=headers, tablefmt="simple", disable_numparse=True))
    if args.out:
        noise = getattr(policy.config, "noise_level", None)
        write_json(
            Path(args.out),
            {"policy": str(policy_dir), "noise_level": noise, "tasks": [r.as_dict() for r in results]},
        )
        print(f"results: {args.out}")
    return 0


def torch_threads(threads: int) -> None:
    import torch

    if threads > 0:
        torch.set_num_threads(threads)
