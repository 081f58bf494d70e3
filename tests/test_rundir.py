"""The run directory: layout, metrics, atomic checkpoints, resume and corrupt-file errors."""
import json
import os
from dataclasses import dataclass

import pytest
import torch

from vla_razor.config import load_config
from vla_razor.rundir import CheckpointError, RunDir, atomic_write


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
    with pytest.raises(FileExistsError, match="--resume"):
        RunDir.create(tmp_path, "exp", Cfg())
    assert RunDir.create(tmp_path, "exp", Cfg(), resume=True).path == tmp_path / "exp"
    with pytest.raises(ValueError, match="differs from the config of this command in lr;"):
        RunDir.create(tmp_path, "exp", Cfg(lr=0.2), resume=True)
    # how a run executes may change on resume (a sweep with more workers gives each run other threads)
    RunDir.create(tmp_path, "exp", Cfg(threads=4), resume=True)
    assert "threads: 0" in (tmp_path / "exp" / "config.yaml").read_text()  # the saved config is kept


def test_checkpoint_round_trip_with_optimizer_and_rng(tmp_path):
    run = RunDir.create(tmp_path, "exp")
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "rng": torch.get_rng_state(),
             "counters": {"env_steps": 123, "best": float("inf")}, "shape": (1, 2)}
    path = run.save_checkpoint(7, state)
    assert path.name == "step_00000007" and run.latest_checkpoint() == path
    step, loaded = RunDir.load_checkpoint(path)
    assert step == 7 and loaded["counters"] == {"env_steps": 123, "best": float("inf")} and loaded["shape"] == (1, 2)
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
