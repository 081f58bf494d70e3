"""The main job as a new user runs it, timed: ``make quickstart`` in a fresh clone of this repository's HEAD.

Measures, in one run:
- the raw simulator's env-step rate on this machine (the main job's new task, state observations, random
  action chunks, one process, one thread), before the main job and after it (a busy or slower machine shows
  here);
- ``make setup`` (what ``make quickstart`` runs first) and ``vla-razor quickstart`` in the clone, each timed
  as a whole, then each stage (``runs/quickstart/eval/timings.json``) and each run of the sweep (its process's
  wall time, its periodic and final evaluations' time from its metrics);
- the plan's runs, and ``git status --porcelain`` of the clone afterwards (the main job changes no tracked
  file).

Prints JSON and writes it to ``--out`` (default ``runs/bench_quickstart/<UTC time>.json``); the clone is
removed unless ``--keep``. docs/benchmarks.md has the figures and the command.

    .venv/bin/python benchmarks/bench_quickstart.py [--smoke] [--keep] [--config FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from vla_razor.envs import load_suite

ROOT = Path(__file__).resolve().parents[1]

RAW_RATE = """
import time, numpy as np, torch
torch.set_num_threads(1)
from vla_razor.envs import make_vec_env
env = make_vec_env("{task}", num_envs=16, backend="cpu", chunk_size=8)
env.reset(seed=0)
rng, taken = np.random.default_rng(0), 0
start = time.perf_counter()
while time.perf_counter() - start < {seconds}:
    _, _, _, _, info = env.step(rng.uniform(-1, 1, env.action_space.shape).astype(np.float32))
    taken += int(info["chunk_steps"].sum())
print(taken / (time.perf_counter() - start))
"""


def raw_rate(python: str, seconds: float, task: str) -> float:
    """Env steps per second of the raw simulator on ``task`` (16 sub-envs, one process, one thread)."""
    out = subprocess.run(
        [python, "-c", RAW_RATE.format(seconds=seconds, task=task)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return round(float(out.stdout.strip().splitlines()[-1]), 1)


def timed(command: list[str], cwd: Path, log: Path) -> tuple[float, int]:
    """Run ``command`` with its output appended to ``log``; (wall seconds, exit code)."""
    start = time.perf_counter()
    with open(log, "a") as f:
        f.write(f"$ {' '.join(command)}\n")
        f.flush()
        code = subprocess.run(command, cwd=cwd, stdout=f, stderr=subprocess.STDOUT).returncode
    return round(time.perf_counter() - start, 1), code


def run_times(sweep: Path) -> dict:
    """Per run: its process's wall time, and from its metrics its evaluations' time and its iterations'."""
    status = sweep / "status.json"
    seconds = (
        {r["name"]: r.get("seconds") for r in json.loads(status.read_text())["runs"]}
        if status.is_file()
        else {}
    )
    out = {}
    for run in sorted((sweep / "runs").iterdir()) if (sweep / "runs").is_dir() else []:
        records = [
            json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()
        ]
        periodic = sum(r.get("time/eval_s", 0.0) for r in records)
        final = sum(r.get("final/time/eval_s", 0.0) for r in records)
        iterations = sum(r.get("time/iteration_s", 0.0) for r in records)
        out[run.name] = {
            "process_s": seconds.get(run.name),
            "iterations_s": round(iterations, 1),
            "periodic_evaluations_s": round(periodic, 1),
            "periodic_evaluations": sum("time/eval_s" in r for r in records),
            "final_evaluation_and_videos_s": round(final, 1),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--smoke", action="store_true", help="the --smoke main job (minutes): checks the script"
    )
    parser.add_argument(
        "--config", default="", help="the main job's config (default: its own, configs/quickstart.yaml)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the clone (its path is in the JSON)")
    parser.add_argument("--out", help="the JSON (default runs/bench_quickstart/<UTC time>.json)")
    parser.add_argument(
        "--raw-seconds", type=float, default=20.0, help="length of each raw simulator measurement"
    )
    args = parser.parse_args()
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    out_file = Path(args.out) if args.out else ROOT / "runs" / "bench_quickstart" / f"{stamp}.json"
    out_file.parent.mkdir(parents=True, exist_ok=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True
    )
    work = Path(tempfile.mkdtemp(prefix="bench-quickstart-"))
    clone = work / "vla-razor"
    subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(ROOT), str(clone)], check=True)
    log = out_file.with_suffix(".log")
    config = yaml.safe_load((ROOT / (args.config or "configs/quickstart.yaml")).read_text())
    task = load_suite(config["suite"]).new_task
    result = {
        "commit": commit.stdout.strip(),
        "uncommitted_changes_not_measured": bool(dirty.stdout.strip()),
        "smoke": args.smoke,
        "config": args.config or "configs/quickstart.yaml",
        "clone": str(clone),
        "log": str(log),
        "cpus": os.cpu_count(),
        "raw_task": task,
        "raw_env_steps_per_s_before": raw_rate(sys.executable, args.raw_seconds, task),
    }
    print(json.dumps(result), flush=True)
    result["setup_s"], code = timed(["make", "--no-print-directory", "setup"], clone, log)
    if code != 0:
        raise SystemExit(f"make setup failed (exit {code}): {log}")
    command = [str(clone / ".venv" / "bin" / "vla-razor"), "quickstart"] + (["--smoke"] if args.smoke else [])
    command += ["--config", args.config] if args.config else []
    result["quickstart_s"], result["quickstart_exit"] = timed(command, clone, log)
    result["total_min"] = round((result["setup_s"] + result["quickstart_s"]) / 60, 1)
    name = "quickstart-smoke" if args.smoke else "quickstart"
    timings = clone / "runs" / name / "eval" / "timings.json"
    result["stages_s"] = json.loads(timings.read_text()) if timings.is_file() else {}
    sweep = clone / "runs" / f"{name}-razor"
    plan = sweep / "plan.json"
    result["plan"] = [r["name"] for r in json.loads(plan.read_text())["runs"]] if plan.is_file() else []
    result["runs"] = run_times(sweep)
    status = subprocess.run(["git", "status", "--porcelain"], cwd=clone, capture_output=True, text=True)
    result["git_status_after"] = status.stdout.splitlines()
    result["raw_env_steps_per_s_after"] = raw_rate(sys.executable, args.raw_seconds, task)
    text = json.dumps(result, indent=1)
    out_file.write_text(text + "\n")
    print(text)
    if not args.keep:
        import shutil

        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
