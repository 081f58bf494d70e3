"""ManiSkill renders through Vulkan even for state observations: find a device or say how to get one."""

from __future__ import annotations

import functools

INSTALL_HINT = (
    "ManiSkill needs a Vulkan device even for state observations. Without a GPU, install Mesa's software "
    "driver (lavapipe, Mesa >= 24.3): run `bash scripts/setup.sh` (it adds the distribution's backports "
    "suite on Debian 12 and installs mesa-vulkan-drivers), or on another distribution install "
    "mesa-vulkan-drivers >= 24.3 and libvulkan1 with its package manager."
)


class VulkanUnavailableError(RuntimeError):
    """No Vulkan device that ManiSkill can render with."""


@functools.lru_cache(maxsize=1)
def vulkan_device_summary() -> str:
    """SAPIEN's description of the render devices it found; raises :class:`VulkanUnavailableError`."""
    import sapien

    try:
        summary = sapien.render.get_device_summary()
    except RuntimeError as err:
        raise VulkanUnavailableError(f"{err}. {INSTALL_HINT}") from None
    if "Supported: 1" not in summary:
        raise VulkanUnavailableError(f"no supported Vulkan device in:\n{summary}\n{INSTALL_HINT}")
    return summary


def require_vulkan() -> str:
    """The name of the first usable device (e.g. ``llvmpipe (LLVM 15.0.6, 256 bits)``)."""
    summary = vulkan_device_summary()
    first = summary.splitlines()[0]
    return first.split(":", 1)[1].strip() if ":" in first else first
