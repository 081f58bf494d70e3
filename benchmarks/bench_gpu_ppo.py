"""Short PPO fine-tunes of the flow policy on ManiSkill's batched GPU simulation (``sim_backend=gpu``): env
steps per second, the split of an iteration between rollout, update and the KL to the base, and the peak GPU
memory, at several numbers of sub-envs, for state and RGB observations. Prints JSON, one record per setting.

On a GPU machine (scripts/gpu_check.sh runs it):

    python benchmarks/bench_gpu_ppo.py --envs 256 1024 --obs state rgb

State runs fine-tune the quickstart's shipped base (checkpoints/quickstart-base/policy). No RGB base ships,
so RGB runs fine-tune a freshly initialised flow policy of the same size with the vision encoder: they
measure the throughput of the vision path, not learning. The first iteration (CUDA kernels, caches) is
left out of the rates. On this CPU machine ``--device cpu --sim cpu`` runs the same code at a tiny size
(the test of the script itself; the numbers mean nothing there).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import traceback
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
STATE_BASE = ROOT / "checkpoints" / "quickstart-base" / "policy"


def rgb_base(directory: Path, like: Path) -> Path:
    """A flow policy with the vision encoder, the size of the base ``like``, saved to ``directory``."""
    from vla_razor.policies import ChainPolicy, make_policy

    config = ChainPolicy.from_pretrained(like).config
    fields = {k: getattr(config, k) for k in ("hidden", "num_layers", "num_heads", "chunk_size", "num_steps")}
    torch.manual_seed(0)
    policy = make_policy("flow", {**fields, "use_rgb": True}, embed_language=False)
    return policy.save_pretrained(directory)


def measure(obs_mode: str, num_envs: int, args, root: Path) -> dict:
    from vla_razor.policies import ChainPolicy
    from vla_razor.rl.ppo import PPOConfig, train
    from vla_razor.rundir import RunDir

    name = f"{obs_mode}-{num_envs}"
    base = STATE_BASE if obs_mode == "state" else rgb_base(root / f"base-{name}", STATE_BASE)
    chunk = ChainPolicy.from_pretrained(base).config.chunk_size
    per_iteration = num_envs * args.decisions * chunk
    cfg = PPOConfig(
        name=name,
        runs_dir=str(root),
        base=str(base),
        device=args.device,
        sim_backend=args.sim,
        task=args.task,
        suite="smoke",
        num_envs=num_envs,
        num_decisions=args.decisions,
        total_env_steps=args.iterations * per_iteration,
        update_epochs=args.epochs,
        num_minibatches=4,
        critic_warmup_iterations=0,
        eval_every=0,
        retention_episodes=0,
        video_episodes=0,
        final_eval_episodes=1,
        checkpoint_every=10_000,
        kl_states=256,
    )
    cuda = args.device.startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    run = train(cfg)
    wall = time.perf_counter() - started
    rows = [r for r in RunDir(run).read_metrics() if "time/iteration_s" in r]
    timed = rows[1:] or rows  # the first iteration compiles kernels and fills caches
    total = sum(r["time/iteration_s"] for r in timed)
    split = {part: sum(r[f"time/{part}_s"] for r in timed) / total for part in ("rollout", "update", "kl")}
    return {
        "task": args.task,
        "device": args.device,
        "sim_backend": args.sim,
        "obs_mode": obs_mode,
        "num_envs": num_envs,
        "decisions_per_iteration": num_envs * args.decisions,
        "iterations": len(rows),
        "timed_iterations": len(timed),
        "env_steps_per_iteration": per_iteration,
        "env_steps_per_s": per_iteration * len(timed) / total,
        "rollout_share": split["rollout"],
        "update_share": split["update"],
        "kl_share": split["kl"],
        "first_iteration_s": rows[0]["time/iteration_s"],
        "wall_s": wall,
        "kl_forward_last": rows[-1].get("kl/forward"),
        "success_train_last": rows[-1].get("success/train"),
        "peak_gpu_mib": torch.cuda.max_memory_allocated() / 2**20 if cuda else 0.0,
        "gpu": torch.cuda.get_device_name() if cuda else "",
    }


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="PullCube")
    parser.add_argument("--envs", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--obs", nargs="+", default=["state", "rgb"], choices=["state", "rgb"])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--sim", default="gpu", choices=["gpu", "cpu"])
    parser.add_argument("--decisions", type=int, default=16, help="action chunks per sub-env per iteration")
    parser.add_argument("--iterations", type=int, default=4, help="PPO iterations (the first is not timed)")
    parser.add_argument("--epochs", type=int, default=4, help="update epochs per iteration")
    parser.add_argument("--out", default="", help="also append each record to this JSON-lines file")
    parser.add_argument(
        "--keep-going", action="store_true", help="record a failing setting's error and go on to the next"
    )
    args = parser.parse_args(argv)
    records = []
    with tempfile.TemporaryDirectory(prefix="bench-gpu-ppo-") as tmp:
        for obs_mode in args.obs:
            for num_envs in args.envs:
                try:
                    record = measure(obs_mode, num_envs, args, Path(tmp))
                except Exception as err:  # one broken setting must not hide the others' figures
                    if not args.keep_going:
                        raise
                    traceback.print_exc()
                    record = {"obs_mode": obs_mode, "num_envs": num_envs, "error": repr(err)}
                print(json.dumps(record), flush=True)
                if args.out:
                    with open(args.out, "a") as f:
                        f.write(json.dumps(record) + "\n")
                records.append(record)
    return records


if __name__ == "__main__":
    main()
