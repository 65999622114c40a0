"""mgr.utils.allocator: after keep_freed_memory(), a large block freed and allocated again reuses
resident pages instead of page-faulting fresh ones in; MGR_KEEP_FREED_MEMORY=0 leaves glibc as it is."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

# Allocates and frees a 64 MB buffer twice; prints the page faults of the second allocation.
PROBE = """
import resource, sys
from mgr.utils.allocator import keep_freed_memory
print(keep_freed_memory())
bytearray(64 << 20)  # zero-filled, so every page is touched; freed at once
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
bytearray(64 << 20)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def probe(keep: str) -> tuple[str, int]:
    env = {**os.environ, "MGR_KEEP_FREED_MEMORY": keep}
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True).stdout
    taken, faults = out.split()
    return taken, int(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_memory_is_kept_and_the_setting_can_be_turned_off():
    pages = (64 << 20) // os.sysconf("SC_PAGE_SIZE")
    taken, faults = probe("1")
    assert taken == "True" and faults < pages // 10  # the heap's pages, already resident
    taken, faults = probe("0")
    assert taken == "False" and faults > pages // 2  # a fresh mmap: every page faulted in again
