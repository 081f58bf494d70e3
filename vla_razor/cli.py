"""The `vla-razor` command: one entry point, one sub-command per capability that really works."""
from __future__ import annotations

import argparse
import sys

from .config import ConfigError


def _add_doctor(sub) -> None:
    p = sub.add_parser("doctor", help="check the installation (torch, numpy, Vulkan, ManiSkill, divergence core)")
    p.set_defaults(handler=lambda args: __import__("vla_razor.doctor", fromlist=["run_doctor"]).run_doctor())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vla-razor",
        description="Fine-tune robot VLA policies with RL or SFT and measure the KL to the base policy and the forgetting.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_doctor(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except ConfigError as err:
        print(f"vla-razor {args.command}: config error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"vla-razor {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
