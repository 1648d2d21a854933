"""sdk.heap: the collector is off while a server builds its long-lived heap, which is then frozen until released;
freed malloc pages go back to the system."""

from __future__ import annotations

import gc
import subprocess
import sys
import weakref

import pytest

from sdk import heap


class _Cycle:
    def __init__(self) -> None:
        self.me = self


def test_the_heap_built_inside_is_frozen_until_released() -> None:
    assert gc.isenabled()
    gc.unfreeze()
    try:
        with heap.long_lived():
            assert not gc.isenabled()  # no automatic collection while the heap is built
            kept = [_Cycle() for _ in range(1000)]
            dropped = weakref.ref(_Cycle())  # garbage, in a cycle: only the collector frees it
        assert gc.isenabled()
        assert gc.get_freeze_count() >= len(kept)
        gc.collect()
        assert dropped() is not None  # frozen: skipped by every collection
        heap.release()
        assert gc.get_freeze_count() == 0
        gc.collect()
        assert dropped() is None  # collected as usual again
    finally:
        gc.unfreeze()
        gc.enable()


def test_a_failed_build_freezes_nothing_and_the_collector_runs_again() -> None:
    gc.unfreeze()
    try:
        with pytest.raises(RuntimeError), heap.long_lived():
            raise RuntimeError("the store could not be read")
        assert gc.isenabled()
        assert gc.get_freeze_count() == 0
    finally:
        gc.unfreeze()
        gc.enable()


def test_a_disabled_collector_stays_disabled() -> None:
    gc.disable()
    try:
        with heap.long_lived():
            pass
        assert not gc.isenabled()
    finally:
        gc.unfreeze()
        gc.enable()


_FREED_BUT_KEPT = """
import os, sys
from sdk import heap

def rss_mib():
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

heap.limit_arenas()
blocks = [bytearray(64 * 1024) for _ in range(3000)]  # ~190 MiB in chunks below malloc's mmap threshold
last = blocks[-1]  # keeps the heap's top: freeing the rest leaves free pages inside the heap
del blocks
before = rss_mib()
heap.trim()
print(before, rss_mib())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_trim_hands_freed_pages_back_to_the_system() -> None:
    done = subprocess.run([sys.executable, "-c", _FREED_BUT_KEPT], capture_output=True, text=True, check=True)
    before, after = map(float, done.stdout.split())
    assert before > 150 and after < before - 100, (before, after)
