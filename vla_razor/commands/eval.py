"""`vla-razor eval`: a policy on every task of a suite, with forgetting against its base."""

from __future__ import annotations

from pathlib import Path

import yaml

from vla_razor.atomic import write_json
from vla_razor.errors import BadInputError


def main(args) -> int:
    from vla_razor.envs import load_suite
    from vla_razor.policies import ChainPolicy
    from vla_razor.retention import evaluate_suite

    for flag, value, low in (
        ("--episodes", args.episodes, 1),
        ("--workers", args.workers, 1),
        ("--video-episodes", args.video_episodes, 1),
        ("--seed", args.seed, 0),
    ):
        if value < low:
            raise BadInputError(f"{flag} must be >= {low}, got {value}")
    suite = load_suite(args.suite)
    if bool(args.policy) == bool(args.checkpoint):
        raise BadInputError(
            "name the policy once: `vla-razor eval <policy or run directory>` (or --checkpoint DIR)"
        )
    checkpoint = Path(args.policy or args.checkpoint)
    if (checkpoint / "policy" / "config.json").is_file():
        checkpoint = checkpoint / "policy"  # a run directory: its final policy
    ChainPolicy.from_pretrained(checkpoint)  # fail early, with the loader's clear message
    base = Path(args.base) if args.base else _base_of(checkpoint)
    result = evaluate_suite(checkpoint, suite, args.episodes, args.seed, base, workers=args.workers)
    print(result.table())
    out = Path(args.out) if args.out else checkpoint.parent / "eval" / f"retention_{suite.name}.json"
    write_json(out, result.as_dict())
    print(f"results: {out}")
    if args.video:
        from vla_razor.envs.video import record_episodes
        from vla_razor.evaluation import deterministic_actor

        policy = ChainPolicy.from_pretrained(checkpoint).eval()
        for task in suite.tasks:
            video = record_episodes(
                task,
                deterministic_actor(policy),
                out.parent / "videos" / f"{suite.name}_{task}.mp4",
                num_episodes=args.video_episodes,
                seed=args.seed,
            )
            print(f"video: {video.path}")
    return 0


def _base_of(policy_dir: Path) -> Path | None:
    """The base a fine-tuning run started from (its config.yaml names it), or None (e.g. for the base
    itself)."""
    config = policy_dir.parent / "config.yaml"
    if config.is_file():
        base = (yaml.safe_load(config.read_text()) or {}).get("base")
        if base and Path(base).resolve() != policy_dir.resolve() and (Path(base) / "config.json").is_file():
            return Path(base)
    return None
