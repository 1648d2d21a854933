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

import gc
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
