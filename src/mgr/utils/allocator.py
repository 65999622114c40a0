"""Keep freed memory in the process's heap (glibc), so CPU training does not page-fault its
activations in again at every step.

glibc's malloc serves every block above its mmap threshold (at most 32 MiB) with a fresh mmap and
hands it back to the kernel when freed. A CPU training step allocates and frees activations larger
than that (a batch of 32 cnn feature maps on 128 mel bands is 68 MB) at every step, and the kernel
zero-fills their pages again each time. On the 2-core test machine a third of the CPU time went to
the kernel, and cnn trained 2.5x slower (7.5 against 18.9 chunks/s; benchmarks/RESULTS.md). jemalloc
and tcmalloc, which PyTorch recommends for CPU training, keep such memory; this asks glibc to do the
same: no mmap for blocks, and no trimming of the heap below 1 GiB. The price is that the process
keeps its peak memory. MGR_KEEP_FREED_MEMORY=0 leaves the allocator as it is.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import sys

M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # mallopt parameters of glibc's malloc.h
TRIM_THRESHOLD = 1 << 30


@functools.cache
def keep_freed_memory() -> bool:
    """Set once per process by every entry point; True when glibc took the settings."""
    if os.environ.get("MGR_KEEP_FREED_MEMORY", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):  # another C library (musl): nothing to set
        return False
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
