"""The `vla-razor` command: one entry point, one sub-command per capability that really works.

Each sub-command's parser names its handler as ``"module:function"`` (a function of ``args`` in
:mod:`vla_razor.commands`), imported only when that command runs, so ``--help`` and every command start fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from .algorithms import ALGORITHMS, LLM_ALGORITHMS
from .errors import EXIT_INTERRUPTED, BadInputError, ConfigError, NonFiniteError, WorkerError


def _add_doctor(sub) -> None:
    p = sub.add_parser(
        "doctor", help="check the installation (torch, numpy, Vulkan, ManiSkill, divergence core)"
    )
    p.set_defaults(handler="vla_razor.commands.doctor:main")


def _add_demos(sub) -> None:
    p = sub.add_parser(
        "demos", help="generate expert demonstrations (ManiSkill motion planning or an RL expert)"
    )
    p.add_argument(
        "--task",
        action="append",
        required=True,
        help="task name (PickCube); repeat it or give a comma list for several",
    )
    p.add_argument("--episodes", type=int, help="number of demos to keep per task")
    p.add_argument("--out", default="runs/demos", help="output root (default: runs/demos)")
    p.add_argument(
        "--control-mode", default="pd_ee_delta_pose", help="target control mode (default: pd_ee_delta_pose)"
    )
    p.add_argument("--seed", type=int, default=0, help="first episode seed (default: 0)")
    p.add_argument(
        "--rl-timesteps",
        type=int,
        help="PPO budget for tasks without a planner (default: 200000; 256 with --smoke)",
    )
    p.add_argument(
        "--smoke", action="store_true", help="2 demos per task (and a tiny RL budget): checks the pipeline"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(handler="vla_razor.commands.demos:main")


def _add_dataset(sub) -> None:
    p = sub.add_parser(
        "dataset", help="LeRobot datasets: export demonstrations, inspect a dataset (.venv-lerobot)"
    )
    ds = p.add_subparsers(dest="dataset_command", required=True, metavar="DATASET_COMMAND")
    ex = ds.add_parser("export", help="write demonstrations as a LeRobotDataset v3 through LeRobot's API")
    ex.add_argument(
        "--demos", action="append", help="a demo folder (runs/demos/<Task>/<control mode>); repeatable"
    )
    ex.add_argument("--suite", help="every task of this suite, from --demo-dir")
    ex.add_argument("--demo-dir", default="runs/demos", help="demo store for --suite (default: runs/demos)")
    ex.add_argument(
        "--control-mode",
        default="pd_ee_delta_pose",
        help="control mode for --suite (default: pd_ee_delta_pose)",
    )
    ex.add_argument("--out", required=True, help="the dataset's directory (must not exist)")
    ex.add_argument("--video", action="store_true", help="also camera video, rendered by replaying the demos")
    ex.add_argument(
        "--image-size", type=int, default=64, help="video frames are this many px square (default 64)"
    )
    ex.add_argument("--repo-id", help="the dataset's repo_id in its metadata (default: vla-razor/<out name>)")
    ex.add_argument("--episodes", type=int, help="at most this many episodes of each demo folder")
    ex.add_argument("--successful-only", action="store_true", help="leave out unsuccessful episodes")
    ex.add_argument("--smoke", action="store_true", help="2 episodes of each demo folder")
    ex.add_argument("--no-progress", action="store_true", help="no progress bar")
    ex.set_defaults(handler="vla_razor.commands.dataset:export")
    ins = ds.add_parser("inspect", help="how a local LeRobotDataset maps to canonical demonstrations")
    ins.add_argument("root", help="the dataset's local directory")
    ins.add_argument("--key", action="append", help="canonical=feature, e.g. proprio=observation.joints")
    ins.set_defaults(handler="vla_razor.commands.dataset:inspect")


def _add_config_args(p: argparse.ArgumentParser, default_config: str) -> None:
    """The config flags every configurable command shares: a YAML file, dotted overrides, --smoke."""
    p.add_argument("--config", default=default_config, help=f"YAML config (default: {default_config})")
    p.add_argument("--smoke", action="store_true", help="a tiny budget: checks the whole pipeline in minutes")
    p.add_argument(
        "overrides", nargs="*", metavar="key.sub=value", help="override config fields, e.g. demos_per_task=5"
    )


def _add_quickstart(sub) -> None:
    p = sub.add_parser(
        "quickstart",
        help="the main job: demos, the base, an RL-vs-SFT sweep at matched success, the razor report",
    )
    _add_config_args(p, "configs/quickstart.yaml")
    p.add_argument(
        "--retrain-base",
        action="store_true",
        help="pretrain the base from scratch (configs/pretrain.yaml) instead of using the shipped checkpoint",
    )
    p.set_defaults(handler="vla_razor.commands.quickstart:main")


def _add_pretrain(sub) -> None:
    p = sub.add_parser(
        "pretrain", help="multi-task behaviour cloning of the base policy on the suite's demonstrations"
    )
    _add_config_args(p, "configs/pretrain.yaml")
    p.set_defaults(handler="vla_razor.commands.pretrain:main")


def _add_finetune(sub) -> None:
    p = sub.add_parser(
        "finetune",
        help="fine-tune a base policy on the suite's new task (PPO, GRPO or SFT), tracking the KL to the "
        "base",
    )
    p.add_argument("--algo", choices=tuple(ALGORITHMS), required=True, help="fine-tuning algorithm")
    p.add_argument("--config", default=None, help="YAML config (default: configs/finetune_<algo>.yaml)")
    p.add_argument("--smoke", action="store_true", help="a tiny budget: checks the whole pipeline in minutes")
    p.add_argument(
        "--resume", action="store_true", help="continue the run of the same name from its last checkpoint"
    )
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="key.sub=value",
        help="override config fields, e.g. lr=1e-5 kl_penalty.kind=fixed",
    )
    p.set_defaults(handler="vla_razor.commands.finetune:main")


def _add_eval(sub) -> None:
    p = sub.add_parser(
        "eval",
        help="evaluate a policy on every task of a suite: success, 95%% intervals, forgetting vs the base",
    )
    p.add_argument(
        "policy",
        nargs="?",
        help="a policy directory (save_pretrained) or a run directory (its policy/)",
    )
    p.add_argument("--checkpoint", help="the same as the positional POLICY (kept for older scripts)")
    p.add_argument("--suite", default="default", help="suite name or YAML path (default: default)")
    p.add_argument("--episodes", type=int, default=50, help="episodes per task (default: 50)")
    p.add_argument(
        "--seed", type=int, default=10_000, help="first episode seed (default: 10000, the evaluation seeds)"
    )
    p.add_argument(
        "--base",
        help="base policy to measure forgetting against (default: the run's base, from its config.yaml)",
    )
    p.add_argument(
        "--workers", type=int, default=1, help="Ray workers for the per-task evaluations (default: 1, no Ray)"
    )
    p.add_argument("--video", action="store_true", help="also record videos of every task")
    p.add_argument("--video-episodes", type=int, default=4, help="episodes per video (default: 4)")
    p.add_argument("--out", help="results JSON (default: <run>/eval/retention_<suite>.json)")
    p.set_defaults(handler="vla_razor.commands.eval:main")


def _add_spread(sub) -> None:
    p = sub.add_parser(
        "spread",
        help="whether RL has anything to reinforce: a policy's sampled outcomes per initial state of a task",
    )
    p.add_argument("policy", help="a policy directory (save_pretrained) or a run directory (its policy/)")
    p.add_argument("--task", action="append", required=True, help="a task (repeat for several)")
    p.add_argument("--states", type=int, default=8, help="initial states per task (default: 8)")
    p.add_argument("--group-size", type=int, default=8, help="sampled episodes from each state (default: 8)")
    p.add_argument(
        "--seed", type=int, default=20_000, help="first state's reset seed and the sampling seed (20000)"
    )
    p.add_argument(
        "--noise-level",
        type=float,
        help="a Flow-SDE policy's exploration noise (default: the one saved with the policy)",
    )
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: 0, torch's own)")
    p.add_argument("--out", help="also write the results as JSON here (default: print only)")
    p.set_defaults(handler="vla_razor.commands.spread:main")


def _add_razor(sub) -> None:
    p = sub.add_parser(
        "razor", help="sweep RL and SFT runs from a base policy, then the RL's Razor analysis and report"
    )
    _add_config_args(p, "configs/razor.yaml")
    p.add_argument(
        "--report-only", action="store_true", help="skip the runs: analyse the run directories that exist"
    )
    p.add_argument(
        "--archive",
        metavar="DIR",
        help="restore the runs the sweep lacks from this archive, and keep every run, the plan and the "
        "report's files there (the committed one: docs/results/razor-robot); without it nothing is written "
        "outside the sweep's run directory",
    )
    p.set_defaults(handler="vla_razor.commands.razor:main")


def _add_results(sub) -> None:
    p = sub.add_parser(
        "results", help="the results page and the README's headline numbers, from the committed archives"
    )
    p.add_argument("--root", default="docs/results", help="the archives (default: docs/results)")
    p.add_argument("--out", metavar="FILE", help="write the page here (docs/results.md); default: print it")
    p.add_argument("--readme", metavar="FILE", help="also rewrite this README's headline block (README.md)")
    p.set_defaults(handler="vla_razor.commands.results:main")


def _add_llm(sub) -> None:
    p = sub.add_parser(
        "llm", help="the LLM track: a tiny transformers LM on arithmetic, GRPO vs SFT, the same KL core"
    )
    llm = p.add_subparsers(dest="llm_command", required=True, metavar="LLM_COMMAND")
    pre = llm.add_parser("pretrain", help="train the base LM from scratch on the prior arithmetic suite")
    _add_config_args(pre, "configs/llm_pretrain.yaml")
    pre.set_defaults(handler="vla_razor.commands.llm:pretrain_main")
    fin = llm.add_parser(
        "finetune", help="GRPO or SFT on the new arithmetic task, tracking the token KL to the base"
    )
    fin.add_argument("--algo", choices=LLM_ALGORITHMS, required=True, help="fine-tuning algorithm")
    fin.add_argument(
        "--resume", action="store_true", help="continue the run of the same name from its last checkpoint"
    )
    _add_config_args(fin, "configs/llm_finetune.yaml")
    fin.set_defaults(handler="vla_razor.commands.llm:finetune_main")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vla-razor",
        description="Fine-tune robot VLA policies with RL or SFT and measure the KL to the base policy and "
        "the forgetting.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_doctor(sub)
    _add_demos(sub)
    _add_dataset(sub)
    _add_quickstart(sub)
    _add_pretrain(sub)
    _add_finetune(sub)
    _add_eval(sub)
    _add_spread(sub)
    _add_razor(sub)
    _add_results(sub)
    _add_llm(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; return its exit code (0, 2 bad input, 3 diverged, 4 worker lost, 130 interrupted:
    :mod:`vla_razor.errors`). Errors a user can cause print one line, never a traceback."""
    parser = build_parser()
    args = parser.parse_args(argv)
    sub_command = getattr(args, "llm_command", None) or getattr(args, "dataset_command", None)
    command = args.command + (f" {sub_command}" if sub_command else "")
    module, _, function = args.handler.partition(":")
    handler = getattr(importlib.import_module(module), function)
    try:
        return int(handler(args) or 0)
    except ConfigError as err:
        print(f"vla-razor {command}: config error: {err}", file=sys.stderr)
        return err.exit_code
    except (BadInputError, NonFiniteError, WorkerError) as err:
        print(f"vla-razor {command}: {err}", file=sys.stderr)
        return err.exit_code
    except (FileNotFoundError, FileExistsError) as err:  # a path the user named (open() and friends)
        print(f"vla-razor {command}: {err}", file=sys.stderr)
        return BadInputError.exit_code
    except KeyboardInterrupt:
        print(
            f"vla-razor {command}: interrupted; the last checkpoint is kept (--resume continues)",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED


def entry() -> None:
    """The ``vla-razor`` executable: :func:`main`, then a prompt exit.

    Every result is written (atomically) and every file closed by the time ``main`` returns. The process
    then leaves with ``os._exit`` instead of running the interpreter's finalisers: SAPIEN's pybind11
    objects, finalised during interpreter teardown, can abort the process (``PyGILState_Check``) after a
    good run, and a sweep would read that as a failure. Child processes were joined by their owners."""
    try:
        code = main()
    except SystemExit as stop:  # argparse: --help (0) or a usage error (2)
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 2)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    entry()
