"""GRPO throughput: vla-razor's LLM loop vs TRL's GRPOTrainer on the same tiny model, task and batch shape.

Both fine-tune the same checkpoint (the LLM base when it exists, else a freshly initialised tiny Llama)
on the same new-task prompts with the same GRPO iteration: ``num_prompts`` prompts x ``group_size``
sampled completions (temperature 1, no top-k/top-p), binary exact-match reward, group-normalised
advantages, the clipped token ratio with per-sequence normalisation (TRL's ``loss_type="grpo"``),
``update_epochs`` optimizer steps per generation (TRL's ``num_iterations``), AdamW at a constant lr,
gradient clip 1.0, no KL penalty (TRL ``beta=0``), one torch thread.

Reported: completion tokens per second, where a completion token is sampled once and trained on
``update_epochs`` times and the time is the wall time of the iterations after the first (warm-up).
vla-razor's iterations also measure the exact forward and reverse token KL to the frozen base on
``kl_prompts`` fresh prompts (its signature metric, which TRL does not compute): that time is reported
separately as the KL's cost per iteration, and the ratio is given with and without it.

TRL pulls numpy 2, which the core environment cannot take, so this runs in its own venv:

    bash scripts/setup_bench_trl.sh
    .venv-bench/bin/python benchmarks/bench_grpo_vs_trl.py [--iterations 12] [--base runs/llm-base/policy]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

SHAPE = dict(
    num_prompts=16, group_size=8, update_epochs=2, lr=1e-4, temperature=1.0, clip=0.2, max_grad_norm=1.0
)


def fresh_base(directory: Path) -> Path:
    from vla_razor.llm.model import TinyLMConfig, build_model
    from vla_razor.llm.tokenizer import build_tokenizer

    tokenizer = build_tokenizer()
    model = build_model(TinyLMConfig(), tokenizer)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def ours_run(base: Path, task: str, iterations: int, kl_prompts: int, seed: int) -> dict:
    from vla_razor.llm.finetune import LLMFinetuneConfig, train

    s = SHAPE
    with tempfile.TemporaryDirectory() as tmp:
        cfg = LLMFinetuneConfig(
            name="ours",
            runs_dir=tmp,
            base=str(base),
            task=task,
            lr=s["lr"],
            iterations=iterations,
            num_prompts=s["num_prompts"],
            group_size=s["group_size"],
            temperature=s["temperature"],
            clip_coef=s["clip"],
            update_epochs=s["update_epochs"],
            max_grad_norm=s["max_grad_norm"],
            kl_states=kl_prompts,
            eval_every=0,
            final_eval_episodes=1,
            checkpoint_every=10**6,
            seed=seed,
            threads=1,
        )
        run = train(cfg, "grpo")
        records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if "tokens/sampled" in r][1:]  # the first iteration is warm-up
    seconds = sum(r["time/iteration_s"] for r in steps)
    kl_seconds = sum(r["time/kl_s"] for r in steps)
    tokens = sum(r["tokens/sampled"] for r in steps)
    return {
        "iterations_timed": len(steps),
        "completion_tokens": tokens,
        "seconds_with_kl": seconds,
        "seconds_without_kl": seconds - kl_seconds,
        "kl_seconds_per_iteration": kl_seconds / len(steps),
        "kl_share_of_iteration": kl_seconds / seconds,
        "reward_mean": statistics.mean(r["reward/mean"] for r in steps),
        "tokens_per_s": tokens / (seconds - kl_seconds),
        "tokens_per_s_with_kl": tokens / seconds,
    }


def trl_run(base: Path, task: str, iterations: int, max_new: int, seed: int) -> dict:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from vla_razor.llm.tasks import generate, is_correct

    s = SHAPE
    # the prompts vla-razor's loop draws at each iteration (a pure function of seed and iteration), in order
    problems = [
        p
        for it in range(iterations)
        for p in generate(task, s["num_prompts"] * s["group_size"], seed=seed * 1_000_003 + it)[
            : s["num_prompts"]
        ]
    ]
    by_prompt = {p.prompt: p for p in problems}
    dataset = Dataset.from_dict({"prompt": [p.prompt for p in problems]})
    tokenizer = AutoTokenizer.from_pretrained(base, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(base, local_files_only=True)
    counted: list[tuple[int, float]] = []  # per generation: completion tokens, mean reward

    def exact_match(prompts, completions, completion_ids, **_):
        rewards = [float(is_correct(by_prompt[p], c)) for p, c in zip(prompts, completions)]
        counted.append((sum(len(ids) for ids in completion_ids), statistics.mean(rewards)))
        return rewards

    step_ends: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            step_ends.append(time.perf_counter())

    with tempfile.TemporaryDirectory() as tmp:
        args = GRPOConfig(
            output_dir=tmp,
            per_device_train_batch_size=s["num_prompts"] * s["group_size"],
            num_generations=s["group_size"],
            steps_per_generation=1,
            num_iterations=s["update_epochs"],
            max_steps=iterations * s["update_epochs"],
            max_completion_length=max_new,
            temperature=s["temperature"],
            top_k=0,
            top_p=1.0,
            beta=0.0,
            epsilon=s["clip"],
            loss_type="grpo",
            scale_rewards="group",
            mask_truncated_completions=False,
            learning_rate=s["lr"],
            lr_scheduler_type="constant",
            warmup_steps=0,
            weight_decay=0.0,
            max_grad_norm=s["max_grad_norm"],
            shuffle_dataset=False,
            use_cpu=True,
            bf16=False,
            report_to="none",
            save_strategy="no",
            logging_steps=1,
            disable_dropout=True,
            seed=seed,
            dataloader_num_workers=0,
        )
        trainer = GRPOTrainer(
            model=model,
            reward_funcs=exact_match,
            args=args,
            train_dataset=dataset,
            processing_class=tokenizer,
            callbacks=[Clock()],
        )
        with contextlib.redirect_stdout(sys.stderr):  # TRL prints its logs; stdout stays one JSON document
            trainer.train()
    per_iteration = s["update_epochs"]
    # iteration i ends at step (i + 1) * update_epochs; time the iterations after the first
    ends = step_ends[per_iteration - 1 :: per_iteration]
    seconds = ends[-1] - ends[0]
    tokens = sum(t for t, _ in counted[1:])
    return {
        "iterations_timed": len(ends) - 1,
        "completion_tokens": tokens,
        "seconds": seconds,
        "reward_mean": statistics.mean(r for _, r in counted[1:]),
        "tokens_per_s": tokens / seconds,
        "generations": len(counted),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--base",
        default="runs/llm-base/policy",
        help="checkpoint both fine-tune (a fresh tiny model if missing)",
    )
    parser.add_argument("--task", default="add_4_4")
    parser.add_argument(
        "--iterations", type=int, default=12, help="GRPO iterations each (the first is warm-up, untimed)"
    )
    parser.add_argument(
        "--kl-prompts", type=int, default=64, help="prompts of vla-razor's per-iteration KL measurement"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.iterations < 2:
        parser.error("--iterations must be >= 2 (the first is warm-up)")
    torch.set_num_threads(1)
    from vla_razor.llm.tasks import generate

    max_new = max(len(p.answer) for p in generate(args.task, 256, seed=10_000)) + 3  # as the LLM loop
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(args.base)
        origin = "checkpoint"
        if not (base / "config.json").exists():
            base, origin = fresh_base(Path(tmp) / "fresh"), "fresh tiny llama (no checkpoint at --base)"
        with contextlib.redirect_stdout(sys.stderr):
            ours = ours_run(base, args.task, args.iterations, args.kl_prompts, args.seed)
        trl = trl_run(base, args.task, args.iterations, max_new, args.seed)
    import transformers
    import trl as trl_module

    print(
        json.dumps(
            {
                "task": args.task,
                "base": str(args.base),
                "base_origin": origin,
                "shape": SHAPE,
                "max_new_tokens": max_new,
                "iterations": args.iterations,
                "torch_threads": torch.get_num_threads(),
                "versions": {
                    "torch": torch.__version__,
                    "transformers": transformers.__version__,
                    "trl": trl_module.__version__,
                },
                "ours": ours,
                "trl": trl,
                "ours_over_trl_tokens_per_s": round(ours["tokens_per_s"] / trl["tokens_per_s"], 3),
                "ours_over_trl_tokens_per_s_with_kl": round(
                    ours["tokens_per_s_with_kl"] / trl["tokens_per_s"], 3
                ),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
