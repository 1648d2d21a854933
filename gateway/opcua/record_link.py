"""The OPC UA side of record collection: FetchRecords and AcknowledgeRecords on an edge node.

A thin adapter over the device link's session (gateway/opcua/device_link.py): it
finds ``Objects/<ml>:InferenceServer/<ml>:Records`` and its two methods by browse
name, reads their InputArguments once to send each argument with the declared
DataType, and turns the answers into the ``RecordSource`` shape that
gateway/monitor/ingest.py works with. The contract is sdk/monitor/records.py
(after OPC 40001-101 result management and DI FetchTransferResultData,
OPC 10000-100 §8.4.6).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from asyncua import Client, Node, ua
from asyncua.common.subscription import Subscription
from pydantic import ValidationError

from gateway.monitor.ingest import FetchResult
from nodesets.ids import MODELLINE_URI
from sdk.di_client import during
from sdk.errors import InvalidState, NotFound
from sdk.monitor.records import RecordEnvelope
from sdk.opcua.methods import ArgumentSpec, read_signature

_log = logging.getLogger(__name__)

_PREFERRED = (ua.VariantType.UInt64, ua.VariantType.UInt32, ua.VariantType.Int64, ua.VariantType.String)


def _variant(spec: ArgumentSpec, value: Any) -> ua.Variant:
    """``value`` as the declared DataType wants it (UInt64 for a sequence, UInt32 for a count...)."""
    kinds = [k for k in _PREFERRED if k in spec.kinds] or sorted(spec.kinds, key=lambda k: k.value)
    return ua.Variant(value, kinds[0])


class OpcUaRecordSource:
    """An edge node's Records object, over an open session."""

    def __init__(self, client: Client, device_id: str) -> None:
        self._client = client
        self._device = device_id
        self._methods: dict[str, tuple[Node, list[ArgumentSpec]]] = {}
        self._records: Node | None = None

    async def _method(self, name: str) -> tuple[Node, Node, list[ArgumentSpec]]:
        if self._records is None or name not in self._methods:
            ml = await self._client.get_namespace_index(MODELLINE_URI)
            try:
                records = await self._client.nodes.objects.get_child([f"{ml}:InferenceServer", f"{ml}:Records"])
                method = await records.get_child(f"{ml}:{name}")
            except ua.UaStatusCodeError:
                raise NotFound(f"device {self._device} offers no InferenceServer/Records/{name}") from None
            self._records = records
            self._methods[name] = (method, await read_signature(method))
        method, signature = self._methods[name]
        return self._records, method, signature

    async def _call(self, name: str, *values: Any) -> list[Any]:
        records, method, signature = await self._method(name)
        if len(signature) != len(values):
            raise InvalidState(f"device {self._device}: {name} takes {len(signature)} arguments, not {len(values)}")
        args = [_variant(spec, value) for spec, value in zip(signature, values, strict=True)]
        async with during(name):
            out = await records.call_method(method.nodeid, *args)
        return out if isinstance(out, list) else [out]

    async def fetch(self, stream: str, after: int, max_records: int) -> FetchResult:
        """FetchRecords(Stream, AfterSequence, MaxRecords) -> (QueueId, Records, LastSequence, MoreWaiting)."""
        queue_id, texts, last, more = await self._call("FetchRecords", stream, after, max_records)
        records: list[RecordEnvelope] = []
        unreadable: list[int] = []
        for text in texts or []:
            try:
                records.append(RecordEnvelope.model_validate_json(text or ""))
            except ValidationError as exc:
                sequence = _sequence_of(text)
                if sequence is None:
                    raise InvalidState(f"device {self._device}: a record of stream {stream!r} has no sequence") from exc
                _log.error("device %s stream %r record %d unreadable, skipped: %s", self._device, stream, sequence, exc)
                unreadable.append(sequence)
        return FetchResult(str(queue_id or ""), records, int(last or 0), bool(more), unreadable)

    async def acknowledge(self, stream: str, queue_id: str, up_to: int) -> int:
        """AcknowledgeRecords(Stream, QueueId, UpToSequence) -> (Removed)."""
        (removed,) = await self._call("AcknowledgeRecords", stream, queue_id, up_to)
        return int(removed or 0)


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


def _sequence_of(text: str | None) -> int | None:
    try:
        sequence = json.loads(text or "").get("sequence")
    except (ValueError, AttributeError):
        return None
    return sequence if isinstance(sequence, int) and sequence >= 1 else None
