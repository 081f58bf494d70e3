"""`vla-razor dataset`: demonstrations out to a LeRobotDataset, and a look at how a LeRobotDataset maps in."""

from __future__ import annotations

import sys
from pathlib import Path

from vla_razor.progress import progress


def _sources(args) -> list[Path]:
    from vla_razor.envs import load_suite
    from vla_razor.envs.demos import demo_dir

    dirs = [Path(d) for d in args.demos or []]
    if args.suite:
        dirs += [demo_dir(task, args.demo_dir, args.control_mode) for task in load_suite(args.suite).tasks]
    if not dirs:
        raise SystemExit("vla-razor dataset export: give --demos DIR (repeatable) or --suite NAME")
    return dirs


def export(args) -> int:
    """``vla-razor dataset export``: one summary line; the dataset at ``--out``."""
    from vla_razor.data.lerobot import export_demos

    sources = _sources(args)
    limit = 2 if args.smoke else args.episodes
    bar = progress(desc=f"export to {args.out}", unit="ep", disable=args.no_progress)
    try:
        summary = export_demos(
            sources,
            args.out,
            video=args.video,
            image_size=args.image_size,
            repo_id=args.repo_id,
            successful_only=args.successful_only,
            max_episodes=limit,
            on_episode=lambda: bar.update(1),
        )
    finally:
        bar.close()
    print(summary.line())
    if summary.replay_mismatches:
        print(
            f"warning: {summary.replay_mismatches} episode(s) ended differently when replayed for the video",
            file=sys.stderr,
        )
    return 0


def inspect(args) -> int:
    """``vla-razor dataset inspect``: the dataset's episodes per task, as pretraining and SFT would read
    it."""
    from vla_razor.data.lerobot import episodes_by_task, load_lerobot_episodes

    keys = dict(kv.split("=", 1) for kv in args.key or [])
    episodes = load_lerobot_episodes(args.root, keys)
    for task, eps in episodes_by_task(episodes).items():
        lengths = [ep.length for ep in eps]
        print(
            f"{task}: {len(eps)} episodes ({sum(ep.success for ep in eps)} successful), "
            f"{min(lengths)}-{max(lengths)} steps"
        )
    return 0
