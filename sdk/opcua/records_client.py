"""A collector's side of the record contract (sdk.monitor.records): FetchRecords and AcknowledgeRecords on
an edge node's ``InferenceServer/Records``, from any asyncua client. The gateway's collection
(gateway/opcua/record_link.py) and the tests use this one implementation.

A collector loops: ``fetch(after=<newest sequence it stored>)``, stores the envelopes
idempotently by (device, QueueId, stream, sequence), commits, then ``acknowledge(up_to=<newest
sequence stored>)``; ``QueueMismatch`` means the node's queue was created anew, so it starts
again from 0 with the new QueueId. The shapes follow OPC 40001-101 result management and DI's
FetchTransferResultData (OPC 10000-100 §8.4.6).

Each argument is sent with the DataType the method's InputArguments declare (read once per
session: UInt64 for a sequence, UInt32 for a count), so a node that declares a narrower or wider
integer still gets what it asked for (OPC 10000-4 5.11.2: a wrong type is Bad_TypeMismatch).
A returned record that does not validate is reported by its sequence in ``unreadable`` (it is
skipped and acknowledged: waiting for it would stop the stream for good), or refused when it
has no sequence either. A lost link is ``ConnectionLost``.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from asyncua import Client, Node, ua
from pydantic import ValidationError

from nodesets.ids import MODELLINE_URI
from sdk.di_client import during
from sdk.errors import InvalidState, NotFound, QueueMismatch
from sdk.monitor.records import FetchResult, RecordEnvelope
from sdk.opcua.methods import ArgumentSpec, read_signature

__all__ = ["FetchResult", "RecordsClient", "acknowledge_records", "fetch_records", "records_node"]

_log = logging.getLogger(__name__)

_PREFERRED = (ua.VariantType.UInt64, ua.VariantType.UInt32, ua.VariantType.Int64, ua.VariantType.String)


def _variant(spec: ArgumentSpec, value: Any) -> ua.Variant:
    """``value`` as the declared DataType wants it (UInt64 for a sequence, UInt32 for a count...)."""
    kinds = [k for k in _PREFERRED if k in spec.kinds] or sorted(spec.kinds, key=lambda k: k.value)
    return ua.Variant(value, kinds[0])


async def records_node(client: Client) -> tuple[Node, int]:
    """The edge node's ``InferenceServer/Records`` object, and the ModelLine namespace index."""
    ml = await client.get_namespace_index(MODELLINE_URI)
    return await client.nodes.objects.get_child([f"{ml}:InferenceServer", f"{ml}:Records"]), ml


def _typed(exc: ua.UaStatusCodeError, stream: str) -> Exception:
    if exc.code == ua.StatusCodes.BadInvalidState:
        return QueueMismatch(f"the record queue was created anew: fetch stream {stream!r} again from 0")
    if exc.code == ua.StatusCodes.BadNotFound:
        return NotFound(f"the edge node has no record stream {stream!r}")
    return exc


class RecordsClient:
    """One edge node's Records object, over an open session; finds its methods once."""

    def __init__(self, client: Client, device: str = "the edge node") -> None:
        self._client = client
        self._device = device
        self._methods: dict[str, tuple[Node, list[ArgumentSpec]]] = {}
        self._records: Node | None = None

    async def method(self, name: str) -> tuple[Node, Node, list[ArgumentSpec]]:
        """The Records object, its method ``name`` and that method's InputArguments."""
        if self._records is None or name not in self._methods:
            try:
                records, ml = await records_node(self._client)
                method = await records.get_child(f"{ml}:{name}")
            except ua.UaStatusCodeError:
                raise NotFound(f"device {self._device} offers no InferenceServer/Records/{name}") from None
            self._records = records
            self._methods[name] = (method, await read_signature(method))
        method, signature = self._methods[name]
        return self._records, method, signature

    async def _call(self, name: str, stream: str, *values: Any) -> list[Any]:
        records, method, signature = await self.method(name)
        values = (stream, *values)
        if len(signature) != len(values):
            raise InvalidState(f"device {self._device}: {name} takes {len(signature)} arguments, not {len(values)}")
        args = [_variant(spec, value) for spec, value in zip(signature, values, strict=True)]
        try:
            async with during(name):
                out = await records.call_method(method.nodeid, *args)
        except ua.UaStatusCodeError as exc:
            raise _typed(exc, stream) from None
        return out if isinstance(out, list) else [out]

    async def fetch(self, stream: str, after: int = 0, max_records: int = 0) -> FetchResult:
        """FetchRecords(Stream, AfterSequence, MaxRecords) -> (QueueId, Records, LastSequence, MoreWaiting);
        ``max_records`` 0: the node's limit."""
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
        """AcknowledgeRecords(Stream, QueueId, UpToSequence) -> (Removed): let the node delete the records of
        ``stream`` up to ``up_to``; how many it deleted."""
        (removed,) = await self._call("AcknowledgeRecords", stream, queue_id, up_to)
        return int(removed or 0)


async def fetch_records(client: Client, stream: str, after: int = 0, max_records: int = 0) -> FetchResult:
    """Records of ``stream`` after sequence ``after`` (at most ``max_records``; 0: the node's limit)."""
    return await RecordsClient(client).fetch(stream, after, max_records)


async def acknowledge_records(client: Client, stream: str, queue_id: str, up_to: int) -> int:
    """Let the node delete the records of ``stream`` up to ``up_to``; how many it deleted."""
    return await RecordsClient(client).acknowledge(stream, queue_id, up_to)


def _sequence_of(text: str | None) -> int | None:
    try:
        sequence = json.loads(text or "").get("sequence")
    except (ValueError, AttributeError):
        return None
    return sequence if isinstance(sequence, int) and sequence >= 1 else None
