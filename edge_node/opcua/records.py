"""The record queue as OPC UA: ``InferenceServer/Records`` (ModelLine RecordSourceType) and its events.

FetchRecords and AcknowledgeRecords follow the method pair of OPC 40001-101
(result management: a result transfer with acknowledgement) and DI's
FetchTransferResultData (OPC 10000-100 8.4.6): the caller pages through with
the sequence it last stored. The contract is in sdk/monitor/records.py.
Observer may fetch (it changes nothing); acknowledging deletes data and needs
Operator (OPC 10000-3 4.9.2 well-known roles).

RecordsReadyEventType (a BaseEventType subtype, OPC 10000-5 6.4.2) is raised on
the Records object, whose EventNotifier is SubscribeToEvents, and on the Server
object, which has a HasNotifier reference to it (OPC 10000-3 7.16), so a client
subscribed to either gets it: at most once a second per stream while new
records wait, and again every ``REPEAT_S`` while unacknowledged records wait.
"""

from __future__ import annotations

import asyncio
import logging

from asyncua import Node, Server, ua
from asyncua.common.event_objects import BaseEvent

from edge_node.monitor.queue import RecordQueue
from nodesets import Namespaces
from nodesets.ids import ModelLine
from sdk.cancel import honour_cancel
from sdk.opcua.ids import delete_subtree, node_id
from sdk.opcua.methods import bind_method
from sdk.opcua.status import status_on_error
from sdk.opcua.users import Role, requires
from sdk.opcua.values import new_instance

_log = logging.getLogger(__name__)

READY_PERIOD_S = 1.0
REPEAT_S = 30.0


class RecordNodes:
    """Records object of the inference server over one RecordQueue."""

    def __init__(self, server: Server, node: Node, queue: RecordQueue) -> None:
        self.server = server
        self.node = node
        self.queue = queue
        self._vars: dict[str, Node] = {}
        self._events: list[tuple[BaseEvent, object]] = []
        self._shown: dict[str, int] = {}
        self._announced: dict[str, tuple[int, float]] = {}  # stream -> (last sequence announced, when)

    @classmethod
    async def create(cls, server: Server, ns: Namespaces, inference_server: Node, queue: RecordQueue) -> RecordNodes:
        """Bind the methods and the event generators of ``<inference_server>/Records``."""
        declared = await inference_server.get_child(f"{ns.modelline}:Records")
        # The InferenceServerType declares Records without its type's children; instantiate it from
        # RecordSourceType itself, at the same NodeId and BrowseName.
        nodeid, bname = declared.nodeid, await declared.read_browse_name()
        await delete_subtree(declared)
        node = await new_instance(
            inference_server,
            server.get_node(node_id(ModelLine.RECORD_SOURCE_TYPE, ns.modelline)),
            nodeid=nodeid,
            bname=bname,
        )
        self = cls(server, node, queue)
        for child in await node.get_children():
            self._vars[str((await child.read_browse_name()).Name)] = child
        await bind_method(server, self._vars["FetchRecords"], self._fetch)
        await bind_method(server, self._vars["AcknowledgeRecords"], self._acknowledge)
        await self._vars["Streams"].write_value(ua.Variant(queue.streams, ua.VariantType.String))
        await self._vars["QueueId"].write_value(ua.Variant(queue.queue_id, ua.VariantType.String))
        await self._show_counts()
        event_type = server.get_node(node_id(ModelLine.RECORDS_READY_EVENT_TYPE, ns.modelline))
        await server.nodes.server.add_reference(node.nodeid, ua.ObjectIds.HasNotifier, forward=True)
        for emitter in (node, server.nodes.server):
            generator = await server.get_event_generator(event_type, emitter.nodeid)
            generator.event.SourceNode = node.nodeid
            generator.event.SourceName = "Records"
            generator.event.Severity = 100
            # asyncua takes each field's type from the type's property value, which a NodeSet leaves null.
            generator.event.add_property("Stream", "", ua.VariantType.String)
            generator.event.add_property("LastSequence", 0, ua.VariantType.UInt64)
            self._events.append((generator.event, generator))
        return self

    async def _show_counts(self) -> None:
        dropped = sum(self.queue.dropped(s) for s in self.queue.streams)
        for name, value in (("RecordCount", self.queue.size), ("DroppedRecords", dropped)):
            if self._shown.get(name) != value:  # a subscriber is told of changes only
                await self._vars[name].write_value(ua.Variant(value, ua.VariantType.UInt64))
                self._shown[name] = value

    @status_on_error
    @requires(Role.OBSERVER)
    async def _fetch(
        self, parent: ua.NodeId, stream: ua.Variant, after: ua.Variant, max_records: ua.Variant
    ) -> list[ua.Variant]:
        fetched = await self.queue.fetch(stream.Value or "", int(after.Value), int(max_records.Value))
        return [
            ua.Variant(fetched.queue_id, ua.VariantType.String),
            ua.Variant(fetched.envelopes, ua.VariantType.String, is_array=True),
            ua.Variant(fetched.last_sequence, ua.VariantType.UInt64),
            ua.Variant(fetched.more_waiting, ua.VariantType.Boolean),
        ]

    @status_on_error
    @requires(Role.OPERATOR)
    async def _acknowledge(
        self, parent: ua.NodeId, stream: ua.Variant, queue_id: ua.Variant, up_to: ua.Variant
    ) -> list[ua.Variant]:
        removed = await self.queue.acknowledge(stream.Value or "", queue_id.Value or "", int(up_to.Value))
        await self._show_counts()
        return [ua.Variant(removed, ua.VariantType.UInt64)]

    async def run(self) -> None:
        """Raise RecordsReady when records wait (at most once a second per stream) and keep the counts shown."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(READY_PERIOD_S)
            honour_cancel()
            await self._show_counts()
            for stream in self.queue.streams:
                last = self.queue.last_sequence(stream)
                if not self.queue.waiting(stream):
                    continue
                announced, when = self._announced.get(stream, (0, 0.0))
                if last != announced or loop.time() - when >= REPEAT_S:
                    self._announced[stream] = (last, loop.time())
                    await self._raise(stream, last)

    async def _raise(self, stream: str, last: int) -> None:
        for event, generator in self._events:
            event.Stream = stream  # type: ignore[attr-defined]
            event.LastSequence = last  # type: ignore[attr-defined]
            event.Message = ua.LocalizedText(  # type: ignore[attr-defined]
                f"records wait in stream {stream!r} up to sequence {last}"
            )
            await generator.trigger()  # type: ignore[attr-defined]
