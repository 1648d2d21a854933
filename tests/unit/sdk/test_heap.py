"""sdk.heap: the collector is off while a server builds its long-lived heap, which is then frozen until released."""

from __future__ import annotations

import gc
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
