"""Per-chunk cost of LeRobot's flow VLAs behind the chain interface, at real size and tiny, on this CPU.

For each policy (random weights, built offline by tests/lerobot_builders.py), at batch 1 on one thread:
LeRobot's own ``predict_action_chunk``; the adapter's deterministic sample (the same sampler from outside,
so the ratio is the adapter's overhead); its Flow-SDE sample (what a PPO rollout pays per decision); the
exact chain log-probability (what the update and the KL to the base pay per decision) and its backward
pass. Prints one JSON record per policy; seconds are the median of ``--repeats`` after one warm-up call.

    .venv-lerobot/bin/python benchmarks/bench_lerobot_chunk.py --policies smolvla pi0 tiny-pi0 tiny-smolvla

Sizes: ``smolvla`` is SmolVLA at its real dimensions (SmolVLM2-500M's shape, 16 VLM layers, 512 px, 50-action
chunks, 10 steps); ``pi0`` is LeRobot's pi0 at its defaults (PaliGemma gemma_2b and the gemma_300m expert,
224 px, 50 actions, 10 steps: 4B parameters, 16 GB in float32). Its backward pass would need as much again
for the gradients, more than this 24 GB machine has: it is timed forward only. (gemma_300m for both parts does
not run in LeRobot 0.6.1: its image projection stays 2048 wide against a 1024-wide language model.) ``tiny-*``
are the tests' configurations.
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

# SmolVLM2-500M-Video-Instruct's shape (its config.json): SmolLM2-360M text model, SigLIP-B/16 at 512 px
SMOLVLM_TEXT = dict(hidden_size=960, intermediate_size=2560, num_hidden_layers=32, num_attention_heads=15)
SMOLVLM_TEXT.update(num_key_value_heads=5, head_dim=64, vocab_size=49280, rms_norm_eps=1e-5)
SMOLVLM_VISION = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12)
SMOLVLM_VISION.update(image_size=512, patch_size=16)
REAL_CHUNK = dict(chunk_size=50, n_action_steps=50)


def build(name: str, root: Path):
    """(adapter, image size) for one benchmark policy."""
    from lerobot_builders import local_tokenizer, make_pi0, make_smolvla, smolvlm_folder, tiny_pi0_dims

    from vla_razor.policies.lerobot_pi0.modeling_lerobot_pi0 import LeRobotPI0Chain
    from vla_razor.policies.lerobot_smolvla.modeling_lerobot_smolvla import LeRobotSmolVLAChain

    if name == "smolvla":
        vlm = smolvlm_folder(root / "smolvlm", text=SMOLVLM_TEXT, vision=SMOLVLM_VISION, scale_factor=4)
        parts = make_smolvla(vlm, image_size=512, num_steps=10, tokenizer_max_length=48, **REAL_CHUNK)
        return LeRobotSmolVLAChain(*parts), 512
    if name == "tiny-smolvla":
        return LeRobotSmolVLAChain(*make_smolvla(smolvlm_folder(root / "tiny-smolvlm"))), 32
    tokenizer = local_tokenizer(root / "tokenizer")
    if name == "pi0":
        parts = make_pi0(
            tokenizer, image_size=224, num_inference_steps=10, tokenizer_max_length=48, **REAL_CHUNK
        )
        return LeRobotPI0Chain(*parts), 224
    if name == "tiny-pi0":
        with tiny_pi0_dims():
            return LeRobotPI0Chain(*make_pi0(tokenizer)), 32
    raise SystemExit(f"unknown policy {name!r}")


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(name: str, root: Path, repeats: int, backward: bool) -> dict:
    policy, side = build(name, root)
    params = sum(p.numel() for p in policy.parameters())
    trainable = sum(p.numel() for p in policy.parameters() if p.requires_grad)
    g = torch.Generator().manual_seed(0)
    obs = {
        "proprio": torch.randn(1, 25, generator=g),
        "state": torch.zeros(1, 32),
        "state_mask": torch.ones(1, 32),
        "task_id": torch.zeros(1, dtype=torch.long),
        "rgb": (torch.rand(1, side, side, 3, generator=g) * 255).to(torch.uint8),
    }
    batch = policy._batch(obs)
    record = {"policy": name, "params_M": round(params / 1e6, 1), "trainable_M": round(trainable / 1e6, 1)}
    record.update(horizon=policy.config.horizon, num_steps=policy.config.num_steps, image_px=side)
    with torch.no_grad():
        record["lerobot_predict_s"] = timed(lambda: policy.inner.predict_action_chunk(dict(batch)), repeats)
        record["adapter_deterministic_s"] = timed(lambda: policy.predict_action_chunk(obs), repeats)
        _, chain = policy.sample(obs, "stochastic", generator=g)
        record["adapter_stochastic_s"] = timed(lambda: policy.sample(obs, "stochastic", generator=g), repeats)
        record["log_prob_s"] = timed(lambda: policy.log_prob(obs, chain), repeats)
    if backward and name != "pi0":  # pi0's gradients do not fit beside its weights here
        record["log_prob_backward_s"] = timed(lambda: policy.log_prob(obs, chain).sum().backward(), repeats)
    record["adapter_over_lerobot"] = round(record["adapter_deterministic_s"] / record["lerobot_predict_s"], 3)
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policies", nargs="+", default=["tiny-pi0", "tiny-smolvla", "smolvla", "pi0"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-backward", action="store_true")
    parser.add_argument("--smoke", action="store_true", help="the tiny policies, one repeat")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    policies = ["tiny-pi0", "tiny-smolvla"] if args.smoke else args.policies
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(sys.stderr):
        records = []
        for name in policies:
            records.append(measure(name, Path(tmp), 1 if args.smoke else args.repeats, not args.no_backward))
            print(json.dumps(records[-1]), file=sys.__stdout__, flush=True)


if __name__ == "__main__":
    main()
