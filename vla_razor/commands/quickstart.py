"""`vla-razor quickstart`: the main job (:mod:`vla_razor.quickstart`) on its config."""

from __future__ import annotations

from vla_razor.config import load_config, with_smoke
from vla_razor.quickstart import QuickstartConfig, run_quickstart, smoke_settings


def main(args) -> int:
    overrides = list(args.overrides) + (["retrain_base=true"] if args.retrain_base else [])
    config = load_config(QuickstartConfig, args.config, overrides)
    if args.smoke:
        config = with_smoke(config, smoke_settings(config), overrides)
    summary = run_quickstart(config, smoke=args.smoke)
    print(f"quickstart done: {summary}")
    print(f"report: {summary.parent.parent / (config.name + '-razor') / 'report' / 'report.html'}")
    return 0
