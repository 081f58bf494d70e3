"""The generated results page and README headline: they are what the committed archives say, the claims'
verdicts follow their intervals, and the committed robot archive re-reports to the very same points."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import clone_like

from vla_razor.analysis.results_page import (
    TRACKS,
    claims,
    headline,
    not_shown,
    readme_headline,
    replace_headline,
    results_page,
)

ROOT = Path(__file__).resolve().parents[1]


def test_docs_results_md_is_the_page_the_archives_generate():
    page = results_page(ROOT / "docs" / "results")
    assert (ROOT / "docs" / "results.md").read_text() == page, (
        "docs/results.md differs from the archives: run `vla-razor results --out docs/results.md --readme "
        "README.md`"
    )


def test_the_readme_headline_numbers_are_the_archives():
    assert readme_headline((ROOT / "README.md").read_text()) == headline(ROOT / "docs" / "results"), (
        "README.md's headline block differs from the archives: run `vla-razor results --readme README.md`"
    )


def _row(target, rl, sft, interval=None, estimate=0.1, floor=None, needed=None, note="fewer than 3 runs"):
    boot = {"estimate": estimate, "interval": interval} if interval else {"estimate": estimate, "note": note}
    row = {"target": target, "runs": {"rl": rl, "sft": sft}, "at_floor": floor or {}, "sft_minus_rl": None}
    if rl and sft:
        row["sft_minus_rl"] = {"bootstrap": boot, "welch": {}}
    if needed:
        row["runs_needed"] = needed
    return row


def test_claims_follow_their_intervals_and_say_what_they_rest_on():
    analysis = {
        "commit": "abc123",
        "run_level": {
            "selection": ["same episodes", "validation"],
            "comparisons": [
                _row(0.5, 6, 9, [0.02, 0.2], floor={"sft": 4}),
                _row(0.65, 5, 5, [-0.05, 0.1], estimate=0.03, needed=40),
                _row(0.8, 2, 7),
                _row(0.9, 0, 3),
            ],
            "fits": {"kl/forward": {"runs": 11, "r2": 0.5, "interval": [0.2, 0.7]}},
            "rank_probabilities": {"kl/forward": [0.3, 0.7], "weights/update_density": [0.7, 0.3]},
        },
    }
    out = claims(TRACKS[0], analysis, [])
    assert [c["verdict"] for c in out[:4]] == [
        "shown",
        "not shown (the interval holds 0)",
        "no interval: RL has 2 runs (at least 3 per method)",
        "no comparison (an arm has no run there)",
    ]
    assert (
        out[0]["interval"] == "[+2.0, +20.0]" and out[0]["runs"] == "6 / 9" and out[0]["commit"] == "abc123"
    )
    assert out[0]["command"].endswith("--archive docs/results/razor-robot --report-only")
    assert out[4]["estimate"] == "P(rank 1) = 30%" and "update density" in out[4]["verdict"].lower()
    leads = {"run_level": {**analysis["run_level"], "rank_probabilities": {"kl/forward": [0.48, 0.5]}}}
    verdict = claims(TRACKS[0], leads, [])[4]["verdict"]
    assert verdict == "not shown: forward KL leads but is first in only 48% of resamples (bar: 95%)"
    sure = {"run_level": {**analysis["run_level"], "rank_probabilities": {"kl/forward": [0.96, 0.04]}}}
    assert claims(TRACKS[0], sure, [])[4]["verdict"] == "shown"
    welch = {"interval": [-0.1, 0.5]}
    wide = _row(0.5, 3, 3, [0.02, 0.2])
    wide["sft_minus_rl"]["welch"] = welch
    assert claims(TRACKS[0], {"run_level": {"comparisons": [wide]}}, [])[0]["verdict"] == (
        "not shown (the Welch interval holds 0)"
    )
    reversed_ = claims(TRACKS[0], {"run_level": {"comparisons": [_row(0.5, 3, 3, [-0.3, -0.1])]}}, [])
    assert reversed_[0]["verdict"] == "reversed" and reversed_[0]["commit"] == "not recorded"
    matched = analysis["run_level"]["comparisons"][0]
    matched["points"] = {"rl": [{"new_task_success": 0.45}] * 6, "sft": [{"new_task_success": 0.53}] * 9}
    assert claims(TRACKS[0], analysis, [])[0]["verdict"] == "shown"  # 8 points apart: matched
    apart = {
        "run_level": {
            "comparisons": [{**matched, "points": {**matched["points"], "rl": [{"new_task_success": 0.3}]}}]
        }
    }
    assert claims(TRACKS[0], apart, [])[0]["verdict"] == (
        "not matched: new-task success 30% (RL) vs 53% (SFT) on the scored episodes"
    )
    lines = " ".join(not_shown(TRACKS[0], analysis))
    assert "at 50%, the chosen checkpoints' new-task success averages 45% for RL and 53% for SFT" in lines
    assert "at 65%, the chosen" not in lines  # no points given: nothing said
    assert "chosen on the episodes that also score them" in lines
    mixed = {
        **_row(0.8, 5, 13, [0.02, 0.2]),
        "scored_episodes": {"rl": {"50": 3, "20": 2}, "sft": {"20": 13}},
    }
    assert (
        "at 80%, the chosen checkpoints' new-task success was scored on different episode counts, RL on 50 "
        "episodes (3 of 5), 20 episodes (2 of 5) and SFT on 20 episodes (13 of 13)"
    ) in " ".join(not_shown(TRACKS[0], {"run_level": {"comparisons": [mixed]}}))
    same = {**mixed, "scored_episodes": {"rl": {"50": 5}, "sft": {"50": 13}}}
    assert "episode counts" not in " ".join(not_shown(TRACKS[0], {"run_level": {"comparisons": [same]}}))
    counted = {
        **analysis["run_level"],
        "comparisons": [{**_row(0.5, 6, 9, [0.02, 0.2]), "same_episodes": {"rl": 6, "sft": 2}}],
    }
    assert not_shown(TRACKS[0], {"run_level": counted})[0].endswith(
        "near a target by chance: at 50% RL 6 of 6, SFT 2 of 9."
    )
    assert "at 80%, RL has 2 runs: no interval" in lines and "at 90%, RL has 0 runs" in lines
    assert "4 of 9 SFT checkpoints keep 0%" in lines and "about 40 runs per method" in lines
    assert "at 50%, a difference" not in lines  # shown: no power line


def test_the_headline_block_is_replaced_and_a_readme_without_one_is_refused(tmp_path):
    text = "intro\n<!-- results:headline:start -->\nold\n<!-- results:headline:end -->\noutro\n"
    block = "<!-- results:headline:start -->\nnew\n<!-- results:headline:end -->"
    assert replace_headline(text, block) == f"intro\n{block}\noutro\n"
    with pytest.raises(ValueError, match="no <!-- results:headline:start -->"):
        replace_headline("no markers", block)
    readme = tmp_path / "README.md"
    readme.write_text("no markers\n")
    cmd = [sys.executable, "-m", "vla_razor.cli", "results", "--root", str(ROOT / "docs" / "results")]
    done = subprocess.run(cmd + ["--readme", str(readme)], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 2 and "no <!-- results:headline:start -->" in done.stderr
    missing = subprocess.run(cmd[:-1] + [str(tmp_path / "nowhere")], capture_output=True, text=True)
    assert missing.returncode == 2 and "no archives at" in missing.stderr


@pytest.mark.slow
@pytest.mark.parametrize(
    "config, archive, report",
    [
        ("configs/razor.yaml", "razor-robot", "razor"),
        ("configs/razor_llm_zeropad.yaml", "razor-llm", "razor-llm-zeropad"),
    ],
)
def test_a_committed_archive_re_reports_to_its_committed_points(tmp_path, config, archive, report):
    """``razor --report-only --archive docs/results/<archive>`` in a scratch clone: the very points.json
    that is committed (the base's evaluation is archived with the runs), and no tracked file changes. The
    sweep runs where a user's would, in the clone's own runs/ (git-ignored): the plan records that
    directory. The LLM track's base is not shipped: its archive re-reports without the base's weights."""
    clone = clone_like(tmp_path / "clone")
    cmd = [
        sys.executable,
        "-m",
        "vla_razor.cli",
        "razor",
        "--config",
        config,
        "--report-only",
        "--archive",
        f"docs/results/{archive}",
        "report_videos=false",
    ]
    env = {**os.environ, "PYTHONPATH": str(clone)}
    done = subprocess.run(cmd, cwd=clone, capture_output=True, text=True, timeout=1800, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    ours = json.loads((clone / "runs" / report / "report" / "points.json").read_text())
    committed = json.loads((ROOT / "docs" / "results" / archive / "points.json").read_text())
    assert ours == committed
    status = subprocess.run(
        ["git", "status", "--porcelain"], cwd=clone, capture_output=True, text=True
    ).stdout
    assert status == "", status
