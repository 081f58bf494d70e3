"""The main job end to end on its --smoke size, through the real CLI: demos, base, sweep, report,
and the report opened in headless Chromium; the ManiSkill config and the default (Meta-World) one."""

import json
import os
import shutil
import subprocess
import sys

import imageio.v2 as imageio
import pytest
from conftest import clone_like

from vla_razor.cli import main
from vla_razor.rundir import RunDir

pytestmark = pytest.mark.slow  # end-to-end: the main job through the CLI


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """``vla-razor quickstart --config configs/quickstart_maniskill.yaml --smoke`` as a user runs it: in a
    fresh clone-like copy of this checkout, with its defaults (runs under the copy's ``runs/``), the copy's
    code first on the path."""
    clone = clone_like(tmp_path_factory.mktemp("clone"))
    command = [sys.executable, "-m", "vla_razor.cli", "quickstart", "--smoke"]
    command += ["--config", "configs/quickstart_maniskill.yaml"]
    env = {**os.environ, "PYTHONPATH": str(clone)}

    def run():
        done = subprocess.run(command, cwd=clone, env=env, capture_output=True, text=True, timeout=1800)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    run()
    return clone / "runs" / "quickstart-smoke", run


def test_the_main_job_changes_no_tracked_file(smoke_run):
    run_path, _ = smoke_run
    clone = run_path.parent.parent
    status = subprocess.run(["git", "status", "--porcelain"], cwd=clone, capture_output=True, text=True)
    assert status.returncode == 0 and status.stdout == "", status.stdout
    assert (run_path / "summary.md").is_file()  # it did run, in the copy


def test_quickstart_smoke_writes_a_complete_run_directory(smoke_run):
    run_path, _ = smoke_run
    summary = (run_path / "summary.md").read_text()
    assert "| PushCube | prior |" in summary and "| PickCube | new |" in summary
    rows = json.loads((run_path / "eval" / "demos.json").read_text())
    assert [r["task"] for r in rows] == ["PushCube", "PickCube"]
    for row in rows:
        assert row["demos"] == 2 and 0 < row["expert_success_rate"] <= 1
        # the demonstrations reproduce when replayed in our own environment
        assert row["replay_success"] == 1.0
        frames = imageio.get_reader(run_path / row["video"]).count_frames()
        replay = json.loads((run_path / "eval" / f"{row['task']}_replay.json").read_text())
        assert frames == max(replay["lengths"]) + 1
    records = RunDir(run_path).read_metrics()
    assert {"demos/PickCube/kept", "demos/PushCube/replay_success"} <= set().union(*records)
    assert "suite: smoke" in (run_path / "config.yaml").read_text()


def test_quickstart_smoke_pretrains_sweeps_and_reports(smoke_run):
    run_path, _ = smoke_run
    root = run_path.parent
    assert (root / "quickstart-smoke-base" / "policy" / "model.safetensors").is_file()
    sweep = root / "quickstart-smoke-razor"
    plan = json.loads((sweep / "plan.json").read_text())
    assert sorted(r["method"] for r in plan["runs"]) == ["rl", "rl", "sft", "sft"]
    analysis = json.loads((sweep / "report" / "analysis.json").read_text())
    assert analysis["runs"]["rl"] == 2 and analysis["runs"]["sft"] == 2
    points = json.loads((sweep / "report" / "points.json").read_text())
    tuned = [p for p in points if p["method"] in ("rl", "sft")]
    # every run contributes its periodic evaluation and its final one, each with every predictor
    assert len(tuned) == 2 * 4
    for p in tuned:
        assert p["kl/forward"] >= 0 and p["kl/reverse"] >= 0 and 0 <= p["weights/update_density"] <= 1
        assert (
            p["kl/forward/PushCube"] >= 0 and p["kl/reverse/PushCube"] >= 0
        )  # on the prior task's own states
    assert analysis["base"]["new_task_success"] >= 0 and analysis["base_policy"].endswith("policy")
    # a smoke SFT step at lr 1e-3 moves the policy; the KL measured at the end says so
    assert max(p["kl/forward"] for p in tuned if p["method"] == "sft") > 1e-4
    summary = (run_path / "summary.md").read_text()
    assert "RL's Razor report" in summary and "Pareto frontier" in summary and "report.html" in summary
    # links are relative to the summary, so the runs can be copied or shared: each one resolves
    import re

    assert str(root) not in summary and str(root.resolve()) not in summary
    links = re.findall(r"\]\(([^)]+)\)", summary)
    assert any(link.endswith("pareto.png") for link in links) and any(
        link.endswith("report.html") for link in links
    )
    for link in links:
        assert (run_path / link).is_file(), link
    timings = json.loads((run_path / "eval" / "timings.json").read_text())
    assert set(timings) == {"demos", "base", "sweep", "report"} and all(t >= 0 for t in timings.values())
    assert "| stage | wall time (min) |" in summary
    assert {"base", "best", "matched"} <= set(analysis)


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    assert path, "headless Chromium is missing: scripts/setup.sh installs Debian's chromium package"
    return path


_PROBE = """<script>
window.addEventListener('load', () => setTimeout(() => {
  const imgs = [...document.querySelectorAll('img')], vids = [...document.querySelectorAll('video')];
  document.body.setAttribute('data-images', imgs.length);
  document.body.setAttribute('data-images-decoded', imgs.filter(i => i.naturalWidth > 0).length);
  document.body.setAttribute('data-videos', vids.length);
  document.body.setAttribute('data-videos-decoded', \
vids.filter(v => v.readyState >= 1 && v.videoWidth > 0).length);
}, 1000));
</script>"""


def test_report_opens_in_headless_chromium_with_its_plots_and_videos(smoke_run, tmp_path):
    import re

    run_path, _ = smoke_run
    report = run_path.parent / "quickstart-smoke-razor" / "report" / "report.html"
    probe = tmp_path / "probe.html"
    probe.write_text(report.read_text() + _PROBE)
    flags = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
    dom = subprocess.run(
        flags + ["--virtual-time-budget=5000", "--dump-dom", probe.as_uri()],
        capture_output=True,
        text=True,
        timeout=180,
    ).stdout
    body = dict(re.findall(r'data-([a-z-]+)="(\d+)"', re.search(r"<body[^>]*>", dom).group(0)))
    # the five figures (with the per-prior-task panel) decode, and the videos of the base and the best RL and
    # SFT runs (2 tasks each) load
    assert body["images"] == body["images-decoded"] == "5"
    assert body["videos"] == body["videos-decoded"] == "6"
    assert "<li>" in dom and "<p>- " not in dom  # the findings are a list, not paragraphs starting with "- "
    shot = tmp_path / "report.png"
    subprocess.run(
        flags + ["--window-size=1200,2400", f"--screenshot={shot}", report.as_uri()],
        capture_output=True,
        timeout=180,
        check=True,
    )
    pixels = imageio.imread(shot)
    assert pixels.shape[:2] == (2400, 1200) and pixels.std() > 10  # a rendered page, not a blank one
    shutil.copy(shot, run_path / "report_screenshot.png")


def test_quickstart_rerun_reuses_every_stage(smoke_run):
    run_path, run = smoke_run
    video = next((run_path / "videos").glob("*.mp4"))
    base = run_path.parent / "quickstart-smoke-base" / "policy" / "model.safetensors"
    final = next((run_path.parent / "quickstart-smoke-razor" / "runs").glob("*/eval/final.json"))
    before = [p.stat().st_mtime_ns for p in (video, base, final)]
    run()
    assert [p.stat().st_mtime_ns for p in (video, base, final)] == before


def test_quickstart_config_errors_name_the_key(capsys):
    assert main(["quickstart", "demos_per_tsk=3"]) == 2
    err = capsys.readouterr().err
    assert "unknown key 'demos_per_tsk'" in err and "did you mean 'demos_per_task'" in err


def test_the_default_main_job_runs_on_meta_world(tmp_path_factory):
    """``vla-razor quickstart --smoke`` with the default config stays in Meta-World: scripted demos of its
    two smoke tasks, a base, two PPO and two SFT runs, the report, no video, no tracked file changed."""
    clone = clone_like(tmp_path_factory.mktemp("clone"))
    env = {**os.environ, "PYTHONPATH": str(clone)}
    done = subprocess.run(
        [sys.executable, "-m", "vla_razor.cli", "quickstart", "--smoke"],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    run_path = clone / "runs" / "quickstart-smoke"
    rows = json.loads((run_path / "eval" / "demos.json").read_text())
    assert [(r["task"], r["role"]) for r in rows] == [("window-open-v3", "prior"), ("window-close-v3", "new")]
    assert all(r["demos"] == 2 and r["video"] is None for r in rows)
    assert "suite: metaworld-smoke" in (run_path / "config.yaml").read_text()
    sweep = clone / "runs" / "quickstart-smoke-razor"
    plan = json.loads((sweep / "plan.json").read_text())
    assert sorted(r["method"] for r in plan["runs"]) == ["rl", "rl", "sft", "sft"]
    points = json.loads((sweep / "report" / "points.json").read_text())
    assert {p["method"] for p in points} >= {"rl", "sft"}
    assert all(p["kl/forward"] >= 0 for p in points if p["method"] in ("rl", "sft"))
    assert not list(run_path.rglob("*.mp4")) and not list(sweep.rglob("*.mp4"))
    summary = (run_path / "summary.md").read_text()
    assert "suite `metaworld-smoke`" in summary and "RL's Razor report" in summary
    status = subprocess.run(["git", "status", "--porcelain"], cwd=clone, capture_output=True, text=True)
    assert status.returncode == 0 and status.stdout == "", status.stdout


SHIPPED = [
    # (main-job config, shipped directory, suite, new-task success band)
    ("configs/quickstart_maniskill.yaml", "quickstart-base", "default", (0.2, 0.6)),
    ("configs/quickstart.yaml", "metaworld-base", "metaworld", (0.4, 0.8)),
]


@pytest.mark.parametrize("config, ship, suite, band", SHIPPED, ids=[s[1] for s in SHIPPED])
def test_shipped_base_checkpoint_loads_and_matches_its_success_table(config, ship, suite, band):
    """A base a main job ships: its format, its provenance and the band its success table claims."""
    import math
    from pathlib import Path

    import torch
    import yaml

    from vla_razor.policies import ChainPolicy

    root = Path(__file__).resolve().parents[1]
    ship = root / "checkpoints" / ship
    quickstart = yaml.safe_load((root / config).read_text())
    assert (root / quickstart["base"]) == ship / "policy" and quickstart["retrain_base"] is False
    assert quickstart["suite"] == suite
    policy = ChainPolicy.from_pretrained(ship / "policy")
    assert policy.family == "flow" and policy.config.chunk_size == 8 and policy.config.num_steps == 5
    assert policy.config.world == ("metaworld" if suite == "metaworld" else "maniskill")
    assert all(torch.isfinite(t).all() for t in policy.state_dict().values())
    # --retrain-base reproduces it: the quickstart's pretrain overrides are the shipped run's settings
    shipped = yaml.safe_load((ship / "config.yaml").read_text())
    assert {k: shipped[k] for k in quickstart["pretrain"]} == quickstart["pretrain"]
    table = json.loads((ship / "success.json").read_text())
    assert table["suite"] == shipped["suite"] == suite and table["episodes_per_task"] == 50
    rates = {t: v["successes"] / v["episodes"] for t, v in table["tasks"].items()}
    priors = [rates[t] for t, v in table["tasks"].items() if v["role"] == "prior"]
    new = [rates[t] for t, v in table["tasks"].items() if v["role"] == "new"]
    assert sum(priors) / len(priors) >= 0.5 and len(new) == 1 and band[0] <= new[0] <= band[1]
    assert not math.isnan(sum(rates.values()))
