"""`vla-razor razor`: the sweep and its report."""

from __future__ import annotations

from vla_razor.config import load_config, with_smoke


def main(args) -> int:
    from vla_razor.analysis.sweep import LLM_SMOKE, SMOKE, RazorConfig, razor

    cfg = load_config(RazorConfig, args.config, args.overrides)
    if args.smoke:
        cfg = with_smoke(cfg, LLM_SMOKE if cfg.track == "llm" else SMOKE, args.overrides)
    print(f"report: {razor(cfg, report_only=args.report_only, archive=args.archive)}")
    return 0
