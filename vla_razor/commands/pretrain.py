"""`vla-razor pretrain`."""

from __future__ import annotations

from vla_razor.config import load_config, with_smoke


def main(args) -> int:
    from vla_razor.pretrain import SMOKE, PretrainConfig, pretrain

    cfg = load_config(PretrainConfig, args.config, args.overrides)
    if args.smoke:
        cfg = with_smoke(cfg, SMOKE, args.overrides)
    pretrain(cfg)
    return 0
