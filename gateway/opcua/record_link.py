"""The OPC UA side of record collection: FetchRecords and AcknowledgeRecords on an edge node.

The calls are sdk/opcua/records_client.py's (the one client implementation of the record
contract, sdk/monitor/records.py, after OPC 40001-101 result management and DI
FetchTransferResultData, OPC 10000-100 §8.4.6), over the device link's session
(gateway/opcua/device_link.py); its ``fetch``/``acknowledge`` are the ``RecordSource`` shape
that gateway/monitor/ingest.py works with. ``watch_ready`` wakes the collection on RecordsReady.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from asyncua import Client, ua
from asyncua.common.subscription import Subscription

from nodesets.ids import MODELLINE_URI
from sdk.opcua.records_client import RecordsClient

_log = logging.getLogger(__name__)


class OpcUaRecordSource(RecordsClient):
    """An edge node's Records object, over an open session, as a gateway/monitor/ingest.py RecordSource."""


async def watch_ready(client: Client, device_id: str, on_ready: Callable[[], None]) -> Subscription | None:
    """Call ``on_ready`` on every event of the device's Records object (its RecordsReady event, the ResultReady
    of OPC 40001-101), through an event subscription (OPC 10000-4 5.12.1.4); None when the node offers none.

    The caller deletes the subscription; an event lost with a connection is made up for by polling."""
    ml = await client.get_namespace_index(MODELLINE_URI)
    try:
        records = await client.nodes.objects.get_child([f"{ml}:InferenceServer", f"{ml}:Records"])
    except ua.UaStatusCodeError:
        return None

    class Handler:
        def event_notification(self, event: Any) -> None:
            on_ready()

    sub = await client.create_subscription(500.0, Handler())
    try:
        await sub.subscribe_events(records)
    except ua.UaStatusCodeError as exc:
        _log.warning("device %s: no RecordsReady events (%s); polling only", device_id, exc)
        await sub.delete()
        return None
    return sub
