"""`vla-razor finetune --algo ppo|grpo|sft`."""

from __future__ import annotations


def main(args) -> int:
    from vla_razor.algorithms import load_algorithm

    cfg, train = load_algorithm(args.algo, args.config, args.overrides, args.smoke)
    train(cfg, resume=args.resume)  # named errors reach the command line (vla_razor.cli): exit 2, 3 or 4
    return 0
