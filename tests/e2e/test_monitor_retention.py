"""Retention on a running gateway: its scheduled job deletes old monitor records while the gateway serves.

The records are put in the gateway's monitor store as fetched batches would be (collection is tested end
to end in test_monitor_delivery.py); the gateway's retention clock is moved 40 days ahead and its
scheduled job run at once, by the scheduler, as it runs every hour.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.app import Gateway
from gateway.monitor.base import Feedback
from gateway.monitor.thresholds import MonitorThresholds
from sdk.monitor.records import LogLevel, LogRecord, PredictionRecord, RecordEnvelope
from tests.conftest import Signer
from tests.edge_harness import wait_for
from tests.opcua_servers import free_port
from tests.tls import Client, GatewaySettings

pytestmark = pytest.mark.e2e

T0 = datetime(2026, 10, 1, tzinfo=UTC)
BASELINE = MonitorThresholds().baseline_records


def _prediction(sequence: int, at: datetime) -> RecordEnvelope:
    record = PredictionRecord(
        time=at, model="pump-health", version="1.0.0", inputs={"speed": 1475.0}, outputs={"life": 1.0}, latency_ms=2.0
    )
    return RecordEnvelope(sequence=sequence, record=record)


@pytest.fixture
async def gateway(tmp_path: Path, signer: Signer) -> AsyncIterator[Gateway]:
    settings = GatewaySettings(
        endpoint=f"opc.tcp://127.0.0.1:{free_port()}/gateway/",
        data_dir=tmp_path / "gateway",
        trust_dir=signer.trust_dir,
        monitor_retention_days=30,
    )
    async with Gateway(settings) as running:
        yield running


@pytest.mark.timeout(60)
async def test_the_scheduled_retention_deletes_old_records_and_keeps_the_baseline(gateway: Gateway) -> None:
    store = gateway.monitor_store
    # the first BASELINE + 100 predictions 35 days ago, 50 more 5 days ago; a log record of each age
    old = [_prediction(n, T0 + timedelta(seconds=n)) for n in range(1, BASELINE + 101)]
    recent = [_prediction(n, T0 + timedelta(days=30, seconds=n)) for n in range(BASELINE + 101, BASELINE + 151)]
    for first in range(0, len(old), 500):
        await store.ingest_batch("edge-a", "main", "q1", old[first : first + 500], deployment_of=lambda m, v: "d1")
    await store.ingest_batch("edge-a", "main", "q1", recent, deployment_of=lambda m, v: "d1")
    logs = [
        RecordEnvelope(sequence=n, record=LogRecord(time=at, level=LogLevel.ERROR, logger="edge", message="x"))
        for n, at in ((1, T0), (2, T0 + timedelta(days=30)))
    ]
    await store.ingest_batch("edge-a", "", "q1", logs)
    late = BASELINE + 50
    feedback = Feedback(sample_id="s", device="edge-a", pipeline="main", value=1.0, sequence=late, time=T0)
    assert await store.add_feedback(feedback)
    before = await store.figures("d1", "edge-a")

    gateway.retention.clock = lambda: T0 + timedelta(days=35)
    job = gateway.scheduler.get_job("monitor retention")
    assert job is not None
    job.modify(next_run_time=datetime.now(UTC))

    async def deleted() -> bool:  # one run deletes predictions, then logs: wait for both
        return len(await store.sequences("edge-a", "main")) < BASELINE + 150 and [
            n for _, n in await store.sequences("edge-a", "")
        ] != [1, 2]

    await wait_for(deleted, timeout=30, what="the scheduled retention to run")
    kept = [n for _, n in await store.sequences("edge-a", "main")]
    assert kept == [*range(1, BASELINE + 1), *range(BASELINE + 101, BASELINE + 151)]
    assert [n for _, n in await store.sequences("edge-a", "")] == [2]
    assert await store.pairs() == []  # its prediction went, and the feedback with it
    after = await store.figures("d1", "edge-a")
    assert (after.inferences, after.latency_p50_ms) == (before.inferences, before.latency_p50_ms)
    async with Client(gateway.url) as client:  # still serving
        assert await client.nodes.server_state.read_value() == 0
    await store.ingest_batch("edge-a", "main", "q1", [_prediction(BASELINE + 151, T0 + timedelta(days=35))])
    with closing(sqlite3.connect(f"file:{gateway.settings.monitor_db_path}?mode=ro", uri=True)) as db:
        assert db.execute("PRAGMA auto_vacuum").fetchone() == (2,)  # INCREMENTAL: the space goes back
