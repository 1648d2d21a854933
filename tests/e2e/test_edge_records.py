"""The Model Monitor's records on a real edge node: fetched over OPC UA from a PLC-fed pipeline, acknowledged,
announced by RecordsReady events, with feedback by tag and part key, and kept across a SIGKILL."""

from __future__ import annotations

import asyncio
import json
import os
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from asyncua import Node, ua

from edge_node.app import EdgeNode
from sdk.di_client import SoftwareUpdateClient, set_binding
from sdk.errors import NotFound, QueueMismatch
from sdk.examples import example_dir
from sdk.monitor.records import LOG_STREAM, FeedbackRecord, LogRecord, PredictionRecord, RecordEnvelope
from sdk.monitor.statistics import PipelineStatistics
from sdk.opcua.records_client import FetchResult, acknowledge_records, fetch_records
from sdk.opcua.records_client import records_node as _records_node
from tests.conftest import Signer, _signer
from tests.edge_harness import HEALTHY, SimulatedPlc, build_pump, edge_settings, output_node, wait_for
from tests.opcua_servers import free_port
from tests.processes import ServerProcess
from tests.tls import Client

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

ML = "http://modelline.io/UA/"


def utc() -> datetime:
    return datetime.now(UTC)


Fetch = FetchResult


async def records_node(client: Client) -> Node:
    return (await _records_node(client))[0]


async def fetch(client: Client, stream: str, after: int = 0, max_records: int = 0) -> Fetch:
    return await fetch_records(client, stream, after, max_records)


async def fetch_all(client: Client, stream: str, after: int = 0) -> Fetch:
    """Page through with a small MaxRecords, as a collector does."""
    envelopes: list[RecordEnvelope] = []
    while True:
        page = await fetch(client, stream, after, 7)
        envelopes += page.records
        if page.records:
            after = page.records[-1].sequence
        if not page.more_waiting:
            return Fetch(page.queue_id, envelopes, page.last_sequence, False)


async def acknowledge(client: Client, stream: str, queue_id: str, up_to: int) -> int:
    return await acknowledge_records(client, stream, queue_id, up_to)


@dataclass
class Line:
    plc: SimulatedPlc
    node: EdgeNode
    client: Client
    feedback: Node
    part_key: Node

    @property
    def pipeline(self) -> Any:
        return self.node.slots["main"].pipeline

    async def bind(self, **extra: Any) -> None:
        binding = self.plc.binding(mode="tag", tag="speed") | extra
        await set_binding(self.client, "main", json.dumps(binding))

    async def settled(self) -> int:
        """Wait until every trigger was served and its record committed; the newest sequence committed."""

        def seen() -> tuple[int, int, int]:
            status = self.pipeline.status
            return status.inference_count, status.error_count, self.node.records.last_sequence("main")

        async def quiet() -> int | None:
            before = seen()
            await asyncio.sleep(0.5)  # more than the queue's write interval: anything buffered would show
            return before[2] if self.pipeline.idle and before[2] and seen() == before else None

        return await wait_for(quiet, what="all predictions recorded")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def line(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Line]:
    root = tmp_path_factory.mktemp("records")
    signer = _signer(root, "release")
    package = build_pump(example_dir(), signer, root / "pump.mlpkg").path
    plc = await SimulatedPlc().start()
    assert plc.server is not None
    pump = await plc.server.nodes.objects.get_child("2:Pump1")
    feedback = await pump.add_variable(
        ua.NodeId("Pump1.MeasuredLife", 2), "2:MeasuredLife", ua.Variant(0.0, ua.VariantType.Double)
    )
    part_key = await pump.add_variable(ua.NodeId("Pump1.Serial", 2), "2:Serial", ua.Variant("", ua.VariantType.String))
    await plc.write_all(HEALTHY)
    async with EdgeNode(edge_settings(root, signer.trust_dir)) as node, Client(node.url) as client:
        su = await SoftwareUpdateClient.find(client)
        await su.install(await su.transfer(package))
        line = Line(plc, node, client, feedback, part_key)
        await line.bind()
        yield line
    await plc.stop()


async def test_every_prediction_is_fetched_once_in_order(line: Line) -> None:
    # The module's first test: it compares every record since the node started with the node's counters.
    assert line.node.records.waiting("main") == line.node.records.last_sequence("main"), "records were acknowledged"
    for i in range(30):
        await line.plc.write("speed", 1400.0 + i)
        await asyncio.sleep(0.03)
    await line.plc.write("speed", 5000.0)  # outside the valid range: a Bad prediction, recorded too
    await asyncio.sleep(0.1)
    await line.plc.write("speed", 1475.0)
    last = await line.settled()

    fetched = await fetch_all(line.client, "main")
    sequences = [e.sequence for e in fetched.records]
    assert sequences == list(range(1, last + 1)) and fetched.last_sequence == last
    predictions = [e.record for e in fetched.records if isinstance(e.record, PredictionRecord)]
    status = line.pipeline.status
    assert len([p for p in predictions if p.status == 0]) == status.inference_count
    assert len([p for p in predictions if p.status != 0]) == status.error_count
    bad = [p for p in predictions if p.status == ua.StatusCodes.BadOutOfRange]
    assert bad and bad[-1].inputs["speed"] == 5000.0 and bad[-1].latency_ms == 0
    newest = predictions[-1]
    assert newest.status == 0 and newest.inputs == HEALTHY and newest.latency_ms > 0
    assert (newest.model, newest.version) == ("pump-health", "1.0.0")
    assert newest.configuration == status.configuration
    shown = await (await output_node(line.client, "main", "remaining_life")).read_value()
    assert newest.outputs["remaining_life"] == shown

    ml = await line.client.get_namespace_index(ML)
    statistics_node = await line.client.nodes.objects.get_child(
        [f"{ml}:InferenceServer", f"{ml}:Pipelines", "1:main", f"{ml}:Statistics"]
    )

    async def counted() -> PipelineStatistics | None:
        stats = PipelineStatistics.model_validate_json(await statistics_node.read_value())
        return stats if stats.inferences == len(predictions) else None

    stats = await wait_for(counted, what="Statistics to count every prediction")
    assert stats.bad_outputs == dict(Counter(f"0x{p.status:08X}" for p in predictions if p.status))
    assert stats.bad_outputs[f"0x{ua.StatusCodes.BadOutOfRange:08X}"] == len(bad)
    assert sum(stats.latency_counts) == status.inference_count and stats.p50_ms() is not None
    speed = stats.features["speed"]
    assert speed.out_of_range == len(bad)
    on_bins = [p for p in predictions if p.inputs.get("speed") is not None and p.inputs["speed"] != 5000.0]
    assert sum(speed.counts) + speed.below + speed.above == len(on_bins)
    assert sum(speed.counts) + speed.below + speed.above + speed.bad + speed.out_of_range == len(predictions)


async def test_acknowledge_deletes_and_numbering_goes_on(line: Line) -> None:
    await line.settled()
    before = await fetch_all(line.client, "main")
    assert before.records
    last = before.records[-1].sequence
    with pytest.raises(QueueMismatch):
        await acknowledge(line.client, "main", "not-this-queue", last)
    with pytest.raises(NotFound):
        await fetch(line.client, "no-such-pipeline")
    assert await acknowledge(line.client, "main", before.queue_id, last) == len(before.records)
    assert (await fetch(line.client, "main")).records == []
    await line.plc.write("speed", 1477.0)
    after = await line.settled()
    page = await fetch(line.client, "main", 0)
    assert [e.sequence for e in page.records] == list(range(last + 1, after + 1))
    count = await (await records_node(line.client)).get_child(f"{await _ml(line)}:RecordCount")
    waiting = len(page.records) + len((await fetch_all(line.client, LOG_STREAM)).records)

    async def shown() -> bool:
        return bool(await count.read_value() == waiting)

    await wait_for(shown, what="RecordCount to show the records of all streams")


async def _ml(line: Line) -> int:
    return await line.client.get_namespace_index(ML)


async def test_records_ready_event_reaches_a_subscriber(line: Line) -> None:
    ml = await _ml(line)
    records = await records_node(line.client)
    event_type = await line.client.nodes.root.get_child(
        ["0:Types", "0:EventTypes", "0:BaseEventType", f"{ml}:RecordsReadyEventType"]
    )
    received: asyncio.Queue[Any] = asyncio.Queue()

    class Handler:
        def event_notification(self, event: Any) -> None:
            received.put_nowait(event)

    sub = await line.client.create_subscription(100, Handler())
    try:
        await sub.subscribe_events(records, event_type)
        await line.plc.write("speed", 1478.0)
        last = await line.settled()

        async def announced() -> Any:
            while not received.empty():
                event = received.get_nowait()
                fields = event.get_event_props_as_fields_dict()
                if fields["Stream"].Value == "main" and fields["LastSequence"].Value == last:
                    return event
            return None

        await wait_for(announced, timeout=5, what="RecordsReady for the newest record")
    finally:
        await sub.delete()


async def test_feedback_tag_with_part_key(line: Line) -> None:
    await line.bind(
        feedback={"endpoint": line.plc.url, "node_id": "ns=2;s=Pump1.MeasuredLife"},
        part_key={"endpoint": line.plc.url, "node_id": "ns=2;s=Pump1.Serial"},
    )
    await line.part_key.write_value(ua.Variant("SN-0042", ua.VariantType.String))
    await asyncio.sleep(0.2)
    await line.plc.write("speed", 1479.0)
    await asyncio.sleep(0.2)
    await line.feedback.write_value(ua.Variant(812.5, ua.VariantType.Double))

    async def feedback() -> list[FeedbackRecord]:
        page = await fetch_all(line.client, "main")
        return [e.record for e in page.records if isinstance(e.record, FeedbackRecord) and e.record.value == 812.5]

    found = await wait_for(feedback, what="the feedback record")
    assert len(found) == 1 and found[0].part_key == "SN-0042"
    page = await fetch_all(line.client, "main")
    keyed = [e.record for e in page.records if isinstance(e.record, PredictionRecord) and e.record.part_key]
    assert keyed and keyed[-1].part_key == "SN-0042" and keyed[-1].inputs["speed"] == 1479.0
    assert line.pipeline.binding.problems_with(line.pipeline.model.manifest) == []

    # The next part measures the same result: written again (a new source time), it is a second result.
    await line.part_key.write_value(ua.Variant("SN-0043", ua.VariantType.String))
    await asyncio.sleep(0.2)
    await line.feedback.write_value(ua.DataValue(ua.Variant(812.5, ua.VariantType.Double), SourceTimestamp=utc()))

    async def both() -> list[FeedbackRecord] | None:
        records = await feedback()
        return records if len(records) == 2 else None

    again = await wait_for(both, what="the repeated result's feedback record")
    assert [r.part_key for r in again] == ["SN-0042", "SN-0043"]


async def test_warnings_of_the_node_go_to_the_log_stream(line: Line) -> None:
    import logging

    logging.getLogger("edge_node.test").warning("a warning for the record stream")

    async def logged() -> list[LogRecord]:
        page = await fetch_all(line.client, LOG_STREAM)
        return [
            e.record
            for e in page.records
            if isinstance(e.record, LogRecord) and e.record.message == "a warning for the record stream"
        ]

    found = await wait_for(logged, what="the log record")
    assert len(found) == 1 and found[0].logger == "edge_node.test" and found[0].level == "WARNING"


async def test_observer_may_fetch_but_not_acknowledge(tmp_path: Path, signer: Signer) -> None:
    settings = edge_settings(tmp_path, signer.trust_dir, anonymous_role="Observer")
    async with EdgeNode(settings) as node, Client(node.url) as client:
        node.records.append(LOG_STREAM, LogRecord(time=_now(), level="WARNING", logger="t", message="m"))
        await node.records.flush()
        page = await fetch(client, LOG_STREAM)
        assert page.records
        with pytest.raises(ua.UaStatusCodeError) as refused:
            await acknowledge(client, LOG_STREAM, page.queue_id, page.records[-1].sequence)
        assert refused.value.code == ua.StatusCodes.BadUserAccessDenied


def _now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)


# --- SIGKILL ----------------------------------------------------------------------------------------


@pytest.mark.timeout(180)
async def test_a_killed_edge_node_keeps_committed_records_and_never_reuses_a_sequence(
    tmp_path: Path, signer: Signer
) -> None:
    package = build_pump(example_dir(), signer, tmp_path / "pump.mlpkg").path
    plc = await SimulatedPlc().start()
    url = f"opc.tcp://127.0.0.1:{free_port()}/edge/"
    argv = ["edge", "--endpoint", url, "--data-dir", str(tmp_path / "edge"), "--trust", str(signer.trust_dir)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELLINE_") or k == "MODELLINE_CACHE_DIR"}
    edge = ServerProcess("edge", argv, tmp_path / "edge.log", env | {"MODELLINE_EDGE_ANONYMOUS_ROLE": "Engineer"})
    stored: dict[int, RecordEnvelope] = {}
    queue_ids: set[str] = set()
    writing = True

    async def plc_changes() -> None:
        value = 1400.0
        while writing:
            value = 1400.0 + (value - 1399.0) % 100
            await plc.write("speed", value)
            await asyncio.sleep(0.02)

    async def collect(client: Client) -> None:
        page = await fetch_all(client, "main", max(stored, default=0))
        queue_ids.add(page.queue_id)
        for envelope in page.records:
            assert envelope.sequence not in stored or stored[envelope.sequence] == envelope, "a sequence was reused"
            stored[envelope.sequence] = envelope

    try:
        await plc.write_all(HEALTHY)
        await edge.start(url)
        async with Client(url) as client:
            su = await SoftwareUpdateClient.find(client)
            await su.install(await su.transfer(package))
            await set_binding(client, "main", json.dumps(plc.binding()))
        changes = asyncio.create_task(plc_changes())
        for _ in range(2):
            async with Client(url) as client:
                await wait_for(lambda: _more_than(client, max(stored, default=0) + 20), what="records")
                await collect(client)  # fetched, not acknowledged
            await edge.kill()
            await edge.start(url)
        async with Client(url) as client:
            await wait_for(lambda: _more_than(client, max(stored, default=0) + 20), what="records after restart")
            writing = False
            await changes
            await asyncio.sleep(0.5)
            await collect(client)
            page = await fetch(client, "main", 0, 1)
            assert page.records[0].sequence == 1  # nothing acknowledged: nothing deleted
            assert await acknowledge(client, "main", page.queue_id, max(stored)) == len(stored)
    finally:
        writing = False
        await edge.kill()
        await plc.stop()
    assert len(queue_ids) == 1
    assert sorted(stored) == list(range(1, len(stored) + 1))  # no gap, no repeat, across two SIGKILLs
    times = [e.record.time for e in (stored[s] for s in sorted(stored)) if isinstance(e.record, PredictionRecord)]
    assert times == sorted(times)  # later sequence numbers are later predictions: none was issued twice


async def _more_than(client: Client, sequence: int) -> bool:
    try:
        return (await fetch(client, "main", 0, 1)).last_sequence > sequence
    except ua.UaError:
        return False


@pytest.mark.timeout(120)
async def test_a_full_queue_drops_the_oldest_and_counts_them(tmp_path: Path, signer: Signer) -> None:
    package = build_pump(example_dir(), signer, tmp_path / "pump.mlpkg").path
    plc = await SimulatedPlc().start()
    settings = edge_settings(tmp_path, signer.trust_dir, monitor_queue_max_records=100)
    try:
        await plc.write_all(HEALTHY)
        async with EdgeNode(settings) as node, Client(node.url) as client:
            su = await SoftwareUpdateClient.find(client)
            await su.install(await su.transfer(package))
            await set_binding(client, "main", json.dumps(plc.binding(mode="tag", tag="speed")))
            for i in range(160):
                await plc.write("speed", 1400.0 + i % 50)
                await asyncio.sleep(0.02)

            seen = {"last": -1}

            async def full_and_settled() -> bool:  # every write's prediction is in (a busy machine lags)
                last = node.records.last_sequence("main")
                settled, seen["last"] = last == seen["last"], last
                await asyncio.sleep(0.5)
                return settled and last > 130 and node.records.size == 100

            await wait_for(full_and_settled, timeout=30, what="a full queue that no longer grows")
            page = await fetch_all(client, "main")
            sequences = [e.sequence for e in page.records]
            dropped = node.records.dropped("main")
            assert dropped > 0 and sequences == list(range(dropped + 1, page.last_sequence + 1))  # the newest kept
            records = await records_node(client)
            shown = await records.get_child(f"{await client.get_namespace_index(ML)}:DroppedRecords")

            async def counted() -> bool:
                total = sum(node.records.dropped(s) for s in node.records.streams)
                return bool(await shown.read_value() == total >= dropped)

            await wait_for(counted, what="DroppedRecords to show the drops")
        async with EdgeNode(settings) as node:  # the counter is kept across a restart (and grows: the queue is full)
            assert node.records.dropped("main") >= dropped
    finally:
        await plc.stop()
