"""The real (not --smoke) plan of every shipped sweep config: its runs, their budgets and that nothing comes
from another config; a finished or restored run made with another config is refused."""

import itertools
import shutil
from pathlib import Path

import pytest

from vla_razor.analysis.plan import RazorConfig, plan_runs
from vla_razor.analysis.runner import check_run_configs, run_config
from vla_razor.config import dump_yaml, load_config, read_yaml
from vla_razor.errors import RunDirError
from vla_razor.quickstart import QuickstartConfig, razor_config

SWEEPS = [
    "configs/razor.yaml",
    "configs/razor_llm.yaml",
    "configs/razor_llm_zeropad.yaml",
    "configs/razor_lerobot.yaml",
]


def _points(grid: dict) -> list[dict]:
    return [dict(zip(grid, values)) for values in itertools.product(*grid.values())]


def _expected_runs(raw: dict) -> list[tuple[str, dict]]:
    """(method, swept values with the seed) of every run a sweep file asks for, worked out from the file
    alone."""
    seeds = raw["seeds"]
    rl_seeds = raw.get("rl_seeds") or seeds
    out = [("rl", {**p, "seed": s}) for p in _points(raw.get("rl_grid", {})) for s in rl_seeds]
    out += [("sft", {**p, "seed": s}) for p in _points(raw.get("sft_grid", {})) for s in seeds]
    for grid in raw.get("rl_extra_grids", []):
        grid_seeds = grid.get("seed") or raw.get("rl_extra_seeds") or seeds
        points = _points({k: v for k, v in grid.items() if k != "seed"})
        out += [("rl", {**p, "seed": s}) for p in points for s in grid_seeds]
    for grid in raw.get("sft_extra_grids", []):
        points = _points({k: v for k, v in grid.items() if k != "seed"})
        out += [("sft", {**p, "seed": s}) for p in points for s in grid.get("seed") or seeds]
    return out


def _check_plan(cfg: RazorConfig, raw: dict) -> list:
    """The plan of ``cfg`` is exactly the runs ``raw`` (its file) asks for, each configured as the file
    says."""
    specs = plan_runs(cfg)
    expected = _expected_runs(raw)

    def key(method, values):
        return repr((method, sorted(values.items())))

    assert sorted(key(s.method, s.grid) for s in specs) == sorted(key(*e) for e in expected)
    for spec in specs:
        run = run_config(spec)
        method_overrides = raw.get("rl" if spec.method == "rl" else "sft", {})
        for key, value in {**raw.get("common", {}), **method_overrides, **spec.grid}.items():
            node = run
            for part in key.split("."):
                node = getattr(node, part)
            assert node == value, (spec.name, key)
        assert run.base == cfg.base and Path(run.runs_dir) == cfg.run_root
    return specs


@pytest.mark.parametrize("path", SWEEPS)
def test_every_shipped_sweep_plans_exactly_what_its_file_says(path):
    raw = read_yaml(Path(path).read_text())
    assert "archive" not in raw  # an archive is named on the command line only (razor --archive DIR)
    _check_plan(load_config(RazorConfig, path), raw)


def test_the_maniskill_quickstart_plans_its_own_four_runs_and_nothing_else():
    config = load_config(QuickstartConfig, "configs/quickstart_maniskill.yaml")
    cfg = razor_config(config, Path(config.base), smoke=False)
    raw = read_yaml(Path("configs/quickstart_maniskill.yaml").read_text())["razor"]
    specs = _check_plan(cfg, raw)
    assert [s.name for s in specs] == [
        "ppo-lr3e-05-seed0",
        "sft-iterations4-lr3e-05-seed0",
        "sft-iterations8-lr3e-05-seed0",
        "sft-iterations40-lr3e-05-seed0",
    ]
    assert cfg.path == Path("runs/quickstart-razor") and not cfg.control_grid and not cfg.rl_extra_grids
    assert cfg.suite == "default" and config.base == "checkpoints/quickstart-base/policy"
    ppo = run_config(specs[0])
    assert ppo.total_env_steps == 196608 and ppo.rollout_workers == 1 and ppo.eval_episodes == 20
    assert cfg.workers == 2 and cfg.targets == [0.5]
    assert [run_config(s).iterations for s in specs[1:]] == [4, 8, 40]


def test_the_default_quickstart_plans_three_runs_a_method_on_meta_world():
    """The main job's default: three seeds of PPO and of SFT on the metaworld suite, every evaluation with
    validation episodes (the report picks checkpoints on them), one target above the base."""
    config = load_config(QuickstartConfig, "configs/quickstart.yaml")
    cfg = razor_config(config, Path(config.base), smoke=False)
    raw = read_yaml(Path("configs/quickstart.yaml").read_text())["razor"]
    specs = _check_plan(cfg, raw)
    assert [s.name for s in specs] == [
        name for i in range(3) for name in (f"ppo-lr1e-05-seed{i}", f"sft-lr3e-06-seed{i}")
    ]
    assert cfg.suite == "metaworld" and config.base == "checkpoints/metaworld-base/policy"
    assert cfg.path == Path("runs/quickstart-razor") and not cfg.control_grid and not cfg.rl_extra_grids
    configs = [run_config(s) for s in specs]
    assert all(c.validation_episodes == 20 and c.video_episodes == 0 for c in configs)
    assert [c.seed for c in configs] == [0, 0, 1, 1, 2, 2]
    assert configs[0].total_env_steps == 65536 and configs[0].rollout_workers == 0
    assert cfg.workers == 1 and cfg.targets == [0.6] and not cfg.report_videos


def test_the_quickstart_reads_no_other_sweep_config(tmp_path, monkeypatch):
    """A configs/razor.yaml with extra grids, seeds and a control, beside the quickstart's file, changes
    nothing."""
    shutil.copytree("configs", tmp_path / "configs")
    monkeypatch.chdir(tmp_path)
    config = load_config(QuickstartConfig, "configs/quickstart.yaml")
    before = [s.as_dict() for s in plan_runs(razor_config(config, Path(config.base), smoke=False))]
    (tmp_path / "configs" / "razor.yaml").write_text(
        "rl_grid: {lr: [1.0e-4]}\nrl_extra_grids: [{lr: [3.0e-5]}]\nrl_seeds: [0, 1, 2]\nseeds: [0, 1]\n"
        "control_grid: {seed: [0]}\n"
    )
    after = razor_config(config, Path(config.base), smoke=False)
    assert [s.as_dict() for s in plan_runs(after)] == before and not after.control_grid


def test_a_run_made_with_another_config_is_refused_with_the_keys_that_differ(tmp_path):
    cfg = RazorConfig(
        base="runs/b/policy", runs_dir=str(tmp_path), rl_grid={"lr": [1e-5]}, rl={"total_env_steps": 4096}
    )
    spec = plan_runs(cfg)[0]
    saved = cfg.run_root / spec.name / "config.yaml"
    saved.parent.mkdir(parents=True)
    saved.write_text(dump_yaml(run_config(spec)))
    check_run_configs(cfg, [spec])  # the same run: reused
    # the same run restored under another runs_dir (an archive) is still the same run
    moved = read_yaml(saved.read_text())
    moved["runs_dir"] = "elsewhere/runs"
    saved.write_text(dump_yaml(moved))
    check_run_configs(cfg, [spec])
    other = RazorConfig(**{**cfg.__dict__, "rl": {"total_env_steps": 8192}})
    with pytest.raises(RunDirError, match=r"ppo-lr1e-05-seed0 \(total_env_steps: 4096 -> 8192\)"):
        check_run_configs(other, plan_runs(other))
    nested = RazorConfig(**{**cfg.__dict__, "common": {"kl_penalty.kind": "adaptive"}})
    with pytest.raises(RunDirError, match=r"kl_penalty.kind: 'none' -> 'adaptive'"):
        check_run_configs(nested, plan_runs(nested))


def test_a_report_of_nothing_is_refused_and_writes_nowhere(tmp_path, capsys):
    """razor.yaml names no archive: a report-only pass over an empty run directory says there is nothing to
    report (exit 2) and writes neither the committed archive nor the run directory's report."""
    import subprocess

    from vla_razor.cli import main

    def archive_state():
        files = sorted(Path("docs/results").rglob("*"))
        return [(f, f.stat().st_mtime_ns) for f in files if f.is_file()]

    before = archive_state()
    assert main(["razor", "--report-only", "name=empty", f"runs_dir={tmp_path}"]) == 2
    err = capsys.readouterr().err
    assert "nothing to report" in err and "--archive DIR" in err and err.count("\n") == 1
    assert archive_state() == before and not (tmp_path / "empty" / "report").exists()
    status = subprocess.run(["git", "status", "--porcelain", "docs/results"], capture_output=True, text=True)
    assert status.stdout == ""


def test_the_committed_archive_is_the_run_its_plan_describes(tmp_path):
    """The full sweep's archived runs were made before some config fields existed (device, sim_backend): a
    field a saved config lacks ran as its default, so each restores as the run the plan gives it; a field
    the plan sets away from its default still counts."""
    cfg = load_config(RazorConfig, "configs/razor.yaml", [f"runs_dir={tmp_path}"])
    shutil.copytree("docs/results/razor-robot/runs", cfg.run_root)
    specs = plan_runs(cfg)
    assert sum((cfg.run_root / s.name / "config.yaml").is_file() for s in specs) >= 30
    check_run_configs(cfg, specs)
    saved = cfg.run_root / specs[0].name / "config.yaml"
    text = "\n".join(
        line for line in saved.read_text().splitlines() if not line.startswith("total_env_steps:")
    )
    saved.write_text(text + "\n")
    with pytest.raises(RunDirError, match=r"total_env_steps: 300000 -> 196608"):
        check_run_configs(cfg, specs)
