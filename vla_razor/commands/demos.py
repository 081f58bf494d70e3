"""`vla-razor demos`: generate (or reuse) expert demonstrations."""

from __future__ import annotations

import sys


def main(args) -> int:
    """``vla-razor demos``: generate (or reuse) demos for each ``--task``; one summary line each."""
    from vla_razor.envs.demos import (
        DEFAULT_RL_TIMESTEPS,
        SMOKE_EPISODES,
        SMOKE_RL_TIMESTEPS,
        DemoGenerationError,
        generate_demos,
        summary_line,
    )
    from vla_razor.envs.registry import UnknownTaskError, get_task

    tasks = [t.strip() for spec in args.task for t in spec.split(",") if t.strip()]
    episodes = SMOKE_EPISODES if args.smoke else args.episodes
    if episodes is None:
        print("vla-razor demos: give --episodes N (or --smoke)", file=sys.stderr)
        return 2
    rl_timesteps = (
        SMOKE_RL_TIMESTEPS
        if args.smoke and args.rl_timesteps is None
        else (args.rl_timesteps or DEFAULT_RL_TIMESTEPS)
    )
    try:
        specs = [get_task(t) for t in tasks]
        for spec in specs:
            index = generate_demos(
                spec.name,
                episodes,
                out_dir=args.out,
                control_mode=args.control_mode,
                seed=args.seed,
                progress=not args.no_progress,
                rl_timesteps=rl_timesteps,
            )
            print(summary_line(index))
    except (UnknownTaskError, DemoGenerationError, ValueError) as err:
        print(f"vla-razor demos: {err}", file=sys.stderr)
        return 2
    return 0
