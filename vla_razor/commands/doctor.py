"""`vla-razor doctor`: check that the installation can do real work, and say how to fix what cannot."""

from __future__ import annotations

import platform
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from typing import Callable

import numpy


def _check_python() -> str:
    if sys.version_info < (3, 11):
        raise RuntimeError(f"Python {platform.python_version()} is too old: vla-razor needs 3.11 or newer")
    return platform.python_version()


def _check_torch() -> str:
    import torch

    build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "CPU build"
    device = f", GPU: {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    return f"{torch.__version__} ({build}{device}, {torch.get_num_threads()} threads)"


def _check_numpy() -> str:
    if int(numpy.__version__.split(".")[0]) >= 2:
        # Not a failure: everything but motion-planning demo generation runs on numpy 2 (.venv-lerobot).
        return (
            f"{numpy.__version__}: motion-planning demos cannot be generated here (mplib needs numpy<2); "
            "generate them in .venv, this environment reads them"
        )
    return numpy.__version__


def _check_lerobot() -> str:
    try:
        return f"lerobot {version('lerobot')}: LeRobot datasets and policies available"
    except PackageNotFoundError:
        # Not a failure either: the LeRobot integration lives in its own environment.
        return "not installed here (LeRobot datasets and policies: `make setup-lerobot`, then .venv-lerobot)"


def _check_vulkan() -> str:
    from vla_razor.envs.vulkan import require_vulkan

    return require_vulkan()


def _check_maniskill() -> str:
    import gymnasium as gym
    import mani_skill

    from vla_razor.envs.maniskill import import_maniskill

    import_maniskill()

    start = time.perf_counter()
    env = gym.make("PickCube-v1", obs_mode="state", num_envs=1, sim_backend="physx_cpu", render_backend="cpu")
    try:
        env.reset(seed=0)
        env.step(env.action_space.sample())
    finally:
        env.close()
    return (
        f"mani-skill {mani_skill.__version__}: PickCube-v1 reset and stepped in "
        f"{time.perf_counter() - start:.1f}s"
    )


def _check_divergence() -> str:
    import torch
    import torch.distributions as td

    from vla_razor.divergence import Categorical, kl

    g = torch.Generator().manual_seed(0)
    zp, zq = torch.randn(4, 100, generator=g), torch.randn(4, 100, generator=g)
    ours = kl(Categorical(zp), Categorical(zq))
    # An independent reference implementation, only to check the installed core against it.
    ref = td.kl_divergence(td.Categorical(logits=zp), td.Categorical(logits=zq))
    if not torch.allclose(ours, ref, rtol=1e-5, atol=1e-6):
        raise RuntimeError(f"token KL disagrees with torch.distributions: {ours} vs {ref}")
    return "exact token KL agrees with torch.distributions"


CHECKS: list[tuple[str, Callable[[], str]]] = [
    ("python", _check_python),
    ("torch", _check_torch),
    ("numpy", _check_numpy),
    ("lerobot", _check_lerobot),
    ("vulkan", _check_vulkan),
    ("maniskill", _check_maniskill),
    ("divergence", _check_divergence),
]


def run_doctor() -> int:
    """Print one line per check; return 0 when every check passed, 1 otherwise."""
    failed = 0
    for name, check in CHECKS:
        try:
            detail = check()
            print(f"  ok    {name:<11} {detail}", flush=True)
        except Exception as err:  # a check failing must not hide the others
            failed += 1
            print(f"  FAIL  {name:<11} {err}", flush=True)
    print("all checks passed" if not failed else f"{failed} check(s) failed", flush=True)
    return 1 if failed else 0


def main(args) -> int:
    """`vla-razor doctor`."""
    return run_doctor()
