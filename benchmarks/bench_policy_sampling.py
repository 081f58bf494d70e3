"""Policy sampling and log-likelihood latency on CPU, per family and sampling mode.

For each family (Flow-SDE, Flow-Noise, diffusion, Gaussian) at its default size (embed_language=False:
the instruction table does not change the cost), and at batch 1 and batch 64: the median time of
``sample(obs, "stochastic")``, ``sample(obs, "deterministic")`` and ``log_prob(obs, chain)`` of a
sampled stochastic chain (under no_grad, as when scoring rollouts or measuring KL, and with autograd,
as in a PPO update), per call and per action chunk. ``log_prob_over_deterministic_sample`` is the
ratio of the two medians at the same batch; the target for Flow-SDE is <= 1.3 (the log-likelihood of a
chain should cost no more than producing an ODE sample).

Each call is timed in wall time and in process CPU time (all threads; steal time on a shared VM does
not inflate it, so with --threads 1 it is the steadier number). The timed calls are interleaved (one of
each per round), so slow phases of a shared machine hit all of them alike. ``--no-fastpath`` turns off
PyTorch's fused inference path of nn.TransformerEncoderLayer (taken only in eval mode without
autograd: by sample and no-grad log_prob, never by a log_prob that builds a graph).

With autograd, log_prob keeps every activation alive until the graph is freed; with glibc's default
malloc those large blocks are mmap'd fresh on every call and page-faulted in, which alone made the
batch-64 graph-building log_prob ~1.4x slower than without autograd. Keeping freed memory in the
process removes that cost; the JSON records the two glibc settings for that:

    MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=4294967296 .venv/bin/python \
benchmarks/bench_policy_sampling.py

Prints one JSON object. Usage:

    .venv/bin/python benchmarks/bench_policy_sampling.py [--threads 2 --repeats 30 --batches 1 64 \
--no-fastpath]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch

from vla_razor.envs.observations import random_observation

VARIANTS = {
    "flow_sde": ("flow", {"noise_method": "sde"}),
    "flow_noise": ("flow", {"noise_method": "noise"}),
    "diffusion": ("diffusion", {}),
    "gaussian": ("gaussian", {}),
}


def _timed(fn) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def bench_one(policy, batch: int, repeats: int) -> dict:
    obs = random_observation(batch)
    _, chain = policy.sample(obs, "stochastic")

    def log_prob_grad():
        policy.log_prob(obs, chain).sum()  # builds the autograd graph, as in a PPO update

    calls = {
        "sample_stochastic": lambda: policy.sample(obs, "stochastic"),
        "sample_deterministic": lambda: policy.sample(obs, "deterministic"),
        "log_prob": lambda: torch.no_grad()(policy.log_prob)(obs, chain),
        "log_prob_grad": log_prob_grad,
    }
    for fn in calls.values():  # warm-up
        fn()
    wall = {name: [] for name in calls}
    cpu = {name: [] for name in calls}
    for _ in range(repeats):
        for name, fn in calls.items():
            w, c = _timed(fn)
            wall[name].append(w)
            cpu[name].append(c)
    out = {}
    for name in calls:
        ms = 1e3 * statistics.median(wall[name])
        out[f"{name}_ms"] = round(ms, 3)
        out[f"{name}_ms_per_chunk"] = round(ms / batch, 4)
        out[f"{name}_cpu_ms"] = round(1e3 * statistics.median(cpu[name]), 3)
    for clock, times in (("", wall), ("_cpu", cpu)):
        det = statistics.median(times["sample_deterministic"])
        for name in ("log_prob", "log_prob_grad"):
            out[f"{name}_over_deterministic_sample{clock}"] = round(statistics.median(times[name]) / det, 3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--families", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument(
        "--no-fastpath", action="store_true", help="disable the fused transformer inference path"
    )
    parser.add_argument(
        "--tune-malloc",
        action="store_true",
        help="apply vla_razor.runtime.tune_malloc() first, as the fine-tuning commands do",
    )
    args = parser.parse_args()
    if args.tune_malloc:
        from vla_razor.runtime import tune_malloc

        tune_malloc()

    from vla_razor.policies.factory import make_policy

    torch.set_num_threads(args.threads)
    torch.backends.mha.set_fastpath_enabled(not args.no_fastpath)
    result = {
        "torch": torch.__version__,
        "threads": args.threads,
        "repeats": args.repeats,
        "transformer_fastpath": not args.no_fastpath,
        "malloc_env": {k: os.environ.get(k) for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")},
        "families": {},
    }
    for name in args.families:
        family, extra = VARIANTS[name]
        torch.manual_seed(0)
        policy = make_policy(family, extra, embed_language=False).eval()
        cfg = policy.config
        entry = {
            "num_steps": getattr(cfg, "num_steps", 1),
            "hidden": cfg.hidden,
            "num_layers": cfg.num_layers,
            "chunk_size": cfg.chunk_size,
        }
        for batch in args.batches:
            entry[f"batch_{batch}"] = bench_one(policy, batch, args.repeats)
        result["families"][name] = entry
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
