"""A server's start builds a large heap that lives as long as the process: the cyclic collector is kept off it.

A gateway with 1,000 stored versions and 500 devices holds ~1.1 million tracked objects once its address
space is built (a NodeData, an attribute dict and a dozen AttributeValues and DataValues per node). While
they are made, CPython's collector (3.11) runs a young collection every 700 allocations and a full one each
time the heap grew by a quarter, examining every object made so far: 1.3 s of a 2.3 s start. After the start
each full collection examines them all again (~0.45 s on the event loop, a latency spike for every client).
None of them is garbage: they are freed, when a node is deleted, by reference counting.

``long_lived()`` stops automatic collection while the start builds that heap and then moves everything made
so far to the collector's permanent generation (``gc.freeze``), which later collections skip; ``release()``
(when the server stops) puts it back under the collector, so that a process that starts servers again and
again (the tests) frees what each left behind. Objects made after the start are collected as usual.
Cyclic garbage made during the start, before the freeze, stays until ``release()`` (a few thousand objects:
the young generations are collected just before the collector is stopped).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import sys
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def long_lived() -> Iterator[None]:
    """No automatic collection inside; on a normal exit, everything tracked so far is frozen."""
    enabled = gc.isenabled()
    gc.collect(1)  # the young generations' garbage, before it would be frozen with the rest
    gc.disable()
    try:
        yield
        gc.freeze()
    finally:
        if enabled:
            gc.enable()


def release() -> None:
    """Put the frozen objects back under the collector (they are examined again by the next full collection)."""
    gc.unfreeze()


# glibc's malloc (Linux): mallopt(M_ARENA_MAX) and malloc_trim. Elsewhere both do nothing.
_M_ARENA_MAX = -8
_ARENAS = 2


@functools.cache
def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt, libc.malloc_trim  # noqa: B018 - glibc has both; musl has no malloc_trim
    except (OSError, AttributeError):
        return None
    return libc


def limit_arenas() -> None:
    """At most two malloc arenas for the process's threads (before it starts its worker threads).

    glibc gives each thread that allocates under contention an arena of its own, up to eight per core, and
    keeps what was freed in each for reuse: the worker threads that read, hash and write package chunks
    (1 MiB each, many transfers at once) left tens of MiB of a gateway's RSS in idle arenas after a rollout."""
    libc = _libc()
    if libc is not None:
        libc.mallopt(_M_ARENA_MAX, _ARENAS)


def trim() -> None:
    """Hand the heap's free pages back to the system (glibc malloc_trim), e.g. after a rollout's transfers.

    Takes milliseconds with the allocator locked: call it in a worker thread, at the end of large work."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)
