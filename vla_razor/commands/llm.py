"""`vla-razor llm pretrain` and `vla-razor llm finetune --algo grpo|sft`."""

from __future__ import annotations

from vla_razor.config import load_config, with_smoke


def pretrain_main(args) -> int:
    from vla_razor.llm.pretrain import SMOKE, LLMPretrainConfig, pretrain

    cfg = load_config(LLMPretrainConfig, args.config, args.overrides)
    if args.smoke:
        cfg = with_smoke(cfg, SMOKE, args.overrides)
    pretrain(cfg)
    return 0


def finetune_main(args) -> int:
    from vla_razor.llm.finetune import SMOKE, LLMFinetuneConfig, train

    cfg = load_config(LLMFinetuneConfig, args.config, args.overrides)
    if args.smoke:
        cfg = with_smoke(cfg, SMOKE, args.overrides)
    train(cfg, args.algo, resume=args.resume)
    return 0
