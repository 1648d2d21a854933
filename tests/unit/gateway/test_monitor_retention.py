"""Retention of the monitor database: old records go in bounded batches, baselines and joined feedback stay."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from gateway.monitor.base import Feedback
from gateway.monitor.retention import Retention
from gateway.monitor.store import MonitorStore
from sdk.monitor.records import LogLevel, LogRecord, RecordEnvelope
from tests.unit.gateway.monitor_fakes import T0, feedback, prediction

DAY = 86400.0


def _batch(first: int, records: list[Any]) -> list[RecordEnvelope]:
    return [RecordEnvelope.model_validate({"sequence": first + i, "record": r}) for i, r in enumerate(records)]


def _log(second: float) -> LogRecord:
    return LogRecord(time=T0 + timedelta(seconds=second), level=LogLevel.WARNING, logger="edge", message="x" * 50)


def _fb(sample_id: str, sequence: int, at: datetime) -> Feedback:
    return Feedback(sample_id=sample_id, device="edge-a", pipeline="main", value=1.0, sequence=sequence, time=at)


class _Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


async def test_old_records_go_in_bounded_batches_and_the_baseline_and_its_feedback_stay(tmp_path: Path) -> None:
    async with MonitorStore.open(tmp_path / "monitor.sqlite3") as store:
        # 40 days of one prediction a day credited to deployment d1, then 20 uncredited on another stream
        deployed = [prediction(day * DAY, part_key=f"P{day}") for day in range(40)]
        await store.ingest_batch("edge-a", "main", "q1", _batch(1, deployed), deployment_of=lambda m, v: "d1")
        loose = [prediction(day * DAY) for day in range(20, 40)]
        await store.ingest_batch("edge-a", "other", "q1", _batch(1, loose))
        logs = [_log(day * DAY) for day in range(40)]
        await store.ingest_batch("edge-a", "$logs", "q1", _batch(1, logs))
        await store.ingest_batch("edge-a", "tags", "q1", _batch(1, [feedback(2 * DAY, 1.0, "none")]))
        for sequence in (1, 2, 6, 35):  # joined to a baseline record (1, 2), an old one (6), a kept one (35)
            assert await store.add_feedback(_fb(f"s{sequence}", sequence, T0 + timedelta(days=sequence)))
        before = await store.figures("d1", "edge-a")

        clock = _Clock(T0 + timedelta(days=40))  # now: day 40; 30 days kept: from day 10 on
        retention = Retention(store, 30, keep_first=3, batch=4, clock=clock)
        largest: list[int] = []
        write = store.write

        async def spy(statements: Any) -> list[int]:
            changed = await write(statements)
            largest.append(max(changed))
            return changed

        store.write = spy  # type: ignore[method-assign]
        result = await retention.run()
        store.write = write  # type: ignore[method-assign]

        assert max(largest) <= 4  # never more than one batch per transaction
        # days 3..9 of d1 (days 0-2 are its baseline), days 20..39 of "other" are all within 30 days
        assert result.predictions == 7
        kept = [s for _, s in await store.sequences("edge-a", "main")]
        assert kept == [1, 2, 3, *range(11, 41)]
        assert len(await store.sequences("edge-a", "other")) == 20
        assert len(await store.logs("edge-a")) == 30  # days 10..39
        assert result.logs == 10
        # feedback of the deleted day-5 prediction went with it; the unmatched tag feedback of day 2 too
        assert result.feedback == 2
        assert sorted(p.sample_id for p in await store.pairs()) == ["s1", "s2", "s35"]
        # counts since deployment are not lowered; the newest latencies are still there
        after = await store.figures("d1", "edge-a")
        assert (after.inferences, after.errors, after.latency_p50_ms) == (before.inferences, 0, before.latency_p50_ms)
        assert after.feedback == 3

        assert (await retention.run()).predictions == 0  # nothing more to do
        clock.now += timedelta(days=100)  # everything is old now: the baseline still stays
        await retention.run()
        assert [s for _, s in await store.sequences("edge-a", "main")] == [1, 2, 3]
        assert await store.sequences("edge-a", "other") == []


async def test_a_deployment_still_within_its_baseline_keeps_everything(tmp_path: Path) -> None:
    async with MonitorStore.open(tmp_path / "monitor.sqlite3") as store:
        records = [prediction(day * DAY) for day in range(5)]
        await store.ingest_batch("edge-a", "main", "q1", _batch(1, records), deployment_of=lambda m, v: "d1")
        retention = Retention(store, 1, keep_first=10, clock=lambda: T0 + timedelta(days=60))
        assert (await retention.run()).predictions == 0
        assert len(await store.sequences("edge-a", "main")) == 5


async def test_freed_pages_go_back_to_the_file_system_when_worth_it(tmp_path: Path) -> None:
    path = tmp_path / "monitor.sqlite3"
    async with MonitorStore.open(path) as store:
        assert (await store.read("PRAGMA auto_vacuum"))[0][0] == 2  # INCREMENTAL on a new database
        records = [prediction(i * 60.0) for i in range(3000)]
        for first in range(0, 3000, 500):
            await store.ingest_batch("edge-a", "main", "q1", _batch(first + 1, records[first : first + 500]))
        ((pages,),) = await store.read("PRAGMA page_count")
        clock = _Clock(T0 + timedelta(days=33))  # the records span 50 hours from T0
        # a few deleted records are not worth compacting
        few = Retention(store, 33 - 300 * 60 / DAY, keep_first=0, batch=500, clock=clock)
        result = await few.run()
        assert result.predictions == 300 and result.pages_freed == 0
        ((free,),) = await store.read("PRAGMA freelist_count")
        assert free > 0
        # all of them are
        result = await Retention(store, 30, keep_first=0, batch=500, clock=clock).run()
        assert result.predictions == 2700 and result.pages_freed > 0
        ((after,),) = await store.read("PRAGMA page_count")
        ((free,),) = await store.read("PRAGMA freelist_count")
        assert after <= pages - result.pages_freed and free == 0
        await store.ingest_batch(
            "edge-a", "main", "q1", _batch(len(records) + 1, [prediction(31 * DAY)])
        )  # still writable
