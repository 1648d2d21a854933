"""A collector's side of the record contract (sdk.monitor.records): FetchRecords and AcknowledgeRecords on
an edge node's ``InferenceServer/Records``, from any asyncua client.

A collector loops: ``fetch_records(after=<newest sequence it stored>)``, stores the
envelopes idempotently by (device, QueueId, stream, sequence), commits, then
``acknowledge_records(up_to=<newest sequence stored>)``; ``QueueMismatch`` means the
node's queue was created anew, so it starts again from 0 with the new QueueId.
"""

from __future__ import annotations

from dataclasses import dataclass

from asyncua import Client, Node, ua

from nodesets.ids import MODELLINE_URI
from sdk.errors import NotFound, QueueMismatch
from sdk.monitor.records import RecordEnvelope


@dataclass(frozen=True)
class FetchResult:
    """What one FetchRecords call returned."""

    queue_id: str
    envelopes: list[RecordEnvelope]
    last_sequence: int  # the newest sequence committed in the stream (0: none yet)
    more_waiting: bool


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


async def fetch_records(client: Client, stream: str, after: int = 0, max_records: int = 0) -> FetchResult:
    """Records of ``stream`` after sequence ``after`` (at most ``max_records``; 0: the node's limit)."""
    node, ml = await records_node(client)
    try:
        queue_id, records, last, more = await node.call_method(
            f"{ml}:FetchRecords",
            ua.Variant(stream, ua.VariantType.String),
            ua.Variant(after, ua.VariantType.UInt64),
            ua.Variant(max_records, ua.VariantType.UInt32),
        )
    except ua.UaStatusCodeError as exc:
        raise _typed(exc, stream) from None
    envelopes = [RecordEnvelope.model_validate_json(r) for r in records or []]
    return FetchResult(str(queue_id), envelopes, int(last), bool(more))


async def acknowledge_records(client: Client, stream: str, queue_id: str, up_to: int) -> int:
    """Let the node delete the records of ``stream`` up to ``up_to``; how many it deleted."""
    node, ml = await records_node(client)
    try:
        removed = await node.call_method(
            f"{ml}:AcknowledgeRecords",
            ua.Variant(stream, ua.VariantType.String),
            ua.Variant(queue_id, ua.VariantType.String),
            ua.Variant(up_to, ua.VariantType.UInt64),
        )
    except ua.UaStatusCodeError as exc:
        raise _typed(exc, stream) from None
    return int(removed)
