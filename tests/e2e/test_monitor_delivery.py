"""Every record arrives exactly once: real gateway and edge node processes, stopped, killed and cut off mid-stream.

A simulated PLC changes its tags every 100 ms; the edge node (`modelline edge`) predicts on each
change of one of them with a model the gateway (`modelline gateway`) deployed, and the gateway collects the
records through a fault proxy (tests/faultproxy.py). While the PLC keeps changing, the link is
reset and black-holed mid-collection, the gateway is stopped and started, the edge node is
SIGKILLed and started, and both are killed and started. At the end the edge node's queue is
drained (RecordCount 0) and monitor.sqlite3, read with the gateway stopped, must hold every
(QueueId, stream, sequence) from 1 to the edge node's LastSequence exactly once.

What the contract makes exact, and what not: sequences are gapless and stored once, exactly
(the queue reissues the sequence numbers of a buffer a SIGKILL lost, so no gap appears). The
edge node's Statistics are saved with the record writes but as a snapshot of up to a second
before, so after a SIGKILL its inference count may fall short of the records written in that
last second: the stored count is at least the edge's count and at most ``PER_KILL`` more per
SIGKILL of the edge node (10 predictions a second, a 1 s statistics period and a 0.2 s buffer).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import sqlite3
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from asyncua import ua

from edge_node.app import EdgeNode
from gateway.app import Gateway
from nodesets.ids import DeploymentState
from sdk.di_client import SoftwareUpdateClient, set_binding
from sdk.file_client import upload
from sdk.monitor.records import LOG_STREAM
from sdk.opcua.records_client import fetch_records
from tests.conftest import Signer
from tests.e2e.test_rollout_restarts import _deploy, _deployment, _env
from tests.edge_harness import HEALTHY, SimulatedPlc, build_pump, edge_settings, running_plc, wait_for
from tests.faultproxy import FaultProxy
from tests.opcua_servers import free_port
from tests.processes import ServerProcess
from tests.tls import Client, GatewaySettings

pytestmark = pytest.mark.e2e

ML = "http://modelline.io/UA/"
DEVICE = "edge-a"
ANSWER = 8000  # bytes: a FetchRecords answer with a page of records; the session's other answers are smaller
PER_KILL = 20  # predictions of the last ~1.5 s before a SIGKILL the edge node's statistics may not have counted


@dataclass
class Plant:
    """A gateway process, an edge node process behind a fault proxy, and a PLC whose tags keep changing."""

    root: Path
    gateway: ServerProcess
    gateway_url: str
    edge: ServerProcess
    edge_url: str
    proxy: FaultProxy
    plc: SimulatedPlc
    changing: bool = True

    @property
    def monitor_db(self) -> Path:
        return self.root / "gateway" / "monitor.sqlite3"

    async def drive(self) -> None:
        """New, plausible values every 100 ms (a healthy pump with noise) until ``changing`` is cleared."""
        rng = random.Random(1)
        while self.changing:
            await self.plc.write_all({k: v * (1 + rng.uniform(-0.02, 0.02)) for k, v in HEALTHY.items()})
            await asyncio.sleep(0.1)

    def cursor(self, stream: str = "main") -> tuple[str, int, int]:
        """(QueueId, last sequence, gaps) the gateway stored for the stream (read-only: it may be running)."""
        if not self.monitor_db.exists():
            return ("", 0, 0)
        with contextlib.closing(sqlite3.connect(f"file:{self.monitor_db}?mode=ro", uri=True)) as db:
            rows = db.execute(
                "SELECT queue_id, last_sequence, gaps FROM cursors WHERE device = ? AND stream = ?", (DEVICE, stream)
            ).fetchall()
        return (str(rows[0][0]), int(rows[0][1]), int(rows[0][2])) if rows else ("", 0, 0)

    async def collected_more(self, records: int = 20, timeout: float = 40) -> None:
        """Wait until the gateway stored ``records`` more of stream main than it has now."""
        start = self.cursor()[1]

        async def more() -> bool:
            return self.cursor()[1] >= start + records

        await wait_for(more, timeout=timeout, what=f"the gateway to collect {records} more records after {start}")

    async def edge_view(self) -> dict[str, Any]:
        """What the edge node says: LastSequence per stream, RecordCount, DroppedRecords, main's Statistics."""
        async with Client(self.edge_url, timeout=5) as client:
            ml = await client.get_namespace_index(ML)
            server = await client.nodes.objects.get_child(f"{ml}:InferenceServer")
            records = await server.get_child(f"{ml}:Records")
            view: dict[str, Any] = {
                name: int(await (await records.get_child(f"{ml}:{name}")).read_value())
                for name in ("RecordCount", "DroppedRecords")
            }
            for stream in ("main", LOG_STREAM):
                fetched = await fetch_records(client, stream, 0, 1)
                view[f"last {stream}"], view[f"queue {stream}"] = fetched.last_sequence, fetched.queue_id
            pipelines = await server.get_child(f"{ml}:Pipelines")
            for pipeline in await pipelines.get_children():
                if (await pipeline.read_browse_name()).Name == "main":
                    statistics = await (await pipeline.get_child(f"{ml}:Statistics")).read_value()
                    view["statistics"] = json.loads(statistics)
            return view

    async def drained(self) -> dict[str, Any]:
        """Stop the PLC's changes and wait until the edge node's queue is empty and the gateway has it all."""
        self.changing = False

        async def empty() -> dict[str, Any] | None:
            try:
                view = await self.edge_view()
            except (OSError, TimeoutError, ua.UaError):
                return None
            settled = view["RecordCount"] == 0 and self.cursor()[1] == view["last main"] > 0
            return view if settled else None

        await wait_for(empty, timeout=60, what="the edge node's queue to drain into the gateway")
        await asyncio.sleep(1.5)  # statistics are written with the records at most 1 s after they change
        return await wait_for(empty, timeout=30, what="the edge node's queue to stay drained")


@asynccontextmanager
async def plant(tmp_path: Path, signer: Signer, example: Path, **edge_env: str) -> AsyncIterator[Plant]:
    gateway_url = f"opc.tcp://127.0.0.1:{free_port()}/gateway/"
    edge_url = f"opc.tcp://127.0.0.1:{free_port()}/edge/"
    gateway = ServerProcess(
        "gateway",
        [
            "gateway",
            "--endpoint",
            gateway_url,
            "--data-dir",
            str(tmp_path / "gateway"),
            "--trust",
            str(signer.trust_dir),
        ],
        tmp_path / "gateway.log",
        _env(
            MODELLINE_GATEWAY_ANONYMOUS_ROLE="Engineer",
            MODELLINE_GATEWAY_MONITOR_POLL_S="0.5",
            MODELLINE_GATEWAY_MONITOR_MAX_RECORDS="50",  # several fetches per round: a fault lands between them
            MODELLINE_GATEWAY_DEVICE_PROBE_S="3",
            MODELLINE_GATEWAY_DEVICE_CALL_TIMEOUT_S="10",
        ),
    )
    edge = ServerProcess(
        "edge",
        ["edge", "--endpoint", edge_url, "--data-dir", str(tmp_path / "edge"), "--trust", str(signer.trust_dir)],
        tmp_path / "edge.log",
        _env(MODELLINE_EDGE_ANONYMOUS_ROLE="Engineer", MODELLINE_EDGE_DEVICE_ID=DEVICE, **edge_env),
    )
    package = build_pump(example, signer, tmp_path / "pump.mlpkg").path
    async with AsyncExitStack() as stack:
        plc = await stack.enter_async_context(running_plc())
        await plc.write_all(HEALTHY)
        stack.push_async_callback(edge.kill)
        stack.push_async_callback(gateway.kill)
        await edge.start(edge_url)
        proxy = await FaultProxy(int(edge_url.split(":")[2].split("/")[0])).start()
        stack.push_async_callback(proxy.stop)
        await gateway.start(gateway_url)
        line = Plant(tmp_path, gateway, gateway_url, edge, edge_url, proxy, plc)
        driver = asyncio.create_task(line.drive())
        try:
            async with Client(gateway_url, watchdog_intervall=10) as client:  # a busy CI machine answers slowly
                ml = await client.get_namespace_index(ML)
                manager = await client.nodes.objects.get_child(f"{ml}:ModelManager")
                await upload(client, await manager.get_child(f"{ml}:Upload"), package.read_bytes(), ua.Variant())
                await manager.call_method(
                    f"{ml}:RegisterDevice",
                    ua.Variant(DEVICE, ua.VariantType.String),
                    ua.Variant(proxy.url("/edge/"), ua.VariantType.String),
                )
                binding = plc.binding(mode="tag", tag="speed")  # a prediction per change: none once they stop
                deployment = await _deploy(client, "1.0.0", [DEVICE], binding=binding, confirmation_timeout_s=60)

                async def active() -> bool:
                    values = await _deployment(client, deployment)
                    assert values["State"] is not DeploymentState.FAILED, values["LastError"]
                    return values["State"] is DeploymentState.ACTIVE

                await wait_for(active, timeout=60, what="the deployment to the edge node")
            yield line
        finally:
            line.changing = False
            await driver


def _stored(db_path: Path) -> dict[str, list[tuple[str, int]]]:
    """Every stored (QueueId, sequence) per stream of the device: predictions, logs and tag feedback."""
    with contextlib.closing(sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)) as db:
        rows = db.execute(
            "SELECT stream, queue_id, sequence FROM predictions WHERE device = ?1 UNION ALL "
            "SELECT stream, queue_id, sequence FROM logs WHERE device = ?1",
            (DEVICE,),
        ).fetchall()
        (tags,) = db.execute("SELECT count(*) FROM feedback WHERE device = ? AND origin = 'tag'", (DEVICE,)).fetchone()
    assert tags == 0  # no feedback tag is bound here
    stored: dict[str, list[tuple[str, int]]] = {}
    for stream, queue_id, sequence in rows:
        stored.setdefault(stream, []).append((queue_id, sequence))
    return {stream: sorted(places) for stream, places in stored.items()}


def _assert_exactly_once(line: Plant, view: dict[str, Any], edge_kills: int) -> None:
    stored = _stored(line.monitor_db)
    for stream in ("main", LOG_STREAM):
        last, queue_id = view[f"last {stream}"], view[f"queue {stream}"]
        # 1..LastSequence, each once, all of the edge node's one queue: no gap, no repeat
        assert stored.get(stream, []) == [(queue_id, n) for n in range(1, last + 1)], f"stream {stream!r}"
        assert line.cursor(stream)[2] == 0 or stream == LOG_STREAM and last == 0
    assert view["DroppedRecords"] == 0
    statistics = view["statistics"]
    recorded = statistics["inferences"] - statistics["sampled_out"]
    assert 0 <= view["last main"] - recorded <= PER_KILL * edge_kills, (view["last main"], statistics)


@pytest.mark.timeout(150)
async def test_every_record_arrives_once_through_restarts_kills_and_link_faults(
    tmp_path: Path, signer: Signer, example: Path
) -> None:
    async with plant(tmp_path, signer, example) as line:
        await line.collected_more(10)

        # the link reset while records flow: the next request through the proxy cuts every connection
        line.proxy.reset_after(1)
        await wait_for(_async(lambda: line.proxy.resets >= 1), what="the link reset")
        await line.collected_more()
        # black-holed: requests in flight never get their answer; the gateway's probe gives the session up
        line.proxy.blackhole_after(1)
        await asyncio.sleep(5)
        line.proxy.blackhole = False
        line.proxy.reset()
        await line.collected_more()

        # the gateway away for 8 s while the edge node keeps recording; back, its first pages of the backlog
        # are cut halfway through the answer: reset, then black-holed
        assert await line.gateway.stop() == 0
        await asyncio.sleep(8)
        line.proxy.cut_answer_over(ANSWER)
        await line.gateway.start(line.gateway_url)
        await wait_for(_async(lambda: line.proxy.cuts == 1), timeout=30, what="a page of records cut halfway")
        line.proxy.cut_answer_over(ANSWER, blackhole=True)
        await wait_for(_async(lambda: line.proxy.cuts == 2), timeout=30, what="a page of records swallowed halfway")
        await asyncio.sleep(4)
        line.proxy.blackhole = False
        line.proxy.reset()
        await line.collected_more(100)  # what queued meanwhile, and more

        # the edge node SIGKILLed mid-stream, then both
        await line.edge.kill()
        line.proxy.reset()
        await line.edge.start(line.edge_url)
        await line.collected_more()
        await line.gateway.kill()
        await line.edge.kill()
        line.proxy.reset()
        await line.edge.start(line.edge_url)
        await line.gateway.start(line.gateway_url)
        await line.collected_more()

        view = await line.drained()
        assert await line.gateway.stop() == 0
        _assert_exactly_once(line, view, edge_kills=2)


@pytest.mark.timeout(120)
async def test_records_an_edge_queue_dropped_while_the_gateway_was_away_are_the_gaps_it_counts(
    tmp_path: Path, signer: Signer, example: Path
) -> None:
    async with plant(tmp_path, signer, example, MODELLINE_EDGE_MONITOR_QUEUE_MAX_RECORDS="100") as line:
        await line.collected_more(10)
        assert await line.gateway.stop() == 0

        async def dropping() -> bool:  # the queue full: the oldest records of the stream go
            return (await line.edge_view())["DroppedRecords"] >= 20

        await wait_for(dropping, timeout=40, what="the edge node's queue to overflow")
        await line.gateway.start(line.gateway_url)
        view = await line.drained()
        assert await line.gateway.stop() == 0

    queue_id, last, gaps = line.cursor()
    assert (queue_id, last) == (view["queue main"], view["last main"])
    log_gaps = line.cursor(LOG_STREAM)[2]
    assert gaps + log_gaps == view["DroppedRecords"] and gaps >= 20
    stored = [n for _, n in _stored(line.monitor_db)["main"]]
    assert len(stored) == len(set(stored)) == last - gaps  # every record not dropped, once
    assert stored[-1] == last


def _async(check: Any) -> Any:
    async def wrapped() -> Any:
        return check()

    return wrapped


@pytest.mark.timeout(90)
async def test_a_feedback_the_edge_node_records_again_after_a_restart_counts_once(
    tmp_path: Path, signer: Signer, example: Path
) -> None:
    """The edge node's subscription sends the feedback tag's value anew when it starts again: a new record, a
    new sequence, the same part key, source time and value. The gateway handles it and stores it once."""
    package = build_pump(example, signer, tmp_path / "pump.mlpkg").path
    settings = edge_settings(tmp_path / "edge", signer.trust_dir, device_id=DEVICE)
    gateway_settings = GatewaySettings(
        endpoint=f"opc.tcp://127.0.0.1:{free_port()}/gateway/",
        data_dir=tmp_path / "gateway",
        trust_dir=signer.trust_dir,
        monitor_poll_s=0.2,
    )
    async with running_plc() as plc, Gateway(gateway_settings) as gateway:
        assert plc.server is not None
        pump = await plc.server.nodes.objects.get_child("2:Pump1")
        measured = await pump.add_variable(ua.NodeId("Pump1.MeasuredLife", 2), "2:MeasuredLife", 0.0)
        serial = await pump.add_variable(ua.NodeId("Pump1.Serial", 2), "2:Serial", "")
        await plc.write_all(HEALTHY)
        store = gateway.monitor_store

        async def handled(sequence: int) -> bool:
            cursor = await store.cursor(DEVICE, "main")
            return cursor is not None and cursor.last_sequence >= sequence

        async with EdgeNode(settings) as edge, Client(edge.url) as client:
            su = await SoftwareUpdateClient.find(client)
            await su.install(await su.transfer(package))
            binding = plc.binding(mode="tag", tag="speed") | {
                "feedback": {"endpoint": plc.url, "node_id": "ns=2;s=Pump1.MeasuredLife"},
                "part_key": {"endpoint": plc.url, "node_id": "ns=2;s=Pump1.Serial"},
            }
            await set_binding(client, "main", json.dumps(binding))
            await gateway.devices.register(DEVICE, edge.url)
            await serial.write_value(ua.Variant("SN-0042", ua.VariantType.String))
            await asyncio.sleep(0.2)
            await plc.write("speed", 1479.0)
            await asyncio.sleep(0.2)
            await measured.write_value(ua.Variant(812.5, ua.VariantType.Double))
            await wait_for(lambda: _measured(store), timeout=30, what="the feedback at the gateway")
            last = edge.records.last_sequence("main")
            await wait_for(lambda: handled(last), timeout=30, what="the gateway to handle every record")
        async with EdgeNode(settings) as edge:  # started again: the feedback tag's value comes anew

            async def recorded_again() -> bool:
                return edge.records.last_sequence("main") > last

            await wait_for(recorded_again, timeout=30, what="the edge node to record the feedback again")
            await asyncio.sleep(1)  # anything else the start records
            again = edge.records.last_sequence("main")
            await wait_for(lambda: handled(again), timeout=30, what="the gateway to handle the new records")
        cursor = await store.cursor(DEVICE, "main")
        stored = await store.sequences(DEVICE, "main")
        assert cursor is not None and cursor.gaps == 0
        assert await _measured(store) == 1  # the same result once, with its first sequence and part key
        assert cursor.last_sequence - len(stored) >= 1  # handled, not stored: the feedback recorded again
        pairs = await store.pairs(device=DEVICE)
        assert [(p.value, p.prediction.part_key) for p in pairs] == [(812.5, "SN-0042")]


async def _measured(store: Any) -> int:
    """Stored tag feedback of the measured result written (not the tag's first value, recorded at binding)."""
    rows = await store.read("SELECT count(*) FROM feedback WHERE origin = 'tag' AND value = 812.5")
    return int(rows[0][0])
