"""The package installs envs/ and policies/ inside vla_razor, and lists every package it ships."""

import importlib
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_envs_and_policies_install_under_vla_razor():
    envs = importlib.import_module("vla_razor.envs")
    policies = importlib.import_module("vla_razor.policies")
    assert Path(envs.__file__).parent == ROOT / "envs"
    assert Path(policies.__file__).parent == ROOT / "policies"
    # nothing generic at the top level of site-packages
    for generic in ("envs", "policies"):
        spec = importlib.util.find_spec(generic)
        assert spec is None or Path(spec.origin).parent.parent == ROOT, (
            f"a top-level '{generic}' package is importable"
        )


def test_every_package_directory_is_listed_in_pyproject():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    mapping = config["package-dir"]
    found = set()
    for package, directory in mapping.items():
        for init in (ROOT / directory).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / directory)
            found.add(".".join([package, *rel.parts]) if rel.parts else package)
    assert found <= listed, (
        f"packages missing from pyproject.toml [tool.setuptools] packages: {sorted(found - listed)}"
    )


def test_the_cli_has_exactly_its_commands_and_each_has_help():
    import argparse

    from vla_razor.cli import build_parser

    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    commands = set(action.choices)
    assert commands == {
        "doctor",
        "demos",
        "dataset",
        "quickstart",
        "pretrain",
        "finetune",
        "eval",
        "spread",
        "razor",
        "results",
        "llm",
    }
    for command in sorted(commands):
        done = subprocess.run(
            [sys.executable, "-m", "vla_razor.cli", command, "--help"], capture_output=True, text=True
        )
        assert done.returncode == 0 and done.stdout.startswith(f"usage: vla-razor {command}"), done.stderr


def _doctor(env_extra=None):
    import os

    env = dict(os.environ, **(env_extra or {}))
    return subprocess.run(
        [sys.executable, "-m", "vla_razor.cli", "doctor"], capture_output=True, text=True, env=env
    )


def test_doctor_passes_on_a_set_up_machine():
    result = _doctor()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok    maniskill" in result.stdout and "all checks passed" in result.stdout


def test_doctor_explains_a_missing_vulkan_driver():
    result = _doctor(
        {"VK_ICD_FILENAMES": "/nonexistent/icd.json", "VK_DRIVER_FILES": "/nonexistent/icd.json"}
    )
    assert result.returncode == 1
    assert "FAIL  vulkan" in result.stdout and "scripts/setup.sh" in result.stdout


def test_sweep_archives_are_not_git_ignored():
    """A sweep's archive is committed so that a fresh clone resumes the sweep: no ignore rule may hide the
    archived runs (the run directories of the repo's own ``runs/`` are ignored, the archive's are not)."""
    archives = sorted(p.parent.relative_to(ROOT) for p in (ROOT / "docs" / "results").glob("*/plan.json"))
    assert archives, "docs/results holds the committed sweep archives (razor --archive DIR)"
    for archive in archives:
        probe = f"{archive}/runs/ppo-seed0/eval/final.json"
        ignored = subprocess.run(
            ["git", "check-ignore", "-q", probe], cwd=ROOT, capture_output=True, check=False
        )
        assert ignored.returncode == 1, f"git ignores the archive {archive} ({probe})"
    kept = subprocess.run(["git", "check-ignore", "-q", "runs/x/eval.json"], cwd=ROOT, check=False)
    assert kept.returncode == 0, "the repo's own runs/ should stay ignored"


def test_lerobot_setup_without_python_312_says_how_to_get_it(tmp_path):
    import shutil

    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "setup_lerobot.sh", tmp_path / "scripts")
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHON312": "/nonexistent/python3.12"}
    done = subprocess.run(
        ["bash", "scripts/setup_lerobot.sh"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if done.returncode == 0:
        pytest.skip("a Python 3.12 is installed system-wide here")
    assert done.returncode == 1 and "needs Python 3.12" in done.stderr and "PYTHON312=" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / ".venv-lerobot").exists()
