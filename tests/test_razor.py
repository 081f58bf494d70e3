"""The razor analysis: predictors against closed forms, the sweep's plan, the fits of the report, the HTML
page."""

import copy
import json
import shutil

import numpy as np
import pytest
import torch

from vla_razor.algorithms import load_algorithm
from vla_razor.analysis.numbers import analyse, findings
from vla_razor.analysis.plan import SMOKE, RazorConfig, plan_control, plan_runs
from vla_razor.analysis.predictors import (
    PREDICTORS,
    feature_change,
    linear_cka,
    measure_predictors,
    weight_change,
)
from vla_razor.analysis.render import render_html
from vla_razor.config import ConfigError, load_config
from vla_razor.envs.observations import random_observation
from vla_razor.policies import make_policy


def _hsic_cka(x: np.ndarray, y: np.ndarray) -> float:
    """CKA from its definition with Gram matrices and the centring matrix (independent of the
    implementation)."""
    n = len(x)
    h = np.eye(n) - np.ones((n, n)) / n
    k, l_ = x @ x.T, y @ y.T

    def hsic(a, b):
        return np.trace(a @ h @ b @ h) / (n - 1) ** 2

    return hsic(k, l_) / np.sqrt(hsic(k, k) * hsic(l_, l_))


def test_linear_cka_matches_the_gram_matrix_definition_and_its_invariances():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 6))
    y = x @ rng.normal(size=(6, 5)) + 0.5 * rng.normal(size=(40, 5))
    assert linear_cka(torch.tensor(x), torch.tensor(y)) == pytest.approx(_hsic_cka(x, y), rel=1e-10)
    q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    assert linear_cka(torch.tensor(x), torch.tensor(3.0 * x @ q + 7.0)) == pytest.approx(1.0, abs=1e-12)
    independent = linear_cka(torch.tensor(x), torch.tensor(rng.normal(size=(40, 6))))
    assert 0 < independent < 0.5
    with pytest.raises(ValueError, match="same n"):
        linear_cka(torch.zeros(3, 2), torch.zeros(4, 2))


def test_weight_change_is_the_l2_norm_and_the_fraction_of_moved_entries():
    base = torch.nn.Linear(4, 3)
    tuned = copy.deepcopy(base)
    assert weight_change(base, tuned) == {"weights/l2_change": 0.0, "weights/update_density": 0.0}
    with torch.no_grad():
        tuned.weight[0, :2] += torch.tensor([3.0, 4.0])
    out = weight_change(base, tuned)
    assert out["weights/l2_change"] == pytest.approx(5.0)
    assert out["weights/update_density"] == pytest.approx(2 / 15)
    with pytest.raises(ValueError, match="shape"):
        weight_change(base, torch.nn.Linear(4, 2))


def test_predictors_vanish_for_the_base_itself_and_grow_with_a_perturbation():
    torch.manual_seed(0)
    base = make_policy(
        "flow", {"hidden": 32, "num_layers": 1, "chunk_size": 4, "num_steps": 3}, embed_language=False
    ).eval()
    with torch.no_grad():  # the zero-initialised heads would make the policy ignore its observation
        for p in base.parameters():
            p.add_(0.1 * torch.randn_like(p))
    states = random_observation(32)
    same = measure_predictors(base, copy.deepcopy(base), states, kl_states=32)
    assert set(PREDICTORS) <= set(same)
    for name in PREDICTORS:
        assert same[name] == pytest.approx(0.0, abs=1e-9), name
    moved = copy.deepcopy(base)
    with torch.no_grad():
        for p in moved.parameters():
            p.add_(0.05 * torch.randn_like(p))
    far = measure_predictors(base, moved, states, kl_states=32)
    for name in PREDICTORS:
        assert far[name] > 1e-6, name
    assert feature_change(base, moved, states) == pytest.approx(far["features/change"])


def test_each_grid_runs_its_own_seeds_first_seed_first():
    cfg = RazorConfig(
        base="runs/b/policy",
        rl_grid={"lr": [1e-5]},
        sft_grid={"lr": [1e-4]},
        seeds=[0, 1, 2],
        rl_seeds=[0, 1],
        rl_extra_grids=[{"lr": [3e-5]}],
        rl_extra_seeds=[0],
    )
    names = [s.name for s in plan_runs(cfg)]
    assert names == [
        "ppo-lr1e-05-seed0",
        "sft-lr0.0001-seed0",
        "ppo-lr3e-05-seed0",
        "ppo-lr1e-05-seed1",
        "sft-lr0.0001-seed1",
        "sft-lr0.0001-seed2",
    ]
    # a grid with its own seeds runs those, after the shared extra grids of the same seed
    cfg.rl_extra_grids.append({"lr": [5e-6], "total_env_steps": [1000], "seed": [2]})
    names = [s.name for s in plan_runs(cfg)]
    assert names[-2:] == ["sft-lr0.0001-seed2", "ppo-lr5e-06-total_env_steps1000-seed2"]
    assert len(names) == 7 and "ppo-lr3e-05-seed2" not in names
    # SFT's extra grids likewise, after the RL extra grids of the same seed; a seed of their own comes last
    cfg.sft_extra_grids.append({"lr": [3e-5], "validation_episodes": [4], "seed": [2, 5]})
    names = [s.name for s in plan_runs(cfg)]
    assert names[-3:] == [
        "ppo-lr5e-06-total_env_steps1000-seed2",
        "sft-lr3e-05-validation_episodes4-seed2",
        "sft-lr3e-05-validation_episodes4-seed5",
    ]


def test_sweep_plan_is_the_grid_times_the_seeds_and_each_run_config_loads():
    cfg = RazorConfig(
        base="runs/b/policy",
        rl_grid={"lr": [1e-6, 1e-5], "update_epochs": [2, 4]},
        sft_grid={"lr": [1e-4]},
        seeds=[0, 1],
        rl={"total_env_steps": 4096},
        common={"eval_every": 3},
        control_grid={"lr": [1e-4]},
    )
    specs = plan_runs(cfg)
    rl = [s for s in specs if s.method == "rl"]
    sft = [s for s in specs if s.method == "sft"]
    assert len(rl) == 2 * 2 * 2 and len(sft) == 2
    assert len({s.name for s in specs}) == len(specs)
    for spec in rl:
        run_cfg, _ = load_algorithm(spec.algo, None, list(spec.overrides))
        assert run_cfg.lr == spec.grid["lr"] and run_cfg.update_epochs == spec.grid["update_epochs"]
        assert (
            run_cfg.seed == spec.grid["seed"] and run_cfg.total_env_steps == 4096 and run_cfg.eval_every == 3
        )
        assert (
            run_cfg.base == "runs/b/policy"
            and run_cfg.runs_dir == str(cfg.run_root)
            and run_cfg.name == spec.name
        )
    control = plan_control(cfg, "runs/razor/runs/ppo-x/policy")
    control_cfg, _ = load_algorithm("sft", None, list(control[0].overrides))
    assert control_cfg.data == "rl" and control_cfg.rl_policy == "runs/razor/runs/ppo-x/policy"


def test_sweep_config_errors_are_clear():
    with pytest.raises(ConfigError, match="rl_algo must be ppo or grpo"):
        load_config(RazorConfig, None, ["rl_algo=sft"])
    with pytest.raises(ConfigError, match="non-empty list"):
        load_config(RazorConfig, None, ["rl_grid={lr: []}"])
    with pytest.raises(ConfigError, match="unknown key 'lr'"):
        load_config(RazorConfig, None, ["lr=1"])


def _point(method, run, kl, forgetting, new, retention, tag="final"):
    return {
        "method": method,
        "run": run,
        "tag": tag,
        "new_task_success": new,
        "retention": retention,
        "forgetting": forgetting,
        "kl/forward": kl,
        "kl/reverse": kl**0.5,
        "weights/l2_change": 1.0 + 0.1 * (kl % 0.3),
        "weights/update_density": 0.5,
        "features/change": kl * 0.1 + (0.05 if method == "sft" else 0),
    }


def test_analysis_fits_rank_the_exact_predictor_first_and_compare_frontiers():
    base = {**_point("base", "base", 0.0, 0.0, 0.1, 0.8, tag="base")}
    kls = [0.1, 0.3, 0.5, 0.9, 1.4, 2.0]
    points = [base] + [
        _point("rl" if i % 2 else "sft", f"r{i}", kl, 0.2 * kl, 0.5, 0.8 - 0.2 * kl)
        for i, kl in enumerate(kls)
    ]
    out = analyse(points)
    assert out["fits"]["kl/forward"]["linear"]["r2"] == pytest.approx(1.0)
    assert out["fits"]["kl/forward"]["linear"]["coefficients"] == pytest.approx([0.2, 0.0], abs=1e-12)
    assert out["ranking"][0]["predictor"] == "kl/forward"
    assert "linear" not in out["fits"]["weights/update_density"]  # a constant predictor cannot be fitted
    assert out["runs"] == {"rl": 3, "rl_kl": 0, "sft": 3, "sft_on_rl": 0}
    words = findings(out)
    assert any("linear R² = 1.00" in w and "ranks 1 of" in w for w in words)


def test_frontier_areas_by_hand():
    base = _point("base", "base", 0.0, 0.0, 0.1, 0.8, tag="base")
    points = [
        base,
        _point("rl", "a", 0.1, 0.05, 0.6, 0.75),
        _point("rl", "b", 0.2, 0.1, 0.3, 0.7),
        _point("sft", "c", 1.0, 0.3, 0.6, 0.5),
    ]
    area = analyse(points)["frontier_area"]
    # staircase: best retention reachable at >= x; base covers [0, 0.1], the method's best point (0.1, 0.6]
    assert area["rl"] == pytest.approx(0.1 * 0.8 + 0.5 * 0.75)
    assert area["sft"] == pytest.approx(0.1 * 0.8 + 0.5 * 0.5)
    assert any(f.startswith("RL's Pareto frontier lies above SFT's") for f in findings(analyse(points)))


def test_render_html_inlines_every_figure_and_video(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig_path = tmp_path / "pareto.png"
    plt.plot([0, 1], [1, 0])
    plt.savefig(fig_path)
    plt.close()
    video = tmp_path / "final_PushCube.mp4"
    video.write_bytes(b"\x00\x00\x00\x18ftypmp42")
    md = "# R\n\nText.\n\n![Pareto](pareto.png)\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n## Next\n"
    page = render_html(md, {"pareto": fig_path}, {"RL: run": [video]}, "title")
    assert page.count("data:image/png;base64,") == 1 and page.count("data:video/mp4;base64,") == 1
    assert (
        "<th>a</th>" in page and "<td>1</td>" in page and page.count("<table>") == page.count("</table>") == 1
    )
    assert "<figcaption>PushCube</figcaption>" in page


def test_sweep_fans_runs_out_as_ray_tasks_and_reports(smoke_base, tmp_path):
    import json
    import subprocess
    import sys

    sft = {
        "iterations": 2,
        "steps_per_iteration": 2,
        "batch_size": 8,
        "demos": 1,
        "demo_dir": f"{smoke_base}/demos",
    }
    cmd = [
        sys.executable,
        "-m",
        "vla_razor.cli",
        "razor",
        "--smoke",
        f"runs_dir={tmp_path}",
        "workers=2",
        f"base={smoke_base}/base-smoke/policy",
        "rl_grid={lr: [0.0001]}",
        "sft_grid={lr: [0.001]}",
        f"sft={json.dumps(sft)}",
        # every evaluation plays 2 validation episodes too; the control clones the named RL run
        f"common={json.dumps({**SMOKE['common'], 'validation_episodes': 2})}",
        "control_teacher=ppo-lr0.0001-seed0",
        "control_grid={seed: [0]}",
        "--archive",
        f"{tmp_path}/archive",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "Ray workers" in done.stderr
    # what the runs print reaches the sweep's own output (each line prefixed by Ray with the task's pid)
    assert "fine-tuned policy" in done.stdout + done.stderr and "pid=" in done.stdout + done.stderr
    sweep = tmp_path / "razor-smoke"
    statuses = json.loads((sweep / "status.json").read_text())["runs"]
    control = "sft_on_rl-ppo-lr0.0001-seed0-seed0"
    assert sorted(s["name"] for s in statuses) == ["ppo-lr0.0001-seed0", "sft-lr0.001-seed0", control]
    assert all(s["status"] == "done" for s in statuses if s["name"] != control)
    # the control played the named teacher's policy (a smoke policy: it succeeds nowhere, so nothing to clone)
    refused = next(s for s in statuses if s["name"] == control)
    assert refused["exit_code"] == 2 and "ppo-lr0.0001-seed0/policy succeeded in none" in refused["error"]
    plan = json.loads((sweep / "plan.json").read_text())
    assert plan["control_teacher"].endswith("ppo-lr0.0001-seed0")
    control_spec = next(r for r in plan["runs"] if r["name"] == control)
    assert 'rl_policy="' + plan["control_teacher"] + '/policy"' in control_spec["overrides"]
    analysis = json.loads((sweep / "report" / "analysis.json").read_text())
    assert analysis["runs"] == {"rl": 1, "rl_kl": 0, "sft": 1, "sft_on_rl": 0}
    # validation episodes: seeds disjoint from the scored ones, in every evaluation and on every point
    for tag in ("iter_000001", "final"):
        ev = json.loads((sweep / "runs" / "ppo-lr0.0001-seed0" / "eval" / f"{tag}.json").read_text())
        ((task, validation),) = ev["validation"].items()
        assert validation["episodes"] == 2 and validation["seed"] == 10_000 + 250_000
    points = json.loads((sweep / "report" / "points.json").read_text())
    assert all(0 <= p["validation/new_task_success"] <= 1 for p in points if p["run"] != "base")
    assert (sweep / "report" / "report.html").stat().st_size > 10_000

    # The archive: kilobytes per run, no checkpoints or snapshots, and the report rebuilt from it alone.
    archived = tmp_path / "archive" / "runs"
    for name in ("ppo-lr0.0001-seed0", "sft-lr0.001-seed0"):
        assert (archived / name / "eval" / "final.json").is_file() and (
            archived / name / "analysis" / "final.json"
        ).is_file()
        assert not (archived / name / "checkpoints").exists() and not (archived / name / "snapshots").exists()
    assert not (archived / "sft-lr0.001-seed0" / "policy").exists()  # only the best RL run keeps its policy
    assert (archived / "ppo-lr0.0001-seed0" / "policy" / "model.safetensors").is_file()  # the teacher's
    assert json.loads((tmp_path / "archive" / "points.json").read_text()) == json.loads(
        (sweep / "report" / "points.json").read_text()
    )
    before = json.loads((sweep / "report" / "points.json").read_text())
    archived_plan = (tmp_path / "archive" / "plan.json").read_bytes()
    shutil.rmtree(sweep)
    # rebuilt elsewhere (another runs_dir): the archive's plan stays as the sweep wrote it
    elsewhere = [f"runs_dir={tmp_path}/elsewhere" if a.startswith("runs_dir=") else a for a in cmd]
    again = subprocess.run(elsewhere + ["--report-only"], capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    assert (tmp_path / "archive" / "plan.json").read_bytes() == archived_plan
    after = json.loads((tmp_path / "elsewhere" / "razor-smoke" / "report" / "points.json").read_text())
    assert [(p["run"], p["tag"]) for p in after] == [(p["run"], p["tag"]) for p in before]
    for a, b in zip(after, before):
        assert a["kl/forward"] == b["kl/forward"] and a["new_task_success"] == b["new_task_success"]


def test_fine_tuning_noise_level_is_applied_to_policy_and_base_alike():
    from vla_razor.analysis.points import base_as_finetuned
    from vla_razor.harness import set_noise_level
    from vla_razor.rl.ppo import PPOConfig

    torch.manual_seed(0)
    base = make_policy(
        "flow", {"hidden": 32, "num_layers": 1, "chunk_size": 4, "num_steps": 3}, embed_language=False
    )
    tuned = copy.deepcopy(base)
    set_noise_level(tuned, 0.1)
    aligned = base_as_finetuned(base, tuned)
    assert aligned.config.noise_level == 0.1 and base.config.noise_level == 0.5
    assert next(aligned.parameters()) is next(base.parameters())  # the same weights, not a copy
    states = random_observation(16)
    # same weights, same noise: the KL to the aligned base is 0; to the unaligned one it is not
    assert measure_predictors(aligned, tuned, states, kl_states=16)["kl/forward"] == pytest.approx(
        0.0, abs=1e-9
    )
    assert measure_predictors(base, tuned, states, kl_states=16)["kl/forward"] > 0.1
    with pytest.raises(ValueError, match="Flow-SDE"):
        set_noise_level(
            make_policy("gaussian", {"hidden": 32, "num_layers": 1, "chunk_size": 4}, embed_language=False),
            0.1,
        )
    with pytest.raises(ValueError, match="'noise_level' must be >= 0"):
        PPOConfig(noise_level=-1)


def test_a_run_whose_process_dies_is_marked_failed_and_the_sweep_goes_on(tmp_path, monkeypatch):
    import sys

    from vla_razor.analysis import runner
    from vla_razor.analysis.plan import RunSpec
    from vla_razor.analysis.runner import run_specs

    cfg = RazorConfig(runs_dir=str(tmp_path), name="crashy")
    scripts = {  # stand-ins for the runs' processes: one aborts (as SAPIEN can), one diverges, one finishes
        "aborts": "import os; print('simulating', flush=True); os.abort()",
        "diverges": "import sys; print('loss is nan at iteration 3', file=sys.stderr); sys.exit(3)",
        "finishes": (
            "import pathlib, sys; p = pathlib.Path(sys.argv[1]) / 'eval'; p.mkdir(parents=True); "
            "(p / 'final.json').write_text('{}')"
        ),
    }
    monkeypatch.setattr(
        runner,
        "run_command",
        lambda spec, threads=0: [
            sys.executable,
            "-c",
            scripts[spec["name"]],
            str(cfg.run_root / spec["name"]),
        ],
    )
    specs = [RunSpec(name, "rl", "robot", "ppo", ()) for name in scripts]
    statuses = {s["name"]: s for s in run_specs(cfg, specs)}
    assert statuses["aborts"]["status"] == "failed" and "died of SIGABRT" in statuses["aborts"]["error"]
    assert statuses["diverges"]["status"] == "diverged" and "loss is nan" in statuses["diverges"]["error"]
    assert statuses["finishes"]["status"] == "done"
    # A re-run retries what did not finish and skips what did.
    scripts["aborts"] = scripts["finishes"]
    again = {s["name"]: s for s in run_specs(cfg, specs)}
    assert again["aborts"]["status"] == "done" and again["aborts"].get("exit_code") == 0
    assert again["finishes"] == {"name": "finishes", "status": "done"}  # skipped: not run again
    assert again["diverges"]["status"] == "diverged"


def test_the_sweeps_run_command_is_the_cli_with_resume():
    from vla_razor.analysis.runner import run_command

    cmd = run_command({"name": "x", "track": "llm", "algo": "grpo", "overrides": ["lr=0.001"]}, threads=1)
    assert cmd[1:] == [
        "-m",
        "vla_razor.cli",
        "llm",
        "finetune",
        "--algo",
        "grpo",
        "--resume",
        "lr=0.001",
        "threads=1",
    ]


def test_per_task_fits_tell_a_tasks_own_kl_from_the_new_tasks():
    from vla_razor.analysis.numbers import per_task_fits
    from vla_razor.analysis.render import summary_markdown as _markdown

    rng = np.random.default_rng(0)
    points = []
    for i in range(12):
        own, new = rng.uniform(0, 5), rng.uniform(0, 5)
        points.append(
            {
                "method": "rl" if i % 2 else "sft",
                "kl/forward": new,
                "kl/forward/PushCube": own,
                "forgetting/PushCube": 0.1 * own,  # PushCube's forgetting follows the KL on its own states
                "kl/forward/PickCube": own,
                "forgetting/PickCube": 0.05 * new,
            }
        )  # PickCube's, the new task's
    rows = {r["task"]: r for r in per_task_fits(points, ["PushCube", "PickCube", "LiftPegUpright"])}
    assert set(rows) == {"PushCube", "PickCube"}  # no points carry LiftPegUpright's KL: no row
    assert rows["PushCube"]["own_states"]["r2_linear"] == pytest.approx(1.0)
    assert rows["PushCube"]["new_task_states"]["r2_linear"] < 0.5
    assert rows["PickCube"]["new_task_states"]["r2_linear"] == pytest.approx(1.0)
    assert rows["PickCube"]["own_states"]["r2_linear"] < 0.5 and rows["PushCube"]["n"] == 12
    analysis = {"per_task": list(rows.values())}
    assert "for 1 of 2 tasks (PushCube)" in " ".join(findings({**_minimal_analysis(), **analysis}))
    figures = {k: f"{k}.png" for k in ("pareto", "kl", "predictors", "curves", "per_task")}
    text = _markdown({**_minimal_analysis(), **analysis}, [], figures)
    assert "## Where forgetting happens: each prior task" in text and "| PushCube | 12 | 1 / 1 |" in text


def _minimal_analysis() -> dict:
    return {
        "runs": {"rl": 1, "sft": 1, "sft_on_rl": 0},
        "points": {"rl": 6, "sft": 6, "sft_on_rl": 0},
        "frontier_area": {},
        "fits": {},
        "ranking": [],
        "control": [],
        "base": {},
        "best": {},
        "matched": None,
    }


def test_frontier_bootstrap_resamples_runs_within_each_configuration():
    from vla_razor.analysis.fits import bootstrap_frontier_areas, frontier_area

    base = (np.array([0.2]), np.array([0.6]))
    run = (np.array([0.5, 0.9]), np.array([0.5, 0.2]))
    same = {"lr1": [run] * 4}
    worse = {"lr1": [(np.array([0.5, 0.9]), np.array([0.3, 0.0 + 0.01 * s])) for s in range(4)]}
    out = bootstrap_frontier_areas({"rl": same, "sft": worse}, base, samples=300)
    exact = frontier_area(np.array([0.2, 0.5, 0.9]), np.array([0.6, 0.5, 0.2]))
    # identical runs: every resample has the same frontier, the interval is a point
    assert out["area"]["rl"]["low"] == pytest.approx(exact) and out["area"]["rl"]["high"] == pytest.approx(
        exact
    )
    assert out["difference"]["low"] > 0 and out["difference"]["fraction_above_zero"] == 1.0
    assert out["area"]["sft"]["low"] < out["area"]["sft"]["high"]  # the runs differ: a real interval
    assert out["runs"] == {"rl": 4, "sft": 4} and out["configurations"] == {"rl": 1, "sft": 1}
    # a configuration with one run is in every resample: the best SFT run alone in its own configuration
    # puts a floor under SFT's area; with the runs pooled into one configuration it is drawn out at times
    best = (np.array([0.5, 0.9]), np.array([0.45, 0.15]))
    apart = bootstrap_frontier_areas({"rl": same, "sft": {**worse, "lr2": [best]}}, base, samples=300)
    pooled = bootstrap_frontier_areas({"rl": same, "sft": {"lr1": worse["lr1"] + [best]}}, base, samples=300)
    floor = frontier_area(np.array([0.2, 0.5, 0.9]), np.array([0.6, 0.45, 0.15]))
    assert apart["area"]["sft"]["low"] >= floor - 1e-12 > pooled["area"]["sft"]["low"]
    assert apart["single_run_configurations"] == {"rl": 0, "sft": 1}
    # no configuration of a method with two runs: no interval
    assert bootstrap_frontier_areas({"rl": {"a": [run]}, "sft": {"a": [run], "b": [run]}}, base) is None


def _counted(method, run, new, retention, kl, grid, tag="final", tasks=("A", "B"), episodes=50):
    successes = {f"successes/{t}": round(retention * episodes) for t in tasks}
    return {
        "method": method,
        "run": run,
        "tag": tag,
        "grid": grid,
        "new_task_success": new,
        "retention": retention,
        "forgetting": 0.8 - retention,
        "kl/forward": kl,
        **successes,
        **{f"episodes/{t}": episodes for t in tasks},
    }


def test_penalty_runs_are_their_own_group_compared_at_matched_success():
    from vla_razor.analysis.numbers import penalty_comparison
    from vla_razor.analysis.points import point_method
    from vla_razor.analysis.render import summary_markdown as _markdown

    assert point_method("rl", {"lr": 1e-5, "seed": 0}) == "rl"
    assert point_method("rl", {"kl_penalty.kind": "adaptive", "seed": 0}) == "rl_kl"
    assert point_method("sft", {"kl_penalty.kind": "adaptive"}) == "sft"
    grid = {"kl_penalty.kind": "adaptive", "kl_penalty.direction": "forward", "seed": 0}
    points = [
        _counted("base", "base", 0.2, 0.8, 0.0, {}, tag="base"),
        _counted("rl", "ppo-0", 0.9, 0.4, 8.0, {"seed": 0}),
        _counted("rl", "ppo-1", 0.7, 0.5, 6.0, {"seed": 1}),
        _counted("rl_kl", "pen-0", 0.86, 0.6, 3.0, grid),
    ]
    out = penalty_comparison(points, ["A", "B"])
    rows = {r["setting"]: r for r in out["finals"]}
    assert rows["no penalty"]["runs"] == 2 and rows["no penalty"]["new_task_success"] == pytest.approx(0.8)
    assert rows["direction=forward, kind=adaptive"]["forgetting"] == pytest.approx(0.2)
    m = out["matched"]
    assert m["rl"]["run"] == "ppo-0" and m["rl_kl"]["run"] == "pen-0"  # within 10 points, the highest success
    assert m["forgetting_difference"]["estimate"] == pytest.approx(
        -0.2
    )  # the penalised run forgets 20 points less
    assert m["forgetting_difference"]["ci_high"] < 0
    words = findings({**_minimal_analysis(), "penalty": out})
    assert any("the penalty lowers forgetting" in w for w in words)
    text = _markdown(
        {**_minimal_analysis(), "penalty": out},
        [],
        {k: f"{k}.png" for k in ("pareto", "kl", "predictors", "curves")},
    )
    assert "## Does an explicit KL penalty buy retention?" in text and "| no penalty | 2 | 80% |" in text
    assert penalty_comparison([p for p in points if p["method"] != "rl_kl"], ["A", "B"]) is None


def test_chain_vs_action_says_which_kl_fits_forgetting():
    from vla_razor.analysis.numbers import chain_vs_action

    rng = np.random.default_rng(1)
    points = []
    for _ in range(10):
        action = rng.uniform(0, 3)
        chain = action * 2 + rng.uniform(0, 3)  # the chain KL: larger, and only loosely tied to the action KL
        points.append(
            {
                "kl/forward": chain,
                "kl/forward_action": action,
                "kl/forward_chain": chain,
                "forgetting": 0.1 * action,
            }
        )
    out = chain_vs_action(points, {})
    assert (
        out["kl/forward_action"]["r2_linear"] == pytest.approx(1.0) and out["kl/forward"]["r2_linear"] < 0.9
    )
    assert (
        0
        < out["action_over_chain"]["min"]
        <= out["action_over_chain"]["median"]
        <= out["action_over_chain"]["max"]
        < 0.5 + 1e-9
    )
    assert any(
        "the action-marginal KL predicts forgetting better" in w
        for w in findings({**_minimal_analysis(), "chain_vs_action": out})
    )
    assert chain_vs_action(points[:3], {}) is None


def test_the_archive_keeps_kilobytes_and_one_policy(tmp_path):
    from vla_razor.analysis.archive import archive_run, restore_runs

    run = tmp_path / "runs" / "ppo-a"
    for name, text in {
        "config.yaml": "lr: 1\n",
        "metrics.jsonl": "{}\n",
        "eval/final.json": '{"new_task_success": 0.5}',
        "analysis/final.json": "{}",
        "checkpoints/step_1/tensors.safetensors": "x",
        "snapshots/iter_1/model.safetensors": "x",
        "policy/config.json": "{}",
        "policy/model.safetensors": "w",
        "videos/final_PushCube.mp4": "v",
        "tb/events": "e",
    }.items():
        (run / name).parent.mkdir(parents=True, exist_ok=True)
        (run / name).write_text(text)
    archive = tmp_path / "archive"
    assert archive_run(run, archive, with_policy=True) == 7
    kept = sorted(
        str(p.relative_to(archive / "ppo-a")) for p in (archive / "ppo-a").rglob("*") if p.is_file()
    )
    assert kept == [
        "analysis/final.json",
        "config.yaml",
        "eval/final.json",
        "metrics.jsonl",
        "policy/config.json",
        "policy/model.safetensors",
        "videos/final_PushCube.mp4",
    ]
    assert archive_run(run, archive, with_policy=True) == 0  # nothing changed: nothing copied
    archive_run(run, archive)  # no longer the best RL run: its policy and videos leave the archive
    assert not (archive / "ppo-a" / "policy").exists() and not (archive / "ppo-a" / "videos").exists()
    fresh = tmp_path / "fresh"
    assert restore_runs(archive, fresh) == ["ppo-a"] and (fresh / "ppo-a" / "eval" / "final.json").is_file()
    assert restore_runs(archive, fresh) == []  # already there


def test_a_run_in_progress_is_archived_with_its_latest_checkpoint_and_resumes_from_it(tmp_path):
    import torch

    from vla_razor.analysis.archive import archive_partial, archive_run, restore_runs
    from vla_razor.rundir import RunDir

    run = RunDir.create(tmp_path / "runs", "ppo-long", {"lr": 1})
    run.log(1, {"kl/forward": 0.5})
    archive = tmp_path / "archive"
    assert archive_partial(run.path, archive) == 0  # no checkpoint yet: nothing to resume from
    for step in (5, 10):
        run.save_checkpoint(step, {"iteration": step, "policy": {"w": torch.full((3,), float(step))}})
    (run.path / "eval" / "iter_000008.json").write_text('{"iteration": 8}')
    assert archive_partial(run.path, archive) > 0
    kept = sorted(
        str(p.relative_to(archive / "ppo-long")) for p in (archive / "ppo-long").rglob("*") if p.is_file()
    )
    assert kept == [
        "checkpoints/LATEST",
        "checkpoints/step_00000010/state.json",
        "checkpoints/step_00000010/tensors.safetensors",
        "config.yaml",
        "eval/iter_000008.json",
        "metrics.jsonl",
    ]
    assert archive_partial(run.path, archive) == 0  # nothing changed: nothing copied
    run.save_checkpoint(15, {"iteration": 15, "policy": {"w": torch.full((3,), 15.0)}})
    archive_partial(run.path, archive)
    assert sorted(p.name for p in (archive / "ppo-long" / "checkpoints").iterdir()) == [
        "LATEST",
        "step_00000015",
    ]
    # a fresh checkout restores the unfinished run, and its --resume loads the archived checkpoint
    fresh = tmp_path / "fresh"
    assert restore_runs(archive, fresh) == ["ppo-long"]
    path, step, state = RunDir(fresh / "ppo-long").load_latest_checkpoint()
    assert step == 15 and torch.equal(state["policy"]["w"], torch.full((3,), 15.0))
    # once the run has finished, the archive keeps its evaluations and no checkpoint
    (run.path / "eval" / "final.json").write_text('{"new_task_success": 0.9}')
    assert archive_partial(run.path, archive) == 0
    archive_run(run.path, archive)
    assert not (archive / "ppo-long" / "checkpoints").exists()
    assert (archive / "ppo-long" / "eval" / "final.json").is_file()


def test_the_sweep_archives_a_long_run_while_it_goes_on(monkeypatch):
    import sys

    from vla_razor.analysis import runner

    calls = []

    def on_progress():
        calls.append(1)
        if len(calls) == 2:
            raise OSError("disk full")  # a failed archive must not stop the run

    monkeypatch.setattr(
        runner, "run_command", lambda spec, threads=0: [sys.executable, "-c", "import time; time.sleep(1.5)"]
    )
    spec = {"name": "slow", "algo": "ppo", "overrides": []}
    status = runner.execute_run(spec, on_progress=on_progress, progress_every_s=0.2)
    assert status["status"] == "done" and len(calls) >= 4


def test_a_report_only_pass_reports_a_grid_added_after_the_archived_plan(tmp_path):
    import json

    from vla_razor.analysis.plan import RazorConfig, plan_runs
    from vla_razor.analysis.sweep import report_plan

    archive = tmp_path / "archive"
    archive.mkdir()
    cfg = RazorConfig(
        runs_dir=str(tmp_path),
        rl_grid={"lr": [1e-5]},
        sft_grid={"lr": [1e-4]},
        rl_extra_grids=[{"lr": [5e-6], "total_env_steps": [1000]}],
    )
    control = {
        "name": "sft_on_rl-seed0",
        "method": "sft_on_rl",
        "track": "robot",
        "algo": "sft",
        "overrides": [],
    }
    old_runs = [s.as_dict() for s in plan_runs(RazorConfig(rl_grid={"lr": [1e-5]}, sft_grid={"lr": [1e-4]}))]
    (archive / "plan.json").write_text(
        json.dumps({"runs": old_runs + [control], "control_teacher": "runs/x"})
    )
    plan = report_plan(cfg, archive)
    names = [r["name"] for r in plan["runs"]]
    assert names == [s.name for s in plan_runs(cfg)] + ["sft_on_rl-seed0"]
    assert "ppo-lr5e-06-total_env_steps1000-seed0" in names and plan["control_teacher"] == "runs/x"
    # no archived plan yet: the config's own runs
    (archive / "plan.json").unlink()
    assert [r["name"] for r in report_plan(cfg, archive)["runs"]] == [s.name for s in plan_runs(cfg)]
    assert [r["name"] for r in report_plan(cfg, None)["runs"]] == [s.name for s in plan_runs(cfg)]


def test_without_the_bases_weights_the_stored_base_evaluation_is_the_base(tmp_path):
    """A report rebuilt from an archive alone (the LLM track's base is not shipped): the stored rates are the
    base's, whatever key they carry; an episode count they lack is a named error, not a silent evaluation of
    whatever is at the base's path, and the stored file is left as it was."""
    from vla_razor.analysis.points import base_evaluation, measure_run
    from vla_razor.errors import CheckpointError
    from vla_razor.llm.razor import LLMTrack

    track = LLMTrack(str(tmp_path / "no-base"), tmp_path, state_episodes=1, state_seed=0, kl_states=8)
    assert track.base_key is None
    stored = {"key": "llm:add-0123456789abcdef", "rates": {"200": {"add": 0.5, "copy": 1.0}}}
    path = tmp_path / "base_evaluation.json"
    path.write_text(json.dumps(stored))
    rates = base_evaluation(track, path)
    assert rates(200) == {"add": 0.5, "copy": 1.0}
    with pytest.raises(CheckpointError, match=r"not on this machine .* at 500 episodes \(it has \['200'\]\)"):
        rates(500)
    assert json.loads(path.read_text()) == stored
    with pytest.raises(CheckpointError, match="no config.json"):
        track.base  # measuring a policy needs the base: loaded only then
    run = tmp_path / "run"  # a run whose final policy is on disk but whose predictors were never measured
    (run / "eval").mkdir(parents=True)
    (run / "policy").mkdir()
    (run / "policy" / "config.json").write_text("{}")
    (run / "policy" / "model.safetensors").write_bytes(b"weights")
    final = {"meta": {"iteration": 1, "env_steps": 8}, "tasks": {}}
    (run / "eval" / "final.json").write_text(json.dumps(final))
    with pytest.raises(CheckpointError, match=r"run/policy: its predictors are not cached .* not on this"):
        measure_run(run, track)


def test_an_archived_analysis_with_the_same_numbers_keeps_its_commit(tmp_path):
    """Re-reporting an archive rewrites its analysis.json only when a number moved: not for another commit,
    nor for a last-digit difference (Python 3.12's sum() compensates its rounding, 3.11's does not)."""
    from vla_razor.analysis.archive import archive_report

    report, archive = tmp_path / "sweep" / "report", tmp_path / "archive"
    report.mkdir(parents=True)
    archive.mkdir()
    archived = {"commit": "aaa", "matched": {"estimate": -0.3866666666666667, "runs": [3, 3]}}
    (archive / "analysis.json").write_text(json.dumps(archived))
    again = {"commit": "bbb", "matched": {"estimate": -0.3866666666666666, "runs": [3, 3]}}
    (report / "analysis.json").write_text(json.dumps(again))
    archive_report(report, archive)
    assert json.loads((archive / "analysis.json").read_text()) == archived
    moved = {"commit": "ccc", "matched": {"estimate": -0.3867, "runs": [3, 3]}}
    (report / "analysis.json").write_text(json.dumps(moved))
    archive_report(report, archive)
    assert json.loads((archive / "analysis.json").read_text()) == moved
