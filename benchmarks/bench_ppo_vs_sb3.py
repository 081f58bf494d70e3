"""Gaussian-MLP PPO: vla-razor's loop vs stable-baselines3's PPO, same task, env and hyper-parameters.

Both learn the same ManiSkill task from scratch with the same canonical observations
(``ManiSkillTaskEnv``, dict observations, one action per step), the same number of sub-envs stepped in
this process, the same rollout length, epochs, minibatches, learning rate, discount, GAE, clip and
gradient clip, for the same number of environment steps. Reported per library: wall time per env step
and the deterministic success rate on the same fixed evaluation seeds afterwards. vla-razor's
iterations also measure the KL to the base (its signature metric); that cost is included.

Differences that remain: SB3's MultiInputPolicy flattens the observation dict into MLP(64, 64) heads;
vla-razor's Gaussian policy encodes it into three tokens (language, proprio, state) before its MLP.

``--variants`` picks the runs, each timed on the same work: ``ours`` (on-policy, one process),
``ours_wN`` (``rollout_workers=N``: N worker processes collect the rollouts while the learner updates),
``sb3`` (DummyVecEnv, one process) and ``sb3_subproc`` (SubprocVecEnv, one process per sub-env), so that
a multi-process vla-razor is also compared with a multi-process SB3.

    .venv/bin/python benchmarks/bench_ppo_vs_sb3.py [--task PushCube] [--env-steps 40000]
        [--variants ours,sb3]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

PRESETS = {
    # the throughput comparison (docs/benchmarks.md): small nets, SB3-like defaults
    "default": dict(
        num_envs=8,
        n_steps=64,
        epochs=4,
        minibatches=4,
        lr=3e-4,
        gamma=0.95,
        gae_lambda=0.95,
        clip=0.2,
        max_grad_norm=0.5,
        vf_coef=0.5,
        hidden=64,
        layers=2,
        log_std=0.0,
    ),
    # the learning sanity check: ManiSkill's own PPO baseline settings (short discount, 3x256 MLP, small
    # initial std), under which SB3 trains this project's RL demo experts
    "maniskill": dict(
        num_envs=8,
        n_steps=64,
        epochs=8,
        minibatches=4,
        lr=3e-4,
        gamma=0.8,
        gae_lambda=0.9,
        clip=0.2,
        max_grad_norm=0.5,
        vf_coef=0.5,
        hidden=256,
        layers=3,
        log_std=-0.5,
    ),
}
HPARAMS = dict(PRESETS["default"])


def _sb3_env(task: str):
    from vla_razor.envs.maniskill import ManiSkillTaskEnv

    return ManiSkillTaskEnv(task)


def sb3_run(
    task: str, env_steps: int, seed: int, eval_episodes: int, eval_seed: int, subproc: bool = False
) -> dict:
    import functools

    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

    from vla_razor.envs.maniskill import ManiSkillTaskEnv

    h = HPARAMS
    factories = [functools.partial(_sb3_env, task) for _ in range(h["num_envs"])]
    env = SubprocVecEnv(factories, start_method="spawn") if subproc else DummyVecEnv(factories)
    model = PPO(
        "MultiInputPolicy",
        env,
        n_steps=h["n_steps"],
        batch_size=h["num_envs"] * h["n_steps"] // h["minibatches"],
        n_epochs=h["epochs"],
        learning_rate=h["lr"],
        gamma=h["gamma"],
        gae_lambda=h["gae_lambda"],
        clip_range=h["clip"],
        max_grad_norm=h["max_grad_norm"],
        vf_coef=h["vf_coef"],
        ent_coef=0.0,
        policy_kwargs={"net_arch": [h["hidden"]] * h["layers"], "log_std_init": h["log_std"]},
        seed=seed,
        device="cpu",
        verbose=0,
    )
    start = time.perf_counter()
    model.learn(total_timesteps=env_steps)
    seconds = time.perf_counter() - start
    env.close()

    successes = 0
    for i in range(eval_episodes):
        e = ManiSkillTaskEnv(task)
        obs, _ = e.reset(seed=eval_seed + i)
        done, info = False, {}
        while not done:
            action, _ = model.predict(obs, deterministic=True)
            obs, _, terminated, truncated, info = e.step(action)
            done = terminated or truncated
        successes += bool(info["success"])
        e.close()
    return {"seconds": seconds, "env_steps": model.num_timesteps, "success": successes / eval_episodes}


def ours_run(
    task: str,
    env_steps: int,
    seed: int,
    eval_episodes: int,
    eval_seed: int,
    keep: str | None = None,
    rollout_workers: int = 0,
) -> dict:
    from vla_razor.evaluation import evaluate_task
    from vla_razor.policies import ChainPolicy, make_policy
    from vla_razor.rl.ppo import PPOConfig, train

    h = HPARAMS
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "fresh"
        # Same exploration start as SB3 (its initial log-std) and an MLP of the same width and depth.
        make_policy(
            "gaussian",
            {"chunk_size": 1, "hidden": h["hidden"], "num_layers": h["layers"], "init_log_std": h["log_std"]},
        ).save_pretrained(base)
        cfg = PPOConfig(
            name=Path(keep).name if keep else "ours",
            runs_dir=str(Path(keep).parent) if keep else tmp,
            base=str(base),
            seed=seed,
            total_env_steps=env_steps,
            num_envs=h["num_envs"],
            num_decisions=h["n_steps"],
            update_epochs=h["epochs"],
            num_minibatches=h["minibatches"],
            lr=h["lr"],
            critic_lr=h["lr"],
            gamma=h["gamma"],
            gae_lambda=h["gae_lambda"],
            clip_coef=h["clip"],
            max_grad_norm=h["max_grad_norm"],
            vf_coef=h["vf_coef"],
            target_kl=0.0,
            critic_warmup_iterations=0,
            eval_every=0,
            retention_episodes=0,
            final_eval_episodes=1,
            video_episodes=0,
            checkpoint_every=10_000,
            task=task,
            reward_mode="normalized_dense",
            rollout_workers=rollout_workers,
        )  # SB3's env: ManiSkillTaskEnv's dense reward
        start = time.perf_counter()
        with contextlib.redirect_stdout(sys.stderr):  # stdout carries only the JSON
            run = train(cfg)
        records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        train_seconds = sum(r.get("time/iteration_s", 0.0) for r in records)
        seconds = time.perf_counter() - start
        policy = ChainPolicy.from_pretrained(run / "policy")
    result = evaluate_task(policy, task, eval_episodes, seed=eval_seed)
    return {
        "seconds": train_seconds,
        "seconds_with_setup_and_final_eval": seconds,
        "env_steps": max(r.get("env_steps", 0) for r in records),
        "success": result.rate,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--task", default="PickCube", help="the default suite's new task, PickCube, by default"
    )
    parser.add_argument("--env-steps", type=int, default=40_000)
    parser.add_argument("--eval-episodes", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads, for both (process-wide)")
    parser.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default="default",
        help="hyper-parameters: 'default' (throughput) or 'maniskill' (ManiSkill's PPO baseline, to check "
        "learning)",
    )
    parser.add_argument(
        "--keep-run",
        default=None,
        help="keep vla-razor's run directory here (its metrics.jsonl is the learning curve)",
    )
    parser.add_argument(
        "--variants",
        default="ours,sb3",
        help="comma-separated: ours, ours_w1, ours_w2, ..., sb3, sb3_subproc",
    )
    args = parser.parse_args()
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    known = re.compile(r"ours|ours_w[1-9][0-9]*|sb3|sb3_subproc")
    if (
        not all(known.fullmatch(v) for v in variants)
        or not any(v.startswith("ours") for v in variants)
        or not any(v.startswith("sb3") for v in variants)
    ):
        parser.error(
            "--variants needs at least one of ours, ours_wN and one of sb3, sb3_subproc (got "
            f"{args.variants!r})"
        )
    HPARAMS.update(PRESETS[args.preset])
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    eval_seed = 10_000
    results = {}
    for variant in variants:
        if variant.startswith("ours"):
            workers = int(variant[len("ours_w") :]) if variant != "ours" else 0
            keep = args.keep_run if variant == "ours" else (args.keep_run and f"{args.keep_run}-w{workers}")
            results[variant] = ours_run(
                args.task,
                args.env_steps,
                args.seed,
                args.eval_episodes,
                eval_seed,
                keep,
                rollout_workers=workers,
            )
        else:
            results[variant] = sb3_run(
                args.task,
                args.env_steps,
                args.seed,
                args.eval_episodes,
                eval_seed,
                subproc=variant == "sb3_subproc",
            )
    per_step = {name: r["seconds"] / r["env_steps"] for name, r in results.items()}
    ours_names = [v for v in variants if v.startswith("ours")]
    sb3_names = [v for v in variants if v.startswith("sb3")]
    print(
        json.dumps(
            {
                "task": args.task,
                "env_steps": args.env_steps,
                "preset": args.preset,
                "hparams": HPARAMS,
                "torch_threads": torch.get_num_threads(),
                **results,
                "ms_per_env_step": {k: round(1000 * v, 3) for k, v in per_step.items()},
                "time_per_step_ratios": {
                    f"{o}/{b}": round(per_step[o] / per_step[b], 3) for o in ours_names for b in sb3_names
                },
                "success_differences": {
                    f"{o}-{b}": round(results[o]["success"] - results[b]["success"], 3)
                    for o in ours_names
                    for b in sb3_names
                },
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
