"""The OPC UA record source against a server that offers the record contract's method pair.

The server is a plain asyncua server playing an edge node's ``InferenceServer/Records``
object as sdk/monitor/records.py describes it (FetchRecords, AcknowledgeRecords), backed by
the in-memory queue of the ingest tests: what goes over the wire, in which order and with
which DataTypes, and the collection loop on top of it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from asyncua import Client, Server, ua

from gateway.monitor.ingest import RecordIngest
from gateway.monitor.store import MonitorStore
from gateway.opcua.record_link import OpcUaRecordSource, watch_ready
from nodesets.ids import MODELLINE_URI
from sdk.errors import ConnectionLost, NotFound
from tests.edge_harness import wait_for
from tests.opcua_servers import free_port
from tests.unit.gateway.monitor_fakes import FakeQueue, prediction

S, U64, U32, B = ua.VariantType.String, ua.VariantType.UInt64, ua.VariantType.UInt32, ua.VariantType.Boolean


def _arg(name: str, kind: ua.VariantType, rank: int = -1) -> ua.Argument:
    return ua.Argument(Name=name, DataType=ua.NodeId(kind.value), ValueRank=rank, ArrayDimensions=[])


async def _edge(queue: FakeQueue, garbage: dict[str, list[str]]) -> tuple[Server, str]:
    url = f"opc.tcp://127.0.0.1:{free_port()}/edge/"
    server = Server()
    await server.init()
    server.set_endpoint(url)
    ml = await server.register_namespace(MODELLINE_URI)
    inference = await server.nodes.objects.add_object(
        ua.NodeId("InferenceServer", ml), ua.QualifiedName("InferenceServer", ml)
    )
    records = await inference.add_object(ua.NodeId("Records", ml), ua.QualifiedName("Records", ml))
    await records.set_event_notifier([ua.EventNotifier.SubscribeToEvents])

    async def fetch(parent: ua.NodeId, stream: ua.Variant, after: ua.Variant, most: ua.Variant) -> list[ua.Variant]:
        assert (stream.VariantType, after.VariantType, most.VariantType) == (S, U64, U32)
        result = await queue.fetch(stream.Value, after.Value, most.Value)
        texts = [e.model_dump_json() for e in result.records]
        if not result.more_waiting:  # records that do not validate, at the end of the queue
            texts += garbage.pop(stream.Value, [])
        return [
            ua.Variant(result.queue_id, S),
            ua.Variant(texts, S),
            ua.Variant(result.last_sequence, U64),
            ua.Variant(result.more_waiting, B),
        ]

    async def acknowledge(parent: ua.NodeId, stream: ua.Variant, queue_id: ua.Variant, up_to: ua.Variant) -> list[Any]:
        return [ua.Variant(await queue.acknowledge(stream.Value, queue_id.Value, up_to.Value), U32)]

    await records.add_method(
        ua.NodeId("FetchRecords", ml),
        ua.QualifiedName("FetchRecords", ml),
        fetch,
        [_arg("Stream", S), _arg("AfterSequence", U64), _arg("MaxRecords", U32)],
        [_arg("QueueId", S), _arg("Records", S, 1), _arg("LastSequence", U64), _arg("MoreWaiting", B)],
    )
    await records.add_method(
        ua.NodeId("AcknowledgeRecords", ml),
        ua.QualifiedName("AcknowledgeRecords", ml),
        acknowledge,
        [_arg("Stream", S), _arg("QueueId", S), _arg("UpToSequence", U64)],
        [_arg("Removed", U32)],
    )
    await server.start()
    return server, url


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[MonitorStore]:
    async with MonitorStore.open(tmp_path / "monitor.sqlite3") as opened:
        yield opened


async def test_records_travel_over_opc_ua_once_and_unreadable_ones_are_skipped(store: MonitorStore) -> None:
    queue = FakeQueue(queue_id="7f3c")
    queue.add("main", *(prediction(i) for i in range(30)))
    garbage = {"main": ['{"sequence": 31, "record": {"kind": "nonsense"}}']}
    server, url = await _edge(queue, garbage)
    try:
        async with Client(url, timeout=10) as client:
            source = OpcUaRecordSource(client, "edge-a")
            ingest = RecordIngest("edge-a", source, store, lambda: ["main"], max_records=20)
            assert await ingest.collect_once() == 30
            assert queue.fetches[:2] == [("main", 0, 20), ("main", 20, 20)]
            assert queue.acks[-1] == ("main", "7f3c", 31)  # 31 was unreadable: skipped, counted, acknowledged
            assert ingest.stats["main"].unreadable == 1
            assert await store.sequences("edge-a", "main") == [("7f3c", n) for n in range(1, 31)]
    finally:
        await server.stop()


async def test_a_node_without_records_and_a_lost_link_are_clear_errors(store: MonitorStore) -> None:
    queue = FakeQueue()
    queue.add("main", prediction(1))
    server, url = await _edge(queue, {})
    try:
        async with Client(url, timeout=10) as client:
            source = OpcUaRecordSource(client, "edge-a")
            assert (await source.fetch("main", 0, 10)).queue_id == "q1"
            with pytest.raises(NotFound):
                await OpcUaRecordSource(client, "edge-a").method("NoSuchMethod")
            ingest = RecordIngest("edge-a", source, store, lambda: ["main"], poll_s=0.05, retry_cap_s=0.1)
            await server.stop()
            with pytest.raises(ConnectionLost):
                await source.fetch("main", 0, 10)
            task = asyncio.create_task(ingest.run())
            try:
                await wait_for(_failed(ingest), what="a failed round")
            finally:
                task.cancel()
            assert queue.acks == [] and await store.sequences("edge-a", "main") == []
    finally:
        await server.stop()


def _failed(ingest: RecordIngest) -> Any:
    async def check() -> bool:
        return bool(ingest.last_error)

    return check


async def test_a_records_ready_event_wakes_the_collection_before_its_poll(store: MonitorStore) -> None:
    queue = FakeQueue()
    server, url = await _edge(queue, {})
    try:
        async with Client(url, timeout=10) as client:
            ingest = RecordIngest("edge-a", OpcUaRecordSource(client, "edge-a"), store, lambda: ["main"], poll_s=120)
            sub = await watch_ready(client, "edge-a", ingest.wake)
            assert sub is not None
            task = asyncio.create_task(ingest.run())
            try:
                await wait_for(_rounds(ingest, 1), what="a first round")
                queue.add("main", prediction(1))
                ml = await server.get_namespace_index(MODELLINE_URI)
                records = server.get_node(ua.NodeId("Records", ml))
                ready = await server.get_event_generator(ua.ObjectIds.BaseEventType, records)
                await ready.trigger(message="records waiting")
                await wait_for(_rounds(ingest, 2), timeout=10, what="a round long before the 120 s poll")
            finally:
                task.cancel()
            assert queue.acks == [("main", "q1", 1)]
            await sub.delete()
    finally:
        await server.stop()


def _rounds(ingest: RecordIngest, n: int) -> Any:
    async def check() -> bool:
        return ingest.rounds >= n

    return check
