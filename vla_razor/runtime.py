"""Process runtime settings every long-running command applies (the lowest layer: no project imports)."""

from __future__ import annotations

import ctypes


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
