"""Exact token KL: vla_razor's chunked categorical KL vs torch.distributions, in one run.

Each method runs in its own fresh subprocess so its peak memory can be read from the OS
(ru_maxrss) without the other method's allocations; both use the same seeded logits.
Prints one JSON object. Usage:

    .venv/bin/python benchmarks/bench_token_kl.py [--batch 16 --seq 512 --vocab 32000 --repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time


def _status_bytes(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak_rss() -> None:
    # Linux: writing 5 to clear_refs resets VmHWM (the peak RSS) to the current RSS, so the
    # temporaries made while building the inputs do not count against the method.
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def worker(method: str, batch: int, seq: int, vocab: int, repeats: int, threads: int) -> dict:
    import torch
    import torch.distributions as td

    from vla_razor.divergence import Categorical, kl

    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    zp = torch.randn(batch, seq, vocab, generator=g) * 2.0
    zq = zp + torch.randn(batch, seq, vocab, generator=g) * 0.5

    def run():
        with torch.no_grad():
            if method == "ours":
                return kl(Categorical(zp), Categorical(zq))
            return td.kl_divergence(td.Categorical(logits=zp), td.Categorical(logits=zq))

    _reset_peak_rss()
    baseline = _status_bytes("VmRSS")
    run()  # warm-up (first-touch page faults), counted for memory, not for time
    times, value = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        value = run()
        times.append(time.perf_counter() - start)
    peak = _status_bytes("VmHWM")
    return {
        "seconds_median": statistics.median(times),
        "seconds_all": times,
        "peak_extra_bytes": peak - baseline,
        "kl_mean": value.mean().item(),
        "logits_bytes": zp.numel() * zp.element_size(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq", type=int, default=512)
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--worker", choices=["ours", "torch"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.batch, args.seq, args.vocab, args.repeats, args.threads)))
        return

    results = {}
    for method in ("torch", "ours"):
        cmd = [sys.executable, __file__, "--worker", method] + [
            f"--{k}={getattr(args, k)}" for k in ("batch", "seq", "vocab", "repeats", "threads")
        ]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        results[method] = json.loads(out.strip().splitlines()[-1])
    ours, ref = results["ours"], results["torch"]
    report = {
        "benchmark": "exact token KL(p||q), float32 logits",
        "shape": [args.batch, args.seq, args.vocab],
        "threads": args.threads,
        "repeats": args.repeats,
        "ours": ours,
        "torch_distributions": ref,
        "speedup_vs_torch": ref["seconds_median"] / ours["seconds_median"],
        "ours_peak_extra_over_logits": ours["peak_extra_bytes"] / ours["logits_bytes"],
        "torch_peak_extra_over_logits": ref["peak_extra_bytes"] / ref["logits_bytes"],
        "max_abs_mean_diff": abs(ours["kl_mean"] - ref["kl_mean"]),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
