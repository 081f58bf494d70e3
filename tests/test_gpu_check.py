"""The GPU check's CPU side: the script parses, each stage refuses with a named message when what it needs
is missing, and the rollout benchmark it runs works end to end (on the CPU backend, at a tiny size)."""

import importlib.util
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_check.sh"


def _stage(*args, cwd=ROOT):
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, cwd=cwd, timeout=120)


def test_the_script_parses_and_names_its_stages():
    assert subprocess.run(["bash", "-n", str(SCRIPT)]).returncode == 0
    done = _stage("launch")
    assert (
        done.returncode == 2 and "usage: bash scripts/gpu_check.sh prepare|receive|install|run" in done.stderr
    )


@pytest.mark.skipif((ROOT / ".venv-gpu").exists(), reason="a GPU check was installed in this checkout")
def test_the_stages_on_the_gpu_machine_refuse_what_they_lack():
    done = _stage("run")
    assert done.returncode == 2 and "install' first" in done.stderr
    if not (ROOT / ".gpu-cache").exists():
        done = _stage("install")
        assert done.returncode == 2 and "receive them first" in done.stderr


def test_the_gpu_rollout_benchmark_runs_on_the_cpu_backend():
    spec = importlib.util.spec_from_file_location(
        "bench_gpu_rollout", ROOT / "benchmarks" / "bench_gpu_rollout.py"
    )
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    records = bench.main(["--backend", "cpu", "--envs", "2", "--obs", "state", "--decisions", "2", "--tiny"])
    (record,) = records
    # 2 sub-envs x 2 chunks of 4 actions, unless an episode ended inside a chunk
    assert 0 < record["env_steps"] <= 16 and record["env_steps_per_s"] > 0
    assert record["sample_share"] + record["env_share"] == pytest.approx(1.0)
    assert record["backend"] == "cpu" and record["peak_gpu_mib"] == 0.0
