"""SubmitFeedback on a running gateway, called by a plain asyncua client: a retried SampleId counts once.

The prediction records are put in the gateway's monitor store as a batch fetched from an edge
node would be (the edge node's record queue is tested with the collection end to end elsewhere);
the feedback goes the way a plant's quality station sends it, over OPC UA with a login.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from asyncua import Node, ua

from edge_node.app import EdgeNode
from gateway.app import Gateway
from sdk.monitor.records import PredictionRecord, RecordEnvelope
from sdk.opcua.users import hash_password
from tests.conftest import Signer
from tests.e2e.test_gateway_rollout import plant
from tests.edge_harness import build_pump, edge_settings, wait_for
from tests.opcua_servers import free_port
from tests.tls import Client, GatewaySettings

pytestmark = pytest.mark.e2e

ML = "http://modelline.io/UA/"
S, U64, DT, D = ua.VariantType.String, ua.VariantType.UInt64, ua.VariantType.DateTime, ua.VariantType.Double
T0 = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
NO_TIME = datetime(1601, 1, 1, tzinfo=UTC)  # OPC UA DateTime's minimum: encoded as 0, "not given"


def _users(tmp_path: Path) -> Path:
    users = tmp_path / "users.toml"
    users.write_text(
        f'anonymous = "Observer"\n[users.op]\nrole = "Operator"\npassword = "{hash_password("operator-pw")}"\n'
        f'[users.eng]\nrole = "Engineer"\npassword = "{hash_password("engineer-pw")}"\n'
    )
    return users


@asynccontextmanager
async def _as(url: str, user: str | None = None) -> AsyncIterator[Node]:
    """The gateway's ModelMonitor object, over a session of ``user`` (anonymous: Observer)."""
    client = Client(url, timeout=10)
    if user:
        client.set_user(user)
        client.set_password(f"{'operator' if user == 'op' else 'engineer'}-pw")
    async with client:
        ml = await client.get_namespace_index(ML)
        yield await client.nodes.objects.get_child(f"{ml}:ModelMonitor")


async def _submit(
    monitor: Node,
    sample_id: str,
    value: float,
    *,
    sequence: int = 0,
    part_key: str = "",
    source_time: datetime = NO_TIME,
    device: str = "edge-a",
) -> bool:
    ml = monitor.nodeid.NamespaceIndex
    (method,) = [m for m in await monitor.get_methods() if (await m.read_browse_name()).Name == "SubmitFeedback"]
    assert method.nodeid.NamespaceIndex == ml
    return bool(
        await monitor.call_method(
            method.nodeid,
            ua.Variant(device, S),
            ua.Variant("main", S),
            ua.Variant(sequence, U64),
            ua.Variant(source_time, DT),
            ua.Variant(part_key, S),
            ua.Variant(value, D),
            ua.Variant(sample_id, S),
        )
    )


def _records(first: int, *parts: str | None) -> list[RecordEnvelope]:
    return [
        RecordEnvelope(
            sequence=first + i,
            record=PredictionRecord(
                time=T0 + timedelta(seconds=first + i),
                model="pump-health",
                version="1.0.0",
                inputs={"vibration": 0.4},
                outputs={"anomaly_score": 0.1 * i},
                part_key=part,
            ),
        )
        for i, part in enumerate(parts)
    ]


@pytest.fixture
async def gateway(tmp_path: Path, signer: Signer) -> AsyncIterator[Gateway]:
    settings = GatewaySettings(
        endpoint=f"opc.tcp://127.0.0.1:{free_port()}/gateway/",
        data_dir=tmp_path / "gateway",
        trust_dir=signer.trust_dir,
        users_file=_users(tmp_path),
    )
    async with Gateway(settings) as running:
        # edge-a is registered (nothing listens at its endpoint: feedback does not need the device online)
        await running.devices.register("edge-a", f"opc.tcp://127.0.0.1:{free_port()}/edge/")
        yield running


@pytest.mark.timeout(60)
async def test_submit_feedback_counts_a_retried_sample_once_and_joins_late_records(gateway: Gateway) -> None:
    store = gateway.monitor_store
    await store.ingest_batch("edge-a", "main", "q1", _records(1, "P1", "P2", None))
    async with _as(gateway.url, "op") as monitor:
        assert await _submit(monitor, "qs-1", 1.0, sequence=2)
        assert await _submit(monitor, "qs-1", 1.0, sequence=2)  # the station retried: counted once
        with pytest.raises(ua.UaStatusCodeError) as refused:
            await _submit(monitor, "qs-1", 0.0, sequence=2)  # the same SampleId with another value
        assert refused.value.code == ua.StatusCodes.BadInvalidArgument
        assert await _submit(monitor, "qs-2", 0.0, part_key="P1")
        assert not await _submit(monitor, "qs-3", 1.0, part_key="P9")  # its prediction record is not here yet
        assert await _submit(monitor, "qs-4", 0.0, source_time=T0 + timedelta(seconds=2, milliseconds=500))
    assert (await store.counts("edge-a", "main"))["feedback"] == 4
    await store.ingest_batch("edge-a", "main", "q1", _records(4, "P9"))  # late: the record arrives after its result
    pairs = {p.sample_id: (p.prediction.sequence, p.value) for p in await store.pairs(device="edge-a")}
    assert pairs == {"qs-1": (2, 1.0), "qs-2": (1, 0.0), "qs-3": (4, 1.0), "qs-4": (2, 0.0)}


@pytest.mark.timeout(60)
async def test_submit_feedback_needs_the_operator_role_and_a_named_prediction(gateway: Gateway) -> None:
    async with _as(gateway.url) as observer:
        with pytest.raises(ua.UaStatusCodeError) as refused:
            await _submit(observer, "obs-1", 1.0, sequence=1)
        assert refused.value.code == ua.StatusCodes.BadUserAccessDenied
    async with _as(gateway.url, "eng") as engineer:
        for kwargs, code in (
            ({}, ua.StatusCodes.BadInvalidArgument),  # no sequence, part key or time
            ({"device": "edge-z", "sequence": 1}, ua.StatusCodes.BadNotFound),
            ({"sequence": 2**64 - 1}, ua.StatusCodes.BadOutOfRange),
        ):
            with pytest.raises(ua.UaStatusCodeError) as refused:
                await _submit(engineer, "e-1", 1.0, **kwargs)  # type: ignore[arg-type]
            assert refused.value.code == code, kwargs
        with pytest.raises(ua.UaStatusCodeError) as refused:
            await _submit(engineer, "e-2", float("nan"), sequence=1)
        assert refused.value.code == ua.StatusCodes.BadInvalidArgument
        assert not await _submit(engineer, "e-3", 1.0, sequence=1)
    assert (await gateway.monitor_store.counts("edge-a", "main"))["feedback"] == 1


@pytest.mark.timeout(60)
async def test_a_sample_retried_after_a_gateway_restart_still_counts_once(tmp_path: Path, signer: Signer) -> None:
    settings = GatewaySettings(
        endpoint=f"opc.tcp://127.0.0.1:{free_port()}/gateway/",
        data_dir=tmp_path / "gateway",
        trust_dir=signer.trust_dir,
        users_file=_users(tmp_path),
    )
    async with Gateway(settings) as first:
        await first.devices.register("edge-a", f"opc.tcp://127.0.0.1:{free_port()}/edge/")
        await first.monitor_store.ingest_batch("edge-a", "main", "q1", _records(1, "P1"))
        async with _as(first.url, "op") as monitor:
            assert await _submit(monitor, "qs-1", 3.5, part_key="P1")
    assert (settings.data_dir / "monitor.sqlite3").is_file()
    async with Gateway(settings) as second:
        async with _as(second.url, "op") as monitor:
            assert await _submit(monitor, "qs-1", 3.5, part_key="P1")
        assert (await second.monitor_store.counts("edge-a", "main"))["feedback"] == 1
        assert [(p.sample_id, p.value) for p in await second.monitor_store.pairs()] == [("qs-1", 3.5)]


@pytest.mark.timeout(120)
async def test_model_monitor_shows_counts_per_deployment_and_device(
    tmp_path: Path, signer: Signer, example: Path
) -> None:
    async with plant(tmp_path, signer) as p:
        await p.push(build_pump(example, signer, tmp_path / "v1.mlpkg").path)
        deployment = await p.deploy("1.0.0", ["edge-a"])
        await p.settled(deployment, "Active")
        gateway = p.gateway
        # the edge node's own records (its unbound pipeline's Bad outputs) are collected too: the figures where
        # they seem to settle are a floor (more may still come, on a busy machine after a while)
        store = gateway.monitor_store
        base = await store.figures(deployment, "edge-a")
        for _ in range(50):
            await asyncio.sleep(0.3)
            now = await store.figures(deployment, "edge-a")
            if now == base:
                break
            base = now
        records = _records(1, "P1", "P2", "P3")
        bad = records[2].record.model_copy(update={"status": 0x80890000, "latency_ms": 0.0})
        records[2] = RecordEnvelope(sequence=3, record=bad)
        records = [
            RecordEnvelope(sequence=e.sequence, record=e.record.model_copy(update={"latency_ms": 2.0 * e.sequence}))
            if e.sequence < 3
            else e
            for e in records
        ]
        await gateway.monitor_store.ingest_batch(
            "edge-a",
            "main",
            "q1",
            records,
            deployment_of=lambda model, version: gateway.monitor.deployment_of("edge-a", model, version),
        )
        await gateway.monitor.submit_feedback("edge-a", "main", 0, None, "P2", 1.0, "qs-1")
        figures = await p.client.nodes.objects.get_child([f"{p.ml}:ModelMonitor", f"1:{deployment}", "1:edge-a"])

        async def shown_as_stored() -> tuple[dict[str, object], dict[str, object], Any] | None:
            # The edge node's own records may still arrive at any time (collected when they are announced or
            # polled): the figures shown must be the store's at one refresh, read back before anything more came.
            await gateway.monitor_nodes.refresh()
            stored = await store.figures(deployment, "edge-a")
            # latency percentiles (nearest rank) over every timed prediction: the edge node's own (an unbound
            # pipeline's record may carry a latency) and the two timed ones above
            own = await store.deployment_records(deployment, "edge-a", limit=1000)
            latencies = sorted(r.latency_ms for r in own if r.latency_ms > 0)
            values = {}
            for name in ("InferenceCount", "ErrorCount", "FeedbackCount", "LatencyP50Ms", "LatencyP99Ms"):
                values[name] = await (await figures.get_child(f"{p.ml}:{name}")).read_value()
            expected = {
                "InferenceCount": stored.inferences,
                "ErrorCount": stored.errors,
                "FeedbackCount": stored.feedback,
                "LatencyP50Ms": latencies[math.ceil(0.5 * len(latencies)) - 1] if latencies else 0.0,
                "LatencyP99Ms": latencies[math.ceil(0.99 * len(latencies)) - 1] if latencies else 0.0,
            }
            if await store.figures(deployment, "edge-a") != stored:
                return None  # more arrived while reading: again
            return values, expected, (stored, latencies)

        shown = await wait_for(shown_as_stored, timeout=30, what="the Model Monitor figures as stored")
        assert shown is not None
        values, expected, (stored, latencies) = shown
        assert values == expected
        # the three ingested above and the feedback are in them, whatever the edge node recorded itself
        assert stored.inferences >= base.inferences + 3 and stored.errors >= base.errors + 1
        assert stored.feedback == base.feedback + 1
        assert 2.0 in latencies and 4.0 in latencies
        drift = await (await figures.get_child(f"{p.ml}:DriftScore")).read_data_value(raise_on_bad_status=False)
        assert drift.StatusCode.value == ua.StatusCodes.BadWaitingForInitialData
        model = await p.client.nodes.objects.get_child([f"{p.ml}:ModelMonitor", f"1:{deployment}", f"{p.ml}:Version"])
        assert await model.read_value() == "1.0.0"


@pytest.mark.timeout(90)
async def test_record_collection_runs_on_the_device_session_and_stops_with_it(tmp_path: Path, signer: Signer) -> None:
    settings = GatewaySettings(
        endpoint=f"opc.tcp://127.0.0.1:{free_port()}/gateway/",
        data_dir=tmp_path / "gateway",
        trust_dir=signer.trust_dir,
        monitor_poll_s=0.2,
    )
    async with Gateway(settings) as gateway:
        edge = EdgeNode(edge_settings(tmp_path / "edge-a", signer.trust_dir, device_id="edge-a"))
        async with edge:
            await gateway.devices.register("edge-a", edge.url)

            async def collecting() -> bool:
                ingest = gateway.monitor.ingests.get("edge-a")
                return ingest is not None and (ingest.rounds > 0 or bool(ingest.last_error))

            await wait_for(collecting, timeout=30, what="record collection on edge-a's session")
        link = gateway.devices.get("edge-a")

        async def stopped() -> bool:
            return not link.online and "edge-a" not in gateway.monitor.ingests

        await wait_for(stopped, timeout=30, what="the collection to stop with the session")
