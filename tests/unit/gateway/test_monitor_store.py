"""The monitor database: idempotent batches, cursors in the same transaction, feedback joins, restarts."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest

from gateway.monitor.base import Feedback
from gateway.monitor.service import Monitor
from gateway.monitor.store import MIGRATIONS, FeedbackConflict, MonitorStore, tag_sample_id
from sdk.errors import NotFound, OutOfRange, UsageError
from sdk.monitor.records import LogLevel, LogRecord, RecordEnvelope
from tests.unit.gateway.monitor_fakes import T0, feedback, prediction


def _batch(first: int, *records: object) -> list[RecordEnvelope]:
    return [RecordEnvelope.model_validate({"sequence": first + i, "record": r}) for i, r in enumerate(records)]


def _fb(sample_id: str, value: float, **key: object) -> Feedback:
    return Feedback.model_validate(
        {
            "sample_id": sample_id,
            "device": "edge-a",
            "pipeline": "main",
            "value": value,
            "time": T0 + timedelta(hours=1),
        }
        | key
    )


async def test_a_batch_stored_twice_counts_once_and_moves_the_cursor_with_it(tmp_path: Path) -> None:
    async with MonitorStore.open(tmp_path / "monitor.sqlite3") as store:
        assert await store.schema_version() == len(MIGRATIONS)
        batch = _batch(1, prediction(1), prediction(2), prediction(3))
        assert await store.ingest_batch("edge-a", "main", "q1", batch) == 3
        assert await store.ingest_batch("edge-a", "main", "q1", batch) == 0
        assert await store.ingest_batch("edge-a", "main", "q1", batch[1:] + _batch(4, prediction(4))) == 1
        cursor = await store.cursor("edge-a", "main")
        assert cursor is not None and (cursor.queue_id, cursor.last_sequence, cursor.gaps) == ("q1", 4, 0)
        assert await store.sequences("edge-a", "main") == [("q1", 1), ("q1", 2), ("q1", 3), ("q1", 4)]
        # another device's stream with the same numbers is its own
        assert await store.ingest_batch("edge-b", "main", "q1", batch) == 3


async def test_gaps_are_counted_and_a_new_queue_starts_the_cursor_over(tmp_path: Path) -> None:
    async with MonitorStore.open(tmp_path / "monitor.sqlite3") as store:
        await store.ingest_batch("edge-a", "main", "q1", _batch(1, prediction(1), prediction(2)))
        await store.ingest_batch("edge-a", "main", "q1", _batch(6, prediction(6)))  # 3, 4, 5 dropped
        cursor = await store.cursor("edge-a", "main")
        assert cursor is not None and (cursor.last_sequence, cursor.gaps) == (6, 3)
        assert await store.ingest_batch("edge-a", "main", "q2", _batch(1, prediction(7))) == 1
        cursor = await store.cursor("edge-a", "main")
        assert cursor is not None and (cursor.queue_id, cursor.last_sequence, cursor.gaps) == ("q2", 1, 0)
        assert len(await store.sequences("edge-a", "main")) == 4  # (q1, 1) and (q2, 1) are different records


async def test_a_failed_batch_stores_nothing_and_leaves_the_cursor(tmp_path: Path) -> None:
    path = tmp_path / "monitor.sqlite3"
    async with MonitorStore.open(path) as store:
        await store.ingest_batch("edge-a", "main", "q1", _batch(1, prediction(1)))
        with sqlite3.connect(path) as db:  # the log insert fails after the predictions went in
            db.execute("CREATE TRIGGER broken BEFORE INSERT ON logs BEGIN SELECT RAISE(ABORT, 'disk gone'); END")
        log = LogRecord(time=T0, level=LogLevel.ERROR, logger="edge", message="x")
        with pytest.raises(sqlite3.IntegrityError):
            await store.ingest_batch("edge-a", "main", "q1", _batch(2, prediction(2), log))
        cursor = await store.cursor("edge-a", "main")
        assert cursor is not None and cursor.last_sequence == 1
        assert await store.sequences("edge-a", "main") == [("q1", 1)]


async def test_feedback_joins_by_sequence_part_key_and_time(tmp_path: Path) -> None:
    async with MonitorStore.open(tmp_path / "monitor.sqlite3") as store:
        await store.ingest_batch(
            "edge-a",
            "main",
            "q1",
            _batch(1, prediction(10, "P1", 1.0), prediction(20, "P2", 2.0), prediction(30, "P1", 3.0), prediction(40)),
        )
        assert await store.add_feedback(_fb("by-seq", 0.2, sequence=2))
        assert await store.add_feedback(_fb("by-part", 0.3, part_key="P1"))  # newest P1 before the feedback: seq 3
        assert await store.add_feedback(_fb("by-time", 0.1, source_time=T0 + timedelta(seconds=15)))  # seq 1
        assert not await store.add_feedback(_fb("no-part", 0.9, part_key="P9"))
        # the node's clock runs ahead of the gateway's: its prediction looks later than the result
        await store.ingest_batch("edge-a", "main", "q1", _batch(5, prediction(7200, "P5")))
        assert await store.add_feedback(_fb("ahead", 0.5, part_key="P5"))
        pairs = await store.pairs(device="edge-a", pipeline="main")
        assert [(p.prediction.sequence, p.value, p.sample_id) for p in pairs] == [
            (1, 0.1, "by-time"),
            (2, 0.2, "by-seq"),
            (3, 0.3, "by-part"),
            (5, 0.5, "ahead"),
        ]
        assert await store.pairs(model="other") == []
        assert len(await store.pairs(since=T0 + timedelta(seconds=15), until=T0 + timedelta(seconds=25))) == 1
        with pytest.raises(UsageError):
            await store.add_feedback(_fb("two-keys", 1.0, sequence=1, part_key="P1"))


async def test_late_feedback_and_late_predictions_both_join(tmp_path: Path) -> None:
    async with MonitorStore.open(tmp_path / "monitor.sqlite3") as store:
        # the measured result comes before the node delivered the prediction record
        assert not await store.add_feedback(_fb("early-seq", 5.0, sequence=2))
        assert not await store.add_feedback(_fb("early-part", 6.0, part_key="P7"))
        # a time match waits until the stream holds a prediction after that time
        assert not await store.add_feedback(_fb("early-time", 7.0, source_time=T0 + timedelta(seconds=25)))
        await store.ingest_batch("edge-a", "main", "q1", _batch(1, prediction(10), prediction(20, "P7")))
        assert {p.sample_id for p in await store.pairs()} == {"early-seq", "early-part"}
        await store.ingest_batch("edge-a", "main", "q1", _batch(3, prediction(30)))
        pairs = {p.sample_id: p.prediction.sequence for p in await store.pairs()}
        assert pairs == {"early-seq": 2, "early-part": 2, "early-time": 2}
        # feedback hours after its prediction joins too
        await store.add_feedback(_fb("late", 8.0, sequence=1))
        assert {p.sample_id: p.prediction.sequence for p in await store.pairs()}["late"] == 1


async def test_a_sample_id_counts_once_and_refuses_other_content(tmp_path: Path) -> None:
    async with MonitorStore.open(tmp_path / "monitor.sqlite3") as store:
        await store.ingest_batch("edge-a", "main", "q1", _batch(1, prediction(10)))
        assert await store.add_feedback(_fb("s1", 0.5, sequence=1))
        assert await store.add_feedback(_fb("s1", 0.5, sequence=1))  # a retry: same answer, stored once
        with pytest.raises(FeedbackConflict):
            await store.add_feedback(_fb("s1", 0.6, sequence=1))
        assert len(await store.pairs()) == 1
        assert (await store.counts("edge-a", "main"))["feedback"] == 1


async def test_tag_feedback_redelivered_counts_once(tmp_path: Path) -> None:
    async with MonitorStore.open(tmp_path / "monitor.sqlite3") as store:
        batch = _batch(1, prediction(10, "P1"), prediction(20, "P2"), feedback(25, 9.5, "P1"), feedback(26, 1.0))
        assert await store.ingest_batch("edge-a", "main", "q1", batch) == 4
        assert await store.ingest_batch("edge-a", "main", "q1", batch) == 0
        pairs = {p.sample_id: (p.prediction.sequence, p.value) for p in await store.pairs()}
        # by part key P1; the one without a part key waits for a prediction after its time
        assert pairs == {tag_sample_id("edge-a", "q1", "main", 3): (1, 9.5)}
        await store.ingest_batch("edge-a", "main", "q1", _batch(5, prediction(30)))
        assert (await store.counts("edge-a", "main"))["feedback"] == 2
        assert len(await store.pairs()) == 2
        assert await store.sequences("edge-a", "main") == [("q1", n) for n in range(1, 6)]


async def test_tag_feedback_recorded_again_after_a_reconnect_counts_once(tmp_path: Path) -> None:
    """The edge node's subscription sends the feedback tag's value anew after a restart: a new sequence,
    same source time and value. The gateway keeps the first; another value or time is a new result."""
    async with MonitorStore.open(tmp_path / "monitor.sqlite3") as store:
        first = _batch(1, prediction(10, "P1"), feedback(25, 9.5, "P1"), feedback(26, 1.0))
        assert await store.ingest_batch("edge-a", "main", "q1", first) == 3
        # the part key's value may not be back yet when the feedback's comes: the same reading without it
        again = _batch(4, feedback(25, 9.5, "P1"), feedback(26, 1.0), feedback(25, 9.5), feedback(25, 9.6, "P1"))
        assert await store.ingest_batch("edge-a", "main", "q1", again[:3]) == 0
        again += _batch(8, feedback(27, 1.0))
        assert await store.ingest_batch("edge-a", "main", "q1", again[3:]) == 2  # other value, other time: new
        cursor = await store.cursor("edge-a", "main")
        assert cursor is not None and (cursor.last_sequence, cursor.gaps) == (8, 0)
        assert (await store.counts("edge-a", "main"))["feedback"] == 4
        # another device's reading is its own; the device's own in a new queue (data folder anew) is the same
        assert await store.ingest_batch("edge-b", "main", "q1", first) == 3
        assert await store.ingest_batch("edge-a", "main", "q2", _batch(1, feedback(25, 9.5, "P1"))) == 0


async def test_an_older_database_with_repeated_tag_feedback_migrates(tmp_path: Path) -> None:
    path = tmp_path / "monitor.sqlite3"
    with sqlite3.connect(path) as db:
        db.executescript(f"BEGIN; {MIGRATIONS[0]}; PRAGMA user_version = 1; COMMIT;")
        for n in (1, 2, 3):
            db.execute(
                "INSERT INTO feedback (sample_id, device, pipeline, origin, part_key, value, time, received_at) "
                "VALUES (?, 'edge-a', 'main', 'tag', 'P1', 9.5, '2026-11-30T08:00:25.000000+00:00', '')",
                (tag_sample_id("edge-a", "q1", "main", n),),
            )
    db.close()
    async with MonitorStore.open(path) as store:
        assert await store.schema_version() == len(MIGRATIONS)
        assert (await store.counts("edge-a", "main"))["feedback"] == 1
        assert await store.sequences("edge-a", "main") == [("q1", 1)]


async def test_everything_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "monitor.sqlite3"
    async with MonitorStore.open(path) as store:
        log = LogRecord(time=T0, level=LogLevel.WARNING, logger="edge_node.pipeline", message="input stale")
        await store.ingest_batch("edge-a", "", "q1", _batch(1, log))
        await store.ingest_batch("edge-a", "main", "q1", _batch(1, prediction(10), prediction(20)))
        await store.add_feedback(_fb("s1", 0.5, sequence=2))
    async with MonitorStore.open(path) as store:
        assert await store.schema_version() == len(MIGRATIONS)
        cursor = await store.cursor("edge-a", "main")
        assert cursor is not None and cursor.last_sequence == 2
        assert [p.sample_id for p in await store.pairs()] == ["s1"]
        assert [r.message for r in await store.logs("edge-a")] == ["input stale"]
        assert await store.add_feedback(_fb("s1", 0.5, sequence=2))
        assert (await store.counts("edge-a", "main")) == {"predictions": 2, "bad": 0, "feedback": 1, "gaps": 0}


async def test_figures_per_deployment_and_device(tmp_path: Path) -> None:
    async with MonitorStore.open(tmp_path / "monitor.sqlite3") as store:
        records = [prediction(i, version="1.0.0").model_copy(update={"latency_ms": float(i)}) for i in range(1, 101)]
        records[0] = records[0].model_copy(update={"status": 0x80890000})  # Bad_ConfigurationError
        old = [prediction(200 + i, version="0.9.0") for i in range(5)]

        def deployment_of(model: str, version: str) -> str | None:
            return {"1.0.0": "deploy-0002", "0.9.0": "deploy-0001"}.get(version)

        await store.ingest_batch("edge-a", "main", "q1", _batch(1, *old, *records), deployment_of=deployment_of)
        await store.add_feedback(_fb("s1", 1.0, sequence=6))
        await store.add_feedback(_fb("s2", 1.0, sequence=1))
        figures = await store.figures("deploy-0002", "edge-a")
        assert (figures.inferences, figures.errors, figures.feedback) == (100, 1, 1)
        assert (figures.latency_p50_ms, figures.latency_p99_ms) == (50.0, 99.0)
        assert (await store.figures("deploy-0001", "edge-a")).inferences == 5
        empty = await store.figures("deploy-0003", "edge-a")
        assert (empty.inferences, empty.latency_p50_ms) == (0, None)


async def test_counts_kept_as_rows_go_in_equal_a_count_of_the_rows(tmp_path: Path) -> None:
    path = tmp_path / "monitor.sqlite3"
    async with MonitorStore.open(path) as store:
        batch = _batch(1, *(prediction(i).model_copy(update={"status": 0x80000000 * (i % 3 == 0)}) for i in range(50)))
        for _ in range(3):  # fetched again: counted once
            await store.ingest_batch("edge-a", "main", "q1", batch[:30], deployment_of=lambda m, v: "d1")
            await store.ingest_batch("edge-a", "main", "q1", batch[20:], deployment_of=lambda m, v: "d1")
        figures = await store.figures("d1", "edge-a")
    with sqlite3.connect(path) as db:
        counted = db.execute("SELECT count(*), sum(status >= 2147483648) FROM predictions").fetchone()
    assert (figures.inferences, figures.errors) == tuple(counted) == (50, 17)


async def test_submit_feedback_keeps_the_first_key_given_and_checks_its_arguments(tmp_path: Path) -> None:
    async with MonitorStore.open(tmp_path / "monitor.sqlite3") as store:
        monitor = Monitor(store, known_device=lambda d: d == "edge-a", clock=lambda: T0 + timedelta(hours=1))
        await store.ingest_batch("edge-a", "main", "q1", _batch(1, prediction(10, "P1"), prediction(20, "P2")))
        # sequence first, then part key, then time
        assert await monitor.submit_feedback("edge-a", "main", 2, T0, "P1", 1.0, "a")
        assert await monitor.submit_feedback("edge-a", "main", 0, T0 + timedelta(seconds=25), "P1", 2.0, "b")
        assert await monitor.submit_feedback("edge-a", "main", 0, T0 + timedelta(seconds=15), "", 3.0, "c")
        assert {p.sample_id: p.prediction.sequence for p in await store.pairs()} == {"a": 2, "b": 1, "c": 1}
        for args, error in (
            (("edge-a", "main", 1, None, "", 1.0, ""), UsageError),
            (("edge-x", "main", 1, None, "", 1.0, "x"), NotFound),
            (("edge-a", "", 1, None, "", 1.0, "x"), UsageError),
            (("edge-a", "main", 1, None, "", float("inf"), "x"), UsageError),
            (("edge-a", "main", 2**63, None, "", 1.0, "x"), OutOfRange),
            (("edge-a", "main", 0, None, "", 1.0, "x"), UsageError),
            (("edge-a", "main", 1, None, "", 1.0, "x" * 300), UsageError),
        ):
            with pytest.raises(error):
                await monitor.submit_feedback(*args)  # type: ignore[arg-type]
        assert len(await store.pairs()) == 3
