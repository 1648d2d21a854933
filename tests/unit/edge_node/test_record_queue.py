"""The record queue on a real SQLite file: append, fetch, acknowledge, restart, overflow."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime
from pathlib import Path

import pytest

from edge_node.monitor.queue import FETCH_MAX_RECORDS, RecordQueue, parse_envelope
from sdk.errors import NotFound, OutOfRange, QueueMismatch
from sdk.monitor.records import LOG_STREAM, FeedbackRecord, LogLevel, LogRecord


def feedback(value: float) -> FeedbackRecord:
    return FeedbackRecord(time=datetime.now(UTC), value=value, part_key=f"P{value:g}")


async def opened(path: Path, max_records: int = 1_000_000) -> RecordQueue:
    queue = RecordQueue(path, max_records)
    await queue.open(["main", LOG_STREAM])
    return queue


async def test_append_fetch_acknowledge_and_restart(tmp_path: Path) -> None:
    path = tmp_path / "records.sqlite3"
    queue = await opened(path)
    assert [queue.append("main", feedback(i)) for i in range(5)] == [1, 2, 3, 4, 5]
    first = await queue.fetch("main", 0, 10)
    assert first.envelopes == [] and first.last_sequence == 0  # buffered, not committed: not visible
    await queue.flush()
    fetched = await queue.fetch("main", 0, 3)
    envelopes = [parse_envelope(e) for e in fetched.envelopes]
    assert [e.sequence for e in envelopes] == [1, 2, 3]
    assert [e.record.value for e in envelopes] == [0.0, 1.0, 2.0]  # type: ignore[union-attr]
    assert fetched.last_sequence == 5 and fetched.more_waiting
    rest = await queue.fetch("main", 3, 0)
    assert [parse_envelope(e).sequence for e in rest.envelopes] == [4, 5] and not rest.more_waiting
    assert await queue.acknowledge("main", fetched.queue_id, 3) == 3
    assert await queue.acknowledge("main", fetched.queue_id, 3) == 0  # a repeated acknowledgement is harmless
    assert queue.waiting("main") == 2
    queue.append(LOG_STREAM, LogRecord(time=datetime.now(UTC), level=LogLevel.ERROR, logger="x", message="m"))
    await queue.close()

    again = await opened(path)
    assert again.queue_id == fetched.queue_id
    assert [parse_envelope(e).sequence for e in (await again.fetch("main", 0)).envelopes] == [4, 5]
    assert await again.acknowledge("main", again.queue_id, 5) == 2
    await again.close()

    third = await opened(path)  # every record acknowledged and deleted: numbering goes on, never starts again
    assert third.append("main", feedback(9)) == 6
    assert third.append(LOG_STREAM, feedback(1)) == 2
    await third.flush()
    assert [parse_envelope(e).sequence for e in (await third.fetch("main", 0)).envelopes] == [6]
    await third.close()


async def test_a_fetch_after_any_possible_sequence_is_empty(tmp_path: Path) -> None:
    """AfterSequence is a UInt64 on the wire: one beyond SQLite's integers finds nothing, it is no error."""
    queue = await opened(tmp_path / "records.sqlite3")
    queue.append("main", feedback(1))
    await queue.flush()
    fetched = await queue.fetch("main", (1 << 64) - 1, 0)
    assert fetched.envelopes == [] and fetched.last_sequence == 1 and not fetched.more_waiting
    await queue.close()


async def test_a_new_data_folder_is_a_new_queue(tmp_path: Path) -> None:
    a = await opened(tmp_path / "a" / "records.sqlite3")
    b = await opened(tmp_path / "b" / "records.sqlite3")
    assert a.queue_id != b.queue_id and len(a.queue_id) == 16
    await a.close()
    await b.close()


async def test_refusals(tmp_path: Path) -> None:
    queue = await opened(tmp_path / "records.sqlite3")
    queue.append("main", feedback(1))
    await queue.flush()
    with pytest.raises(QueueMismatch):
        await queue.acknowledge("main", "0123456789abcdef", 1)
    with pytest.raises(NotFound):
        await queue.fetch("other", 0)
    with pytest.raises(NotFound):
        queue.append("other", feedback(1))
    with pytest.raises(OutOfRange):
        await queue.acknowledge("main", queue.queue_id, 2)  # nothing a collector can have seen
    with pytest.raises(OutOfRange):
        await queue.fetch("main", -1)
    assert queue.waiting("main") == 1
    await queue.close()


async def test_overflow_drops_the_oldest_and_counts_them(tmp_path: Path) -> None:
    path = tmp_path / "records.sqlite3"
    queue = await opened(path, max_records=10)
    for i in range(7):
        queue.append("main", feedback(i))
    await queue.flush()
    for i in range(7, 25):
        queue.append("main", feedback(i))
        if i % 5 == 0:
            await queue.flush()
    await queue.flush()
    fetched = await queue.fetch("main", 0)
    assert [parse_envelope(e).sequence for e in fetched.envelopes] == list(range(16, 26))
    assert queue.dropped("main") == 15 and queue.size == 10
    await queue.close()
    again = await opened(path, max_records=10)
    assert again.dropped("main") == 15 and again.waiting("main") == 10
    assert again.append("main", feedback(0)) == 26
    await again.close()


async def test_fetch_is_capped_and_background_writer_commits(tmp_path: Path) -> None:
    queue = await opened(tmp_path / "records.sqlite3")
    task = asyncio.create_task(queue.run())
    try:
        for i in range(FETCH_MAX_RECORDS + 5):
            queue.append("main", feedback(i))

        async def committed() -> bool:
            return queue.last_sequence("main") == FETCH_MAX_RECORDS + 5

        deadline = asyncio.get_running_loop().time() + 5
        while not await committed():
            assert asyncio.get_running_loop().time() < deadline, "records not written by the background task"
            await asyncio.sleep(0.05)
        fetched = await queue.fetch("main", 0, 1_000_000)
        assert len(fetched.envelopes) == FETCH_MAX_RECORDS and fetched.more_waiting
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await queue.close()


async def test_statistics_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "records.sqlite3"
    queue = await opened(path)
    queue.put_statistics("main", '{"pipeline":"main","inferences":3}')
    await queue.close()
    again = await opened(path)
    assert again.saved_statistics("main") == '{"pipeline":"main","inferences":3}'
    await again.close()


async def test_a_flush_cancelled_mid_write_loses_and_repeats_nothing(tmp_path: Path) -> None:
    """The writer task is cancelled while its transaction is in SQLite's thread (the node stopping): neither
    the next flush nor the close may write the batch twice (UNIQUE stream, sequence) or lose it."""
    queue = await opened(tmp_path / "records.sqlite3")
    chance = random.Random(7)
    appended, failures = 0, []
    for _ in range(300):  # cancelled at random points, from before the INSERT to after the COMMIT
        for _ in range(200):
            appended += 1
            queue.append("main", feedback(appended))
        writer = asyncio.create_task(queue.flush())
        await asyncio.sleep(chance.random() * 0.004)
        writer.cancel()
        [outcome] = await asyncio.gather(writer, return_exceptions=True)
        if outcome is not None and not isinstance(outcome, asyncio.CancelledError):
            failures.append(repr(outcome))
    await queue.close()
    assert failures == []
    again = await opened(tmp_path / "records.sqlite3")
    sequences: list[int] = []
    while page := (await again.fetch("main", sequences[-1] if sequences else 0, FETCH_MAX_RECORDS)).envelopes:
        sequences += [parse_envelope(e).sequence for e in page]
    assert sequences == list(range(1, appended + 1))
    await again.close()


async def test_a_flush_cancelled_while_it_commits_writes_each_record_once(tmp_path: Path) -> None:
    """A node that stops cancels the queue's writer, possibly while SQLite commits its batch in aiosqlite's thread
    (seen with 50 pipelines): the committed batch must not be taken for unwritten and written again at close
    (UNIQUE constraint failed). The flush is cancelled exactly while the commit is under way."""
    queue = await opened(tmp_path / "records.sqlite3")
    try:
        db = queue._require()
        commit = db.commit
        committing = asyncio.Event()

        async def slow_commit() -> None:
            done = asyncio.ensure_future(commit())  # in aiosqlite's thread, whatever happens to who waits for it
            committing.set()
            await asyncio.sleep(0.05)
            await done

        db.commit = slow_commit  # type: ignore[method-assign]
        for i in range(200):
            queue.append("main", feedback(float(i)))
        flush = asyncio.create_task(queue.flush())
        await committing.wait()
        flush.cancel()
        await asyncio.gather(flush, return_exceptions=True)
        db.commit = commit  # type: ignore[method-assign]
        for i in range(5):
            queue.append("main", feedback(float(i)))
        await queue.flush()  # as close() does: what is left, once
        assert queue.waiting("main") == 205
        sequences = [parse_envelope(e).sequence for e in (await queue.fetch("main", 0)).envelopes]
        assert sequences == list(range(1, 206))
    finally:
        await queue.close()
