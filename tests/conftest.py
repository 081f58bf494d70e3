"""Fixtures shared by test modules."""

import subprocess
import sys

import pytest


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
