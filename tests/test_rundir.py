"""The run directory: layout, metrics, atomic checkpoints, resume and corrupt-file errors."""

import json
import os
from dataclasses import dataclass

import pytest
import torch

from vla_razor.atomic import atomic_write
from vla_razor.config import load_config
from vla_razor.errors import RunDirError
from vla_razor.rundir import CheckpointError, RunDir


@dataclass
class Cfg:
    lr: float = 0.1
    threads: int = 0


def test_layout_config_and_metrics(tmp_path):
    run = RunDir.create(tmp_path, "exp", Cfg(lr=0.5))
    for sub in ("checkpoints", "videos", "eval"):
        assert (run.path / sub).is_dir()
    assert load_config(Cfg, run.config_path) == Cfg(lr=0.5)
    run.log(1, {"kl/forward": torch.tensor(0.25), "success/new_task": 0.5})
    run.log(2, {"kl/forward": 0.3})
    run.close()
    records = run.read_metrics()
    assert [r["step"] for r in records] == [1, 2]
    assert records[0]["kl/forward"] == 0.25 and records[0]["success/new_task"] == 0.5
    events = list((run.path / "tb").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run.path / "tb"))
    acc.Reload()
    assert [e.value for e in acc.Scalars("kl/forward")] == pytest.approx([0.25, 0.3])


def test_existing_run_needs_resume_and_same_config(tmp_path):
    RunDir.create(tmp_path, "exp", Cfg())
    (tmp_path / "exp" / "metrics.jsonl").write_text("")
    with pytest.raises(RunDirError, match="--resume"):
        RunDir.create(tmp_path, "exp", Cfg())
    assert RunDir.create(tmp_path, "exp", Cfg(), resume=True).path == tmp_path / "exp"
    with pytest.raises(
        RunDirError, match=r"differs from the config of this command in lr: 0.1 -> 0.2 \(saved"
    ):
        RunDir.create(tmp_path, "exp", Cfg(lr=0.2), resume=True)
    # how a run executes may change on resume (a sweep with more workers gives each run other threads)
    RunDir.create(tmp_path, "exp", Cfg(threads=4), resume=True)
    assert "threads: 0" in (tmp_path / "exp" / "config.yaml").read_text()  # the saved config is kept
    # a run saved before rollout workers became Ray actors only (its config names the retired backend)
    saved = tmp_path / "exp" / "config.yaml"
    saved.write_text(saved.read_text() + "rollout_backend: process\n")
    RunDir.create(tmp_path, "exp", Cfg(), resume=True)
    saved.write_text(saved.read_text() + "seed_extra: 1\n")  # any other key the command lacks still counts
    with pytest.raises(RunDirError, match=r"in seed_extra: 1 -> '\(absent\)' \(saved"):
        RunDir.create(tmp_path, "exp", Cfg(), resume=True)


def test_checkpoint_round_trip_with_optimizer_and_rng(tmp_path):
    run = RunDir.create(tmp_path, "exp")
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    state = {
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "rng": torch.get_rng_state(),
        "counters": {"env_steps": 123, "best": float("inf")},
        "shape": (1, 2),
    }
    path = run.save_checkpoint(7, state)
    assert path.name == "step_00000007" and run.latest_checkpoint() == path
    step, loaded = RunDir.load_checkpoint(path)
    assert (
        step == 7
        and loaded["counters"] == {"env_steps": 123, "best": float("inf")}
        and loaded["shape"] == (1, 2)
    )
    assert torch.equal(loaded["rng"], state["rng"])
    model2 = torch.nn.Linear(3, 2)
    model2.load_state_dict(loaded["model"])
    opt2 = torch.optim.Adam(model2.parameters(), lr=0.01)
    opt2.load_state_dict(loaded["optimizer"])
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), model2.parameters()))
    assert torch.equal(opt2.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])


def test_keep_last_and_latest(tmp_path):
    run = RunDir.create(tmp_path, "exp")
    for step in range(5):
        run.save_checkpoint(step, {"x": torch.tensor([step])}, keep_last=2)
    assert [p.name for p in run.list_checkpoints()] == ["step_00000003", "step_00000004"]
    assert RunDir.load_checkpoint(run.latest_checkpoint())[1]["x"].item() == 4


def test_corrupt_and_incomplete_checkpoints_are_named(tmp_path):
    run = RunDir.create(tmp_path, "exp")
    path = run.save_checkpoint(1, {"x": torch.ones(10)})
    (path / "tensors.safetensors").write_bytes(b"garbage")
    with pytest.raises(
        CheckpointError, match=r"step_00000001 is damaged: tensors.safetensors does not match the digest"
    ):
        RunDir.load_checkpoint(path)
    (path / "state.json").write_text('{"step": 1, "sta')  # torn JSON
    with pytest.raises(CheckpointError, match=r"step_00000001 is corrupt.*delete it"):
        RunDir.load_checkpoint(path)
    (path / "state.json").unlink()
    with pytest.raises(CheckpointError, match="state.json is missing"):
        RunDir.load_checkpoint(path)


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "result.json"
    target.write_text('{"ok": 1}')
    with pytest.raises(RuntimeError):
        with atomic_write(target) as f:
            f.write('{"half')
            raise RuntimeError("killed mid-write")
    assert json.loads(target.read_text()) == {"ok": 1}
    assert os.listdir(tmp_path) == ["result.json"]  # no temp file left behind


def test_truncate_metrics_for_resume_and_torn_lines(tmp_path):
    run = RunDir.create(tmp_path, "exp")
    run.metrics_path.write_text('{"step": 1}\n{"step": 2}\n{"step": 3}\n{"step": 4, "x"')
    assert [r["step"] for r in run.read_metrics()] == [1, 2, 3]
    run.truncate_metrics(after_step=2)
    assert [r["step"] for r in run.read_metrics()] == [1, 2]


def test_atomic_files_get_ordinary_permissions(tmp_path):
    target = tmp_path / "x.json"
    with atomic_write(target) as f:
        f.write("{}")
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask


@pytest.mark.parametrize("damage", ["truncated", "flipped", "torn_state"])
def test_a_damaged_newest_checkpoint_falls_back_to_the_previous_one(tmp_path, capfd, damage):
    run = RunDir.create(tmp_path, "exp")
    run.save_checkpoint(1, {"x": torch.ones(1000), "step": 1})
    newest = run.save_checkpoint(2, {"x": torch.full((1000,), 2.0), "step": 2})
    tensors = newest / "tensors.safetensors"
    data = tensors.read_bytes()
    if damage == "truncated":
        tensors.write_bytes(data[: len(data) // 2])
    elif damage == "flipped":  # one flipped bit in the payload: the digest notices what the format cannot
        tensors.write_bytes(data[:-8] + bytes([data[-8] ^ 1]) + data[-7:])
    else:
        (newest / "state.json").write_text('{"step": 2, "state": {"__dict__": [["x", {"__ten')
    path, step, state = run.load_latest_checkpoint()
    assert path.name == "step_00000001" and step == 1 and torch.equal(state["x"], torch.ones(1000))
    err = capfd.readouterr().err
    assert "skipping a damaged checkpoint" in err and "step_00000002" in err
    assert newest.exists()  # kept for inspection, never deleted
    (run.checkpoints / "step_00000001" / "tensors.safetensors").write_bytes(b"")
    with pytest.raises(CheckpointError, match="every checkpoint of .* is damaged"):
        run.load_latest_checkpoint()
    assert RunDir.create(tmp_path, "fresh").load_latest_checkpoint() is None


_KILL_INSIDE_WRITE = """
import os, signal, sys, torch
from vla_razor import rundir
from vla_razor.rundir import RunDir
run = RunDir.create(sys.argv[1], "exp", resume=True)
run.save_checkpoint(1, {"x": torch.ones(3)})
where = sys.argv[2]
real_write_json, real_fsync = rundir.write_json, rundir.fsync
def kill(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)
if where == "tensors_written":      # tensors on disk, state.json not yet
    rundir.write_json = kill
elif where == "before_rename":      # the whole temp directory written, not yet renamed into place
    rundir.fsync = lambda path: kill() if path == run.checkpoints else real_fsync(path)
    real_replace = os.replace
    os.replace = lambda a, b: kill() if str(b).endswith("step_00000002") else real_replace(a, b)
elif where == "before_latest":      # renamed into place, LATEST still names step 1
    real_atomic_write = rundir.atomic_write
    rundir.atomic_write = lambda path, *a, **k: kill() if str(path).endswith("LATEST") \
else real_atomic_write(path, *a, **k)
run.save_checkpoint(2, {"x": torch.full((3,), 2.0)})
"""


@pytest.mark.slow
@pytest.mark.parametrize("where", ["tensors_written", "before_rename", "before_latest"])
def test_a_kill_inside_the_checkpoint_write_leaves_a_loadable_checkpoint(tmp_path, where):
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", _KILL_INSIDE_WRITE, str(tmp_path), where], capture_output=True, text=True
    )
    assert done.returncode == -9, done.stderr  # really killed inside the write
    run = RunDir(tmp_path / "exp")
    path, step, state = run.load_latest_checkpoint()
    expected = 2 if where == "before_latest" else 1  # a complete step 2 is found even before LATEST names it
    assert step == expected and torch.equal(state["x"], torch.full((3,), float(expected)))
    assert [p.name for p in run.list_checkpoints()] == ["step_00000001"] + (
        ["step_00000002"] if expected == 2 else []
    )
    # The leftover temp directory is never mistaken for a checkpoint, and the next save succeeds.
    run.save_checkpoint(3, {"x": torch.zeros(3)})
    assert run.load_latest_checkpoint()[1] == 3
