"""The GPU check's CPU side: the script parses, each stage refuses with a named message when what it needs
is missing, and the rollout benchmark it runs works end to end (on the CPU backend, at a tiny size)."""

import importlib.util
import json
import math
import subprocess
import zipfile
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


def _load(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_gpu_rollout_benchmark_runs_on_the_cpu_backend():
    bench = _load(ROOT / "benchmarks" / "bench_gpu_rollout.py")
    records = bench.main(["--backend", "cpu", "--envs", "2", "--obs", "state", "--decisions", "2", "--tiny"])
    (record,) = records
    # 2 sub-envs x 2 chunks of 4 actions, unless an episode ended inside a chunk
    assert 0 < record["env_steps"] <= 16 and record["env_steps_per_s"] > 0
    assert record["sample_share"] + record["env_share"] == pytest.approx(1.0)
    assert record["backend"] == "cpu" and record["peak_gpu_mib"] == 0.0


def test_the_gpu_ppo_benchmark_runs_on_the_cpu_backend(tmp_path):
    bench = _load(ROOT / "benchmarks" / "bench_gpu_ppo.py")
    out = tmp_path / "ppo.jsonl"
    argv = "--device cpu --sim cpu --envs 2 --obs state --decisions 4 --iterations 2 --epochs 1 --out".split()
    (record,) = bench.main([*argv, str(out)])
    assert json.loads(out.read_text()) == record
    # the quickstart base: chunks of 8 actions; the first of the 2 iterations is not timed
    assert record["env_steps_per_iteration"] == 2 * 4 * 8
    assert record["iterations"] == 2 and record["timed_iterations"] == 1
    shares = record["rollout_share"] + record["update_share"] + record["kl_share"]
    assert (
        0.5 < shares <= 1.0 and min(record["rollout_share"], record["update_share"], record["kl_share"]) > 0
    )
    assert record["kl_forward_last"] > 0 and math.isfinite(record["kl_forward_last"])  # one update moved it


def test_the_mani_skill_wheel_is_trimmed_of_unused_assets_only(tmp_path):
    wheels = _load(ROOT / "scripts" / "gpu_wheels.py")
    kept = [
        "mani_skill/assets/robots/panda/panda_v2.urdf",
        "mani_skill/utils/scene_builder/replicacad/scene_builder.py",
        "mani_skill/utils/scene_builder/table/assets/table.glb",
        "mani_skill/envs/tasks/tabletop/pull_cube.py",
    ]
    dropped = [
        "mani_skill/assets/robots/fetch/fetch.urdf",
        "mani_skill/assets/environment_maps/default.hdr",
        "mani_skill/utils/scene_builder/replicacad/autumn_field_puresky_4k.hdr",
        "mani_skill/utils/scene_builder/kitchen_counter/assets/kitchen_counter.glb",
    ]
    record = "mani_skill-3.0.1.dist-info/RECORD"
    source, target = tmp_path / "in.whl", tmp_path / "out.whl"
    with zipfile.ZipFile(source, "w") as z:
        for name in kept + dropped:
            z.writestr(name, b"x")
        z.writestr(record, "".join(f"{name},sha256=abc,1\n" for name in kept + dropped + [record]))
    wheels.trim_wheel(source, target)
    with zipfile.ZipFile(target) as z:
        assert sorted(z.namelist()) == sorted(kept + [record])
        listed = [line.split(",")[0] for line in z.read(record).decode().splitlines()]
    assert listed == kept + [record]
