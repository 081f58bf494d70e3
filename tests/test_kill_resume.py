"""Crash anywhere, resume, lose nothing: runs SIGKILLed ten times at random moments resume to a complete,
readable run directory, every iteration logged exactly once, the base untouched (both tracks)."""

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # end-to-end: real runs killed and resumed


def _digest(directory: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir()) if p.is_file()
    }


def _start(cmd: list[str], marker: str):
    """Start ``cmd`` in its own process group; an event is set once its log shows ``marker`` (training
    began)."""
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
        start_new_session=True,
    )
    started, tail = threading.Event(), []

    def read():
        for line in proc.stderr:
            tail.append(line)
            del tail[:-30]
            if marker in line:
                started.set()

    threading.Thread(target=read, daemon=True).start()
    return proc, started, tail


def kill_repeatedly(cmd: list[str], marker: str, kills: int, max_delay_s: float, seed: int) -> list[float]:
    """SIGKILL ``cmd`` ``kills`` times, each a random time (uniform in [0, max_delay_s]) after training
    began, so kills land mid-rollout, mid-update, mid-checkpoint, mid-evaluation and mid-video; returns
    the delays. Fails if a run finished before its kill (then the run is too short for the test)."""
    rng = random.Random(seed)
    delays = []
    for attempt in range(kills):
        proc, started, tail = _start(cmd, marker)
        if not started.wait(timeout=240):
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail(f"attempt {attempt}: training never began:\n{''.join(tail)}")
        delay = rng.uniform(0, max_delay_s)
        try:
            code = proc.wait(timeout=delay)
            pytest.fail(
                f"attempt {attempt}: the run ended (exit {code}) before its kill at +{delay:.1f} s: "
                f"lengthen it\n{''.join(tail)}"
            )
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        delays.append(delay)
    return delays


def _check_run_directory(run: Path) -> list[dict]:
    """No temporary leftovers, every JSON readable, every safetensors file loads; the metric records."""
    from safetensors import safe_open

    leftovers = [str(p.relative_to(run)) for p in run.rglob(".*")]
    assert not leftovers, f"torn temporary files left behind: {leftovers}"
    for path in run.rglob("*.json"):
        json.loads(path.read_text())
    for path in run.rglob("*.safetensors"):
        with safe_open(str(path), "pt") as f:
            for key in f.keys():
                f.get_tensor(key)
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_a_robot_ppo_run_killed_ten_times_at_random_moments_resumes_to_the_same_end(smoke_base, tmp_path):
    base = smoke_base / "base-smoke" / "policy"
    before = _digest(base)
    cmd = [
        sys.executable,
        "-m",
        "vla_razor.cli",
        "finetune",
        "--algo",
        "ppo",
        "--smoke",
        "--resume",
        f"runs_dir={tmp_path}",
        f"base={base}",
        "name=killed",
        "total_env_steps=1600",
        "eval_every=3",
    ]
    started = time.monotonic()
    delays = kill_repeatedly(cmd, "ppo PickCube", kills=10, max_delay_s=6.0, seed=0)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    run = tmp_path / "killed"
    records = _check_run_directory(run)
    iterations = [r["step"] for r in records if "kl/forward" in r]
    assert iterations == list(range(1, len(iterations) + 1)), iterations  # each iteration logged exactly once
    # An iteration is 2 envs x 4 chunks of 8 actions, fewer env steps when episodes end early: about 25 of
    # them.
    last = [r for r in records if "kl/forward" in r][-1]
    assert 20 <= len(iterations) <= 30 and last["env_steps"] >= 1600 and last["env_steps"] - 64 < 1600
    final = json.loads((run / "eval" / "final.json").read_text())
    assert final["meta"]["iteration"] == len(iterations) and set(final["tasks"]) == {"PickCube", "PushCube"}
    assert (run / "videos" / "final_PickCube.mp4").stat().st_size > 0
    periodic = sorted(p.name for p in (run / "eval").glob("iter_*.json"))
    assert periodic == [f"iter_{i:06d}.json" for i in range(3, len(iterations), 3)]
    assert _digest(base) == before  # the base's files are untouched
    print(
        f"10 kills at +{', '.join(f'{d:.1f}' for d in delays)} s after training began; "
        f"{time.monotonic() - started:.0f} s in all"
    )


ITERATIONS = 1500  # the smoke LM runs 20-25 iterations/s here: long enough that every kill lands in training


def test_an_llm_grpo_run_killed_ten_times_at_random_moments_resumes_to_the_same_end(tmp_path):
    from vla_razor.cli import main

    assert main(["llm", "pretrain", "--smoke", f"runs_dir={tmp_path}"]) == 0
    base = tmp_path / "llm-base-smoke" / "policy"
    before = _digest(base)
    cmd = [
        sys.executable,
        "-m",
        "vla_razor.cli",
        "llm",
        "finetune",
        "--algo",
        "grpo",
        "--smoke",
        "--resume",
        f"runs_dir={tmp_path}",
        f"base={base}",
        "name=killed",
        f"iterations={ITERATIONS}",
        "eval_every=50",
        "checkpoint_every=5",
    ]
    kill_repeatedly(cmd, "llm grpo", kills=10, max_delay_s=3.0, seed=1)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    run = tmp_path / "killed"
    records = _check_run_directory(run)
    iterations = [r["step"] for r in records if "kl/forward" in r]
    assert iterations == list(range(1, ITERATIONS + 1)), iterations
    final = json.loads((run / "eval" / "final.json").read_text())
    assert final["meta"]["iteration"] == ITERATIONS
    assert sorted(p.name for p in (run / "eval").glob("iter_*.json")) == [
        f"iter_{i:06d}.json" for i in range(50, ITERATIONS, 50)
    ]
    assert _digest(base) == before
