"""Process runtime settings every long-running command applies (the lowest layer: no project imports)."""

from __future__ import annotations

import contextlib
import ctypes
import os


def tune_malloc() -> None:
    """Keep glibc from returning autograd's large buffers to the OS after every backward pass.

    Without this, each minibatch's activations are mmap-ed and unmapped again, which made a
    log-prob-with-grad pass 1.5x slower at batch 64 (docs/benchmarks.md, policy sampling).
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return  # not glibc: nothing to tune
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    libc.mallopt(M_MMAP_THRESHOLD, 32 * 1024 * 1024)
    libc.mallopt(M_TRIM_THRESHOLD, 1024 * 1024 * 1024)


@contextlib.contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None, log_to_driver: bool = False):
    """Ray for the duration of the block: joined when already initialised (e.g. inside a sweep's Ray
    task), else started, on the cluster at ``address`` (or ``$RAY_ADDRESS``) or locally with
    ``num_cpus``, and shut down again afterwards; ``log_to_driver`` shows what the tasks print here.
    Yields the ``ray`` module."""
    import ray

    address = address or os.environ.get("RAY_ADDRESS") or None
    started_here = not ray.is_initialized()
    if started_here:
        kwargs = {"address": address} if address else {"num_cpus": num_cpus, "include_dashboard": False}
        ray.init(log_to_driver=log_to_driver, configure_logging=False, **kwargs)
    try:
        yield ray
    finally:
        if started_here:
            ray.shutdown()
