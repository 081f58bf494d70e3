"""Rollout throughput of the flow policy in ManiSkill's batched GPU simulation: env steps per second at
several numbers of sub-envs, the split between policy sampling and simulation, and the peak GPU memory,
for state and RGB observations. Prints JSON (one record per setting).

On a GPU machine (scripts/gpu_check.sh runs it):

    python benchmarks/bench_gpu_rollout.py --envs 256 1024 --obs state rgb

On this CPU machine the same code runs with ``--backend cpu`` at a tiny size (the test of the script
itself; the numbers mean nothing there).
"""

from __future__ import annotations

import argparse
import json
import time

import torch

TINY = {"hidden": 32, "num_layers": 1, "num_heads": 4, "chunk_size": 4, "num_steps": 2}


def measure(task: str, num_envs: int, obs_mode: str, backend: str, decisions: int, policy_cfg: dict) -> dict:
    from vla_razor.envs import make_vec_env
    from vla_razor.policies import make_policy
    from vla_razor.policies.encoders import as_tensor_obs

    device = torch.device("cuda" if backend == "gpu" else "cpu")
    policy = make_policy("flow", {**policy_cfg, "use_rgb": obs_mode == "rgb"}, embed_language=False).to(
        device
    )
    policy.eval()
    env = make_vec_env(
        task,
        num_envs=num_envs,
        obs_mode=obs_mode,
        backend=backend,
        chunk_size=policy.config.chunk_size,
        seed=0,
    )
    generator = torch.Generator(device=device).manual_seed(0)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    sample_s = env_s = 0.0
    steps = 0
    try:
        obs, _ = env.reset()
        for _ in range(decisions):
            started = time.perf_counter()
            with torch.no_grad():
                actions, _ = policy.sample(
                    as_tensor_obs(obs, device=device), "stochastic", generator=generator
                )
            if device.type == "cuda":
                torch.cuda.synchronize()
            sampled = time.perf_counter()
            step_actions = actions if backend == "gpu" else actions.cpu().numpy()
            obs, _, _, _, info = env.step(step_actions)
            if device.type == "cuda":
                torch.cuda.synchronize()
            env_s += time.perf_counter() - sampled
            sample_s += sampled - started
            steps += int(torch.as_tensor(info["chunk_steps"]).sum())
    finally:
        env.close()
    total = sample_s + env_s
    return {
        "task": task,
        "backend": backend,
        "obs_mode": obs_mode,
        "num_envs": num_envs,
        "decisions": decisions,
        "env_steps": steps,
        "env_steps_per_s": steps / total,
        "sample_share": sample_s / total,
        "env_share": env_s / total,
        "peak_gpu_mib": torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else 0.0,
    }


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="PickCube")
    parser.add_argument("--envs", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--obs", nargs="+", default=["state", "rgb"], choices=["state", "rgb"])
    parser.add_argument("--backend", default="gpu", choices=["gpu", "cpu"])
    parser.add_argument(
        "--decisions", type=int, default=20, help="action chunks per sub-env (after one warm-up)"
    )
    parser.add_argument(
        "--tiny", action="store_true", help="a tiny policy instead of the default flow config"
    )
    args = parser.parse_args(argv)
    policy_cfg = TINY if args.tiny else {}
    records = []
    for obs_mode in args.obs:
        for num_envs in args.envs:
            measure(args.task, num_envs, obs_mode, args.backend, 1, policy_cfg)  # warm-up: kernels, caches
            record = measure(args.task, num_envs, obs_mode, args.backend, args.decisions, policy_cfg)
            print(json.dumps(record), flush=True)
            records.append(record)
    return records


if __name__ == "__main__":
    main()
