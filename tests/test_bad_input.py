"""Every bad input a user can hand a command ends in one named message and exit code 2, never a traceback.

Each case of ``CASES`` is one row of the table in docs/reliability.md (the last test keeps the two in
step). Commands run in this process through ``vla_razor.cli.main``: each must refuse its input before
any expensive work, so the whole table takes seconds.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vla_razor import cli


def _policy_copy(smoke_base, tmp_path, name="policy") -> Path:
    out = tmp_path / name
    shutil.copytree(smoke_base / "base-smoke" / "policy", out, ignore=shutil.ignore_patterns("*_cache"))
    return out


def _edit_config(directory: Path, edit) -> Path:
    meta = json.loads((directory / "config.json").read_text())
    edit(meta)
    (directory / "config.json").write_text(json.dumps(meta))
    return directory


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


def _zero_std(directory: Path) -> Path:
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(directory / "model.safetensors"))
    tensors["obs_encoder.proprio_std"] = torch.zeros_like(tensors["obs_encoder.proprio_std"])
    save_file(tensors, str(directory / "model.safetensors"))
    return directory


def _nan_weight(directory: Path) -> Path:
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(directory / "model.safetensors"))
    name = next(k for k, v in tensors.items() if v.is_floating_point() and v.numel() > 1 and "std" not in k)
    tensors[name][0] = float("nan")
    save_file(tensors, str(directory / "model.safetensors"))
    return directory


def _pickles_only(tmp_path: Path) -> Path:
    out = tmp_path / "pickled"
    out.mkdir()
    torch.save({"w": torch.ones(2)}, out / "pytorch_model.bin")
    (out / "config.json").write_text('{"family": "flow"}')
    return out


def _hf_model(smoke_base, tmp_path) -> Path:
    out = _policy_copy(smoke_base, tmp_path, "hf")
    (out / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 64}))
    return out


def _demo_store(smoke_base, tmp_path) -> Path:
    """A copy of the smoke demos (the new task PickCube's pd_ee_delta_pose set) to damage."""
    out = tmp_path / "demos"
    shutil.copytree(smoke_base / "demos", out)
    return out


def _demo_h5(store: Path) -> Path:
    return next((store / "PickCube" / "pd_ee_delta_pose").glob("*.h5"))


def _other_control_mode(store: Path) -> Path:
    meta_path = _demo_h5(store).with_suffix(".json")
    meta = json.loads(meta_path.read_text())
    for ep in meta["episodes"]:
        ep["control_mode"] = "pd_joint_pos"
    meta_path.write_text(json.dumps(meta))
    return store


def _bad_yaml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    return path


def _existing_run(tmp_path: Path) -> Path:
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "config.yaml").write_text("lr: 1.0\n")
    return tmp_path


def _changed_resume(smoke_base, tmp_path) -> Path:
    from vla_razor.algorithms import load_algorithm
    from vla_razor.rundir import RunDir

    cfg, _ = load_algorithm(
        "ppo",
        None,
        [f"base={smoke_base}/base-smoke/policy", f"runs_dir={tmp_path}", "name=taken", "lr=1e-5"],
        smoke=True,
    )
    RunDir.create(tmp_path, "taken", cfg)
    return tmp_path


def _sweep_run_of_another_config(tmp_path) -> Path:
    """A sweep directory of configs/razor.yaml whose PPO run was made with another budget."""
    from vla_razor.algorithms import load_algorithm
    from vla_razor.rundir import RunDir

    run_root = tmp_path / "other" / "runs"
    cfg, _ = load_algorithm("ppo", None, [f"runs_dir={run_root}", "name=ppo-lr1e-05-seed0", "lr=1e-5"])
    run = RunDir.create(run_root, "ppo-lr1e-05-seed0", cfg)
    (run.eval / "final.json").write_text("{}")
    return tmp_path


def _trunc(b, t) -> Path:
    out = _policy_copy(b, t, "truncated")
    _truncate(out / "model.safetensors")
    return out


def _trunc_demos(b, t) -> Path:
    store = _demo_store(b, t)
    _truncate(_demo_h5(store))
    return store


def _wider(meta):
    meta["config"]["hidden"] = 64


def _zero_heads(meta):
    meta["config"]["num_heads"] = 0


def _not_json(b, t):
    out = _policy_copy(b, t, "notjson")
    (out / "config.json").write_text("{not json")
    return [*PPO, f"base={out}"]


# (case id, argv builder (smoke_base, tmp_path) -> argv, what the message must say). The ids are the rows of
# docs/reliability.md.
PPO = ["finetune", "--algo", "ppo", "--smoke"]
CASES = [
    # config fields: range and type, NaN and inf included (one check in the config layer)
    ("config-nan-float", lambda b, t: [*PPO, "lr=.nan"], r"key 'lr' expects a finite float, got nan"),
    (
        "config-inf-float",
        lambda b, t: ["pretrain", "--smoke", "lr=.inf"],
        r"key 'lr' expects a finite float, got inf",
    ),
    ("config-nan-word", lambda b, t: [*PPO, "lr=nan"], r"key 'lr' expects float, got str 'nan'"),
    ("config-below-range", lambda b, t: [*PPO, "num_envs=0"], r"key 'num_envs' must be >= 1, got 0"),
    ("config-above-range", lambda b, t: [*PPO, "gamma=1.5"], r"key 'gamma' must be > 0 and <= 1, got 1.5"),
    ("config-nested-range", lambda b, t: [*PPO, "kl_penalty.coef=-1"], r"'kl_penalty.coef' must be >= 0"),
    ("config-wrong-type", lambda b, t: ["pretrain", "--smoke", "steps=abc"], r"key 'steps' expects int"),
    (
        "config-unknown-key",
        lambda b, t: ["pretrain", "stepz=10"],
        r"unknown key 'stepz'.*did you mean 'steps'",
    ),
    ("config-bad-override", lambda b, t: ["pretrain", "steps"], r"not of the form key.sub=value"),
    (
        "config-llm-nan",
        lambda b, t: ["llm", "finetune", "--algo", "grpo", "lr=.nan"],
        r"'lr' expects a finite float",
    ),
    ("config-llm-range", lambda b, t: ["llm", "pretrain", "steps=0"], r"'steps' must be >= 1"),
    ("config-razor-range", lambda b, t: ["razor", "workers=0"], r"'workers' must be >= 1"),
    (
        "config-device",
        lambda b, t: [*PPO, "device=tpu"],
        r"key 'device' must be 'cpu', 'cuda', 'cuda:N' or 'auto', got 'tpu'",
    ),
    (
        "config-gpu-sim-on-cpu",
        lambda b, t: [*PPO, "sim_backend=gpu"],
        r"sim_backend='gpu' .* needs device='cuda' and rollout_workers=0",
    ),
    (
        "config-quickstart-range",
        lambda b, t: ["quickstart", "demos_per_task=0"],
        r"'demos_per_task' must be >= 1",
    ),
    (
        "yaml-malformed",
        lambda b, t: ["pretrain", "--config", str(_bad_yaml(t, "steps: [1, 2\n"))],
        r"not valid YAML",
    ),
    (
        "yaml-not-a-mapping",
        lambda b, t: ["pretrain", "--config", str(_bad_yaml(t, "- 1\n- 2\n"))],
        r"top level must be a mapping",
    ),
    ("yaml-missing", lambda b, t: ["pretrain", "--config", str(t / "nope.yaml")], r"does not exist"),
    # names
    (
        "unknown-task",
        lambda b, t: [*PPO, f"base={b}/base-smoke/policy", "task=NoSuchTask"],
        r"unknown task 'NoSuchTask'",
    ),
    ("unknown-suite", lambda b, t: [*PPO, "suite=nope"], r"unknown suite 'nope'; known suites"),
    (
        "unknown-suite-eval",
        lambda b, t: ["eval", f"{b}/base-smoke/policy", "--suite", "nope"],
        r"unknown suite 'nope'",
    ),
    (
        "unknown-task-demos",
        lambda b, t: ["demos", "--task", "NoSuchTask", "--smoke", "--out", str(t)],
        r"unknown task 'NoSuchTask'",
    ),
    (
        "demos-episodes-zero",
        lambda b, t: ["demos", "--task", "PickCube", "--episodes", "0", "--out", str(t)],
        r"num_episodes must be at least 1, got 0",
    ),
    (
        "unknown-family",
        lambda b, t: [*PPO, f"base={_edit_config(_policy_copy(b, t), lambda m: m.update(family='vae'))}"],
        r"unknown policy family 'vae'; known: diffusion, flow, gaussian",
    ),
    # checkpoints handed in
    ("base-missing", lambda b, t: [*PPO, f"base={t}/nowhere"], r"base policy .*nowhere not found"),
    (
        "base-pickles-only",
        lambda b, t: [*PPO, f"base={_pickles_only(t)}"],
        r"only pickle files .*never unpickles.*save_file",
    ),
    ("base-config-not-json", _not_json, r"config.json is not JSON"),
    (
        "base-weights-truncated",
        lambda b, t: [*PPO, f"base={_trunc(b, t)}"],
        r"model.safetensors cannot be read.*truncated",
    ),
    (
        "base-wrong-shape",
        lambda b, t: [*PPO, f"base={_edit_config(_policy_copy(b, t), _wider)}"],
        r"does not match its config.json",
    ),
    (
        "base-zero-std",
        lambda b, t: [*PPO, f"base={_zero_std(_policy_copy(b, t))}"],
        r"normalisation buffer obs_encoder.proprio_std has entries <= 0",
    ),
    (
        "base-nan-weights",
        lambda b, t: [*PPO, f"base={_nan_weight(_policy_copy(b, t))}"],
        r"holds NaN or inf values",
    ),
    (
        "base-bad-config-value",
        lambda b, t: [*PPO, f"base={_edit_config(_policy_copy(b, t), _zero_heads)}"],
        r"'config.num_heads' must be >= 1.*does not fit",
    ),
    (
        "base-is-an-llm",
        lambda b, t: [*PPO, f"base={_hf_model(b, t)}"],
        r"Hugging Face 'llama' model.*LLM track",
    ),
    (
        "llm-base-is-a-robot-policy",
        lambda b, t: ["llm", "finetune", "--algo", "sft", "--smoke", f"base={b}/base-smoke/policy"],
        r"is a vla-razor flow robot policy, not a language model",
    ),
    (
        "llm-base-missing",
        lambda b, t: ["llm", "finetune", "--algo", "sft", "--smoke", f"base={t}/none"],
        r"not a Hugging Face checkpoint directory",
    ),
    (
        "eval-checkpoint-truncated",
        lambda b, t: ["eval", "--checkpoint", str(_trunc(b, t)), "--suite", "smoke"],
        r"model.safetensors cannot be read",
    ),
    (
        "eval-episodes-zero",
        lambda b, t: ["eval", f"{b}/base-smoke/policy", "--episodes", "0"],
        r"--episodes must be >= 1, got 0",
    ),
    (
        "eval-policy-named-twice",
        lambda b, t: ["eval", f"{b}/base-smoke/policy", "--checkpoint", f"{b}/base-smoke/policy"],
        r"name the policy once",
    ),
    (
        "eval-no-policy",
        lambda b, t: ["eval", "--suite", "smoke"],
        r"name the policy once",
    ),
    (
        "quickstart-base-missing",
        lambda b, t: ["quickstart", f"base={t}/none", f"runs_dir={t}"],
        r"base policy .*none not found",
    ),
    (
        "razor-report-only-base-missing",  # an archive without the base's evaluation cannot stand in for it
        lambda b, t: [
            "razor",
            "--config",
            "configs/razor_llm_zeropad.yaml",
            "--report-only",
            "--archive",
            f"{t}/empty-archive",
            f"base={t}/none",
            f"runs_dir={t}/sweep",
        ],
        r"base policy .*none not found",
    ),
    (
        "quickstart-razor-override",
        lambda b, t: ["quickstart", f"runs_dir={t}", "razor={'workers': 0}"],
        r"'workers' must be >= 1",
    ),
    # demonstrations
    (
        "demos-other-control-mode",
        lambda b, t: [
            "finetune",
            "--algo",
            "sft",
            "--smoke",
            f"base={b}/base-smoke/policy",
            f"demo_dir={_other_control_mode(_demo_store(b, t))}",
            f"runs_dir={t}/runs",
        ],
        r"holds pd_joint_pos actions.*--control-mode pd_ee_delta_pose",
    ),
    (
        "sft-kl-penalty",
        lambda b, t: [
            "finetune",
            "--algo",
            "sft",
            "--smoke",
            f"base={b}/base-smoke/policy",
            "kl_penalty.kind=fixed",
        ],
        r"kl_penalty: the robot SFT loss has no penalty toward the base",
    ),
    # run directories
    (
        "run-exists",
        lambda b, t: [*PPO, f"base={b}/base-smoke/policy", f"runs_dir={_existing_run(t)}", "name=taken"],
        r"run directory .*taken already exists; pass --resume",
    ),
    (
        "resume-changed-config",
        lambda b, t: [
            *PPO,
            "--resume",
            f"base={b}/base-smoke/policy",
            f"runs_dir={_changed_resume(b, t)}",
            "name=taken",
            "lr=2e-5",
        ],
        r"differs from the config of this command in lr: 1e-05 -> 2e-05 \(saved -> this command\)",
    ),
    # a sweep's report: of nothing, or of runs the plan does not describe
    (
        "razor-report-of-nothing",
        lambda b, t: ["razor", "--report-only", "name=empty", f"runs_dir={t}"],
        r"no run of this sweep has an evaluation in .*: nothing to report .*--archive DIR",
    ),
    (
        "razor-run-of-another-config",
        lambda b, t: ["razor", "--report-only", "name=other", f"runs_dir={_sweep_run_of_another_config(t)}"],
        r"1 run\(s\) in .* were made with another config "
        r".*ppo-lr1e-05-seed0 \(.*total_env_steps: 300000 -> 196608",
    ),
]


if not torch.cuda.is_available():
    CASES.append(
        (
            "device-without-cuda",
            lambda b, t: [*PPO, f"base={b}/base-smoke/policy", "device=cuda"],
            r"device='cuda' but torch sees no CUDA device",
        )
    )


@pytest.mark.parametrize("case, argv, message", CASES, ids=[c[0] for c in CASES])
def test_bad_input_gets_one_named_message_and_exit_code_2(
    case, argv, message, smoke_base, tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("VLA_RAZOR_PROGRESS", "lines")
    runs = tmp_path / "runs"
    args = argv(smoke_base, tmp_path)
    if not any(a.startswith("runs_dir=") for a in args) and args[0] in ("finetune", "pretrain", "llm"):
        args.append(f"runs_dir={runs}")
    code = cli.main(args)
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("vla-razor ")]
    assert len(lines) == 1, err
    import re

    assert re.search(message, lines[0]), lines[0]


def test_the_reliability_doc_lists_every_case():
    doc = (Path(__file__).parent.parent / "docs" / "reliability.md").read_text()
    missing = [c[0] for c in CASES if f"`{c[0]}`" not in doc]
    assert not missing, f"docs/reliability.md lacks {missing}"


def test_a_truncated_demo_file_is_a_named_error_and_the_demo_store_regenerates_it(smoke_base, tmp_path):
    from vla_razor.envs.demos import DemoFileError, generate_demos, load_demos

    store = _demo_store(smoke_base, tmp_path)
    h5 = _demo_h5(store)
    _truncate(h5)
    with pytest.raises(DemoFileError, match=r"demo file .* is unreadable .*vla-razor demos --task PickCube"):
        load_demos(h5.parent)
    # A command that needs the demos (pretrain, SFT) asks the store, which sees the damage and regenerates.
    index = generate_demos("PickCube", 1, out_dir=store, progress=False)
    assert len(load_demos(index.path)) == 1


def test_lerobot_commands_without_lerobot_say_where_it_lives(tmp_path):
    import importlib.util

    if importlib.util.find_spec("lerobot") is not None:
        pytest.skip("LeRobot is installed here")
    from vla_razor.data.lerobot import load_lerobot_episodes
    from vla_razor.errors import DatasetError

    (tmp_path / "d" / "meta").mkdir(parents=True)
    (tmp_path / "d" / "meta" / "info.json").write_text("{}")
    with pytest.raises(DatasetError, match="make setup-lerobot"):
        load_lerobot_episodes(tmp_path / "d")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "vla_razor.cli",
            "dataset",
            "export",
            "--demos",
            str(tmp_path),
            "--out",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2 and ".venv-lerobot" in done.stderr, done.stderr
