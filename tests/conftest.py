"""Fixtures shared by test modules."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def clone_like(dest: Path) -> Path:
    """A copy of this checkout as a fresh clone holds it (tracked files, and new ones git does not ignore, as
    they are in the working tree), committed in a git repository of its own: ``git status`` there shows what
    a command changed. Needs git and a git checkout."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout
    for name in filter(None, listed.decode().split("\0")):
        if (ROOT / name).is_file():  # a tracked file deleted in the working tree is not copied
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t"}
    env["GIT_COMMITTER_EMAIL"] = "t@t"
    for git in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "snapshot"]):
        subprocess.run(["git", *git], cwd=dest, env=env, capture_output=True, check=True)
    return dest


@pytest.fixture(scope="session")
def smoke_base(tmp_path_factory):
    """A --smoke base policy (``<root>/base-smoke/policy``) and its demos (``<root>/demos``), made once."""
    root = tmp_path_factory.mktemp("base")
    cmd = [
        sys.executable,
        "-m",
        "vla_razor.cli",
        "pretrain",
        "--smoke",
        f"runs_dir={root}",
        f"demo_dir={root}/demos",
        "steps=10",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return root


def pytest_collection_modifyitems(config, items):
    """The end-to-end tier: every test that needs the --smoke base (it runs the CLI in subprocesses) is
    ``slow``, like those marked by hand. ``make test`` runs both tiers; ``make test-fast`` only the rest."""
    import importlib.util

    no_lerobot = importlib.util.find_spec("lerobot") is None
    skip = pytest.mark.skip(reason="LeRobot lives in .venv-lerobot; make test runs these there")
    for item in items:
        if "smoke_base" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)
        if no_lerobot and "lerobot" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True, scope="module")
def _module_leaves_no_process_state():
    """After each test module: close the evaluation envs it kept alive in this process (up to
    ``MAX_EVAL_SUB_ENVS`` sub-envs, ~25 MB each for Meta-World), and fail if it left Ray initialised here. A
    leaked local Ray outlives the test that started it; when something later stops it (another test's
    Ray head going down, `ray stop`), Ray's driver thread ends this whole process with exit code 1 and no
    pytest summary."""
    yield
    from vla_razor.evaluation import close_evaluation_envs

    close_evaluation_envs()
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()
        pytest.fail("this test module left Ray initialised in the test process")
