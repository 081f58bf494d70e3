"""PPO with the KL to the base tracked, on tiny local pi0, pi0.5 and SmolVLA policies (random weights, built
offline by tests/lerobot_builders.py), on the default suite's new task with 32 px RGB observations. Prints
one JSON record per policy: every iteration's kl/forward, kl/reverse and train success, the final
evaluation's success, env steps per second. The weights are random, so success says nothing; the record
shows the whole path (rollout, exact chain log-probabilities, PPO update, KL to the frozen base, evaluation,
LeRobot-format save) running on each family.

    HF_HUB_OFFLINE=1 .venv-lerobot/bin/python scripts/lerobot_flow_smoke.py [--env-steps 1024] [--smoke]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", nargs="+", default=["pi0", "pi05", "smolvla"])
    parser.add_argument("--env-steps", type=int, default=1024, help="PPO env steps per policy")
    parser.add_argument("--smoke", action="store_true", help="128 env steps each")
    args = parser.parse_args()

    from lerobot_builders import tiny_flow_dirs, tiny_pi0_dims

    from vla_razor.rl.ppo import PPOConfig, train
    from vla_razor.rundir import RunDir

    steps = 128 if args.smoke else args.env_steps
    with tempfile.TemporaryDirectory() as tmp, tiny_pi0_dims():
        root = Path(tmp)
        with contextlib.redirect_stdout(sys.stderr):
            bases = tiny_flow_dirs(root)
        for family in args.families:
            base = bases[family]
            settings = dict(base=f"lerobot:{base}", runs_dir=str(root / "runs"), name=f"ppo-{family}")
            settings.update(suite="default", total_env_steps=steps, num_envs=4, num_decisions=4, lr=1e-4)
            settings.update(update_epochs=2, num_minibatches=2, critic_warmup_iterations=0, rollout_workers=0)
            settings.update(eval_every=0, eval_episodes=2, retention_episodes=2, final_eval_episodes=4)
            settings.update(video_episodes=0, kl_states=16, threads=1)
            start = time.perf_counter()
            with contextlib.redirect_stdout(sys.stderr):  # LeRobot's loaders print; stdout stays JSON
                run = train(PPOConfig(**settings))
            wall = time.perf_counter() - start
            rows = RunDir(run).read_metrics()
            iterations = [r for r in rows if "kl/forward" in r]
            final = next((r for r in reversed(rows) if "final/success/new_task" in r), {})
            record = {
                "family": family,
                "env_steps": steps,
                "wall_s": round(wall, 1),
                "kl_forward": [round(r["kl/forward"], 4) for r in iterations],
                "kl_reverse": [round(r["kl/reverse"], 4) for r in iterations],
                "train_success": [r.get("success/train") for r in iterations],
                "final_new_task_success": final.get("final/success/new_task"),
                "saved_type": json.loads((Path(run) / "policy" / "config.json").read_text())["type"],
            }
            print(json.dumps(record), file=sys.__stdout__, flush=True)


if __name__ == "__main__":
    main()
