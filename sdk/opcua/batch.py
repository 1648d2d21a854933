"""Writing several server variables as one change: a subscriber gets them in one notification, never half of them.

asyncua notifies per write: each write of a Value runs the data change callback of every monitored item of that
node, which queues a notification in its subscription. A subscription with a publishing timer sends what is queued
at its next cycle, and since no write in a batch waits for anything, the whole batch is queued before the next
cycle runs. A subscription at publishing interval 0 (no timer: OPC 10000-4 5.13.2.2 leaves the fastest supported
interval to the server, and asyncua's is "at once") publishes from inside the callback of the first queued item,
so the items written after it would follow in later Publish responses. ``write_together`` holds the immediate
publishing of those subscriptions until every value of the batch is queued, then lets each publish once.

The values are written through asyncua's own address space write (type check, Bad status -> null value, data
change callbacks), one after the other with nothing awaited in between, so a Read never sees half a batch either.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from asyncua import Server, ua


async def _held() -> None:
    """Stands in for a subscription's immediate publish while a batch is written."""


async def write_together(server: Server, writes: Sequence[tuple[ua.NodeId, ua.DataValue]]) -> None:
    """Write each (node, value) to the Value attribute; subscribers see them in one notification."""
    aspace = server.iserver.aspace
    held: list[Any] = []
    for nodeid, _ in writes:
        node = aspace.get(nodeid)
        attribute = node.attributes.get(ua.AttributeIds.Value) if node is not None else None
        if attribute is None:
            continue
        for callback in attribute.datachange_callbacks.values():
            # MonitoredItemService.datachange_callback, bound: its subscription publishes at once if it has no timer.
            sub = getattr(getattr(callback, "__self__", None), "isub", None)
            if sub is not None and getattr(sub, "_task", True) is None and "_trigger_publish" not in vars(sub):
                sub._trigger_publish = _held
                held.append(sub)
    try:
        for nodeid, value in writes:
            await aspace.write_attribute_value(nodeid, ua.AttributeIds.Value, value)
    finally:
        for sub in held:
            del sub._trigger_publish
    for sub in held:
        publish: Callable[[], Awaitable[None]] = sub._trigger_publish
        await publish()
