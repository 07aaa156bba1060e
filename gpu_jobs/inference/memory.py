"""Keep freed memory in the process for reuse: the CPU backends' decode loop depends on it.

Every decode step grows each layer's KV cache by one token, and both CTranslate2 and torch
do that by allocating a larger buffer and copying (tens to hundreds of MiB per layer at
batch x chains rows). glibc hands buffers above its mmap threshold (at most 32 MiB) fresh
pages from mmap and returns them on free, and its per-thread arenas cannot hold more than
64 MiB, so every step page-faults and zeroes the whole cache again. Measured with perf on
the benchmark model (batch 32, 4 chains): 69% of CTranslate2's samples in the kernel (page
faults, clearing and unmapping pages); with the settings below 12%, most of it start-up,
and users/s 1.8x (batch 8) to 4.6x (batch 32) higher. The reference gains less (~1.2x).

The cost: a generation process keeps its peak heap until it exits. That is the shape of a
GPU job (one process per shard), not of a long-lived service that idles.
"""

from __future__ import annotations

import ctypes
import ctypes.util

# mallopt parameters, from glibc's malloc.h.
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
M_ARENA_MAX = -8
_NEVER_TRIM = 2**31 - 1  # the largest value mallopt's int accepts


def keep_freed_memory_for_reuse() -> bool:
    """One heap for all threads, no mmap-backed chunks, no trimming. False where the C library
    is not glibc (nothing changes there)."""
    library = ctypes.util.find_library("c")
    if library is None:
        return False
    libc = ctypes.CDLL(library)
    if not hasattr(libc, "mallopt"):
        return False
    return all(
        libc.mallopt(parameter, value) == 1
        for parameter, value in ((M_ARENA_MAX, 1), (M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, _NEVER_TRIM))
    )
