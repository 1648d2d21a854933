"""Collecting records from an edge node's queue: exactly once, acknowledged only after the store committed."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from gateway.monitor.ingest import RecordIngest
from gateway.monitor.store import MonitorStore
from tests.edge_harness import wait_for
from tests.unit.gateway.monitor_fakes import FakeQueue, prediction


def _true(check: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    async def checked() -> bool:
        return check()

    return checked


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[MonitorStore]:
    async with MonitorStore.open(tmp_path / "monitor.sqlite3") as opened:
        yield opened


def _ingest(queue: FakeQueue, store: MonitorStore, streams: tuple[str, ...] = ("main",), **kw: object) -> RecordIngest:
    return RecordIngest("edge-a", queue, store, lambda: streams, max_records=10, **kw)  # type: ignore[arg-type]


async def test_batches_are_fetched_after_the_cursor_and_acknowledged_after_commit(store: MonitorStore) -> None:
    queue = FakeQueue()
    queue.add("main", *(prediction(i) for i in range(25)))
    queue.add("", *())
    ingest = _ingest(queue, store, ("main", ""))
    assert await ingest.collect_once() == 25
    assert queue.fetches[:3] == [("main", 0, 10), ("main", 10, 10), ("main", 20, 10)]
    assert queue.acks == [("main", "q1", 10), ("main", "q1", 20), ("main", "q1", 25)]
    assert queue.streams["main"] == []
    assert await store.sequences("edge-a", "main") == [("q1", n) for n in range(1, 26)]
    queue.add("main", prediction(30))
    assert await ingest.collect_once() == 1
    assert queue.fetches[-2] == ("main", 25, 10)


async def test_a_source_that_redelivers_is_stored_exactly_once(store: MonitorStore) -> None:
    queue = FakeQueue(redeliver=True, fail_acks=2)
    queue.add("main", *(prediction(i) for i in range(15)))
    ingest = _ingest(queue, store)
    with pytest.raises(ConnectionError):
        await ingest.collect_once()  # the answer to the first acknowledgement was lost
    queue.add("main", *(prediction(i) for i in range(15, 18)))
    with pytest.raises(ConnectionError):
        await ingest.collect_once()
    await ingest.collect_once()
    await ingest.collect_once()
    assert await store.sequences("edge-a", "main") == [("q1", n) for n in range(1, 19)]
    assert (await store.counts("edge-a", "main"))["predictions"] == 18
    assert sum(s.stored for s in ingest.stats.values()) == 18


async def test_a_new_queue_id_starts_over_at_sequence_one(store: MonitorStore) -> None:
    queue = FakeQueue()
    queue.add("main", *(prediction(i) for i in range(5)))
    ingest = _ingest(queue, store)
    await ingest.collect_once()
    queue.renew("q2")
    queue.add("main", *(prediction(i) for i in range(10, 13)))
    assert await ingest.collect_once() == 3
    assert ("main", 0, 10) in queue.fetches[-2:]
    assert queue.acks[-1] == ("main", "q2", 3)
    stored = await store.sequences("edge-a", "main")
    assert stored == [("q1", n) for n in range(1, 6)] + [("q2", n) for n in range(1, 4)]


async def test_gaps_in_the_sequence_are_counted(store: MonitorStore) -> None:
    queue = FakeQueue()
    queue.add("main", prediction(1), prediction(2))
    queue.add("main", prediction(3), skip=4)  # the node's queue overflowed: 3..6 were dropped
    await _ingest(queue, store).collect_once()
    assert (await store.counts("edge-a", "main"))["gaps"] == 4


async def test_nothing_is_acknowledged_while_the_store_cannot_write(store: MonitorStore, tmp_path: Path) -> None:
    queue = FakeQueue()
    queue.add("main", *(prediction(i) for i in range(3)))
    with sqlite3.connect(tmp_path / "monitor.sqlite3") as db:
        db.execute("CREATE TRIGGER broken BEFORE INSERT ON predictions BEGIN SELECT RAISE(ABORT, 'disk gone'); END")
    ingest = _ingest(queue, store, poll_s=0.01, retry_cap_s=0.05)
    task = asyncio.create_task(ingest.run())
    try:
        await wait_for(_true(lambda: len(queue.fetches) >= 3), what="fetches again and again, failing each time")
        assert queue.acks == [] and len(queue.streams["main"]) == 3
        assert "disk gone" in ingest.last_error
        with sqlite3.connect(tmp_path / "monitor.sqlite3") as db:
            db.execute("DROP TRIGGER broken")
        await wait_for(_true(lambda: bool(queue.acks)), what="an acknowledgement")
    finally:
        task.cancel()
    assert queue.acks == [("main", "q1", 3)]
    assert await store.sequences("edge-a", "main") == [("q1", n) for n in (1, 2, 3)]


async def test_records_stored_but_never_acknowledged_are_acknowledged_after_a_restart(store: MonitorStore) -> None:
    queue = FakeQueue()
    queue.add("main", *(prediction(i) for i in range(4)))
    first = await queue.fetch("main", 0, 10)  # an earlier gateway stored the batch, then stopped before acknowledging
    await store.ingest_batch("edge-a", "main", "q1", first.records)
    queue.fetches.clear()
    await _ingest(queue, store).collect_once()
    assert queue.acks == [("main", "q1", 4)] and queue.streams["main"] == []


async def test_wake_collects_before_the_poll_interval(store: MonitorStore) -> None:
    queue = FakeQueue()
    ingest = _ingest(queue, store, poll_s=60)
    task = asyncio.create_task(ingest.run())
    try:
        await wait_for(_true(lambda: ingest.rounds >= 1), what="a first round")
        queue.add("main", prediction(1))
        ingest.wake()
        await wait_for(_true(lambda: bool(queue.acks)), timeout=5, what="an acknowledgement long before the poll")
    finally:
        task.cancel()


async def test_an_idle_device_with_events_is_polled_less_often_until_records_come(store: MonitorStore) -> None:
    queue = FakeQueue()
    ingest = _ingest(queue, store, poll_s=0.05, idle_poll_s=0.4)
    task = asyncio.create_task(ingest.run())
    try:
        await asyncio.sleep(1.2)
        idle_rounds = ingest.rounds  # waits 0.05, 0.1, 0.2, 0.4, 0.4, ...: about 5 rounds, not 24
        assert 3 <= idle_rounds <= 8
        queue.add("main", prediction(1))
        ingest.wake()  # an event: collected at once, and polled at poll_s again
        await wait_for(_true(lambda: bool(queue.acks)), timeout=5, what="the woken collection")
        before = ingest.rounds
        await asyncio.sleep(0.3)
        assert ingest.rounds - before >= 2  # back at the short poll (0.05, 0.1, 0.2 ...) after records came
    finally:
        task.cancel()


async def test_without_events_the_poll_stays_at_poll_s(store: MonitorStore) -> None:
    queue = FakeQueue()
    ingest = _ingest(queue, store, poll_s=0.05)
    task = asyncio.create_task(ingest.run())
    try:
        await asyncio.sleep(1.0)
        assert ingest.rounds >= 10
    finally:
        task.cancel()
