"""The durable record queue of an edge node: ``<data_dir>/monitor/records.sqlite3`` (SQLite, WAL).

Records are numbered per stream 1, 2, 3... (sdk.monitor.records). ``append`` only
puts a record in a buffer and never waits: a background task (``run``) writes
the buffer in one transaction every ``FLUSH_INTERVAL_S`` or as soon as
``FLUSH_RECORDS`` wait, together with each stream's next sequence number and the
statistics. ``fetch`` reads the database only, so a collector sees committed
records only: a SIGKILL loses at most the records of the last
``FLUSH_INTERVAL_S`` that no collector has seen, and their sequence numbers are
issued again to the records that come after the restart, so no collector ever
sees one sequence number on two records. Acknowledged records are deleted,
while each stream's next sequence number stays in the ``streams`` table: a
sequence number is never used twice in one QueueId.

Overflow policy: the queue holds at most ``max_records`` records in all. When a
write would exceed it, the OLDEST unacknowledged records of the streams just
written to are deleted (the newest data matters most for monitoring), and the
stream's persistent ``dropped`` counter grows by their number; a collector sees
the gap in the sequence numbers. While writes fail (a full disk), the memory buffer is bounded
by ``max_records`` the same way.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import aiosqlite

from sdk.cancel import honour_cancel
from sdk.errors import NotFound, OutOfRange, QueueMismatch
from sdk.monitor.records import Record, RecordEnvelope

_log = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 0.2
FLUSH_RECORDS = 500
FETCH_MAX_RECORDS = 1000
"""The most records one fetch returns (MaxRecords 0 asks for this many)."""
_LARGEST_SEQUENCE = (1 << 63) - 1
"""SQLite's largest integer: nothing comes after it."""
FETCH_MAX_BYTES = 512 << 10

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS streams (
    stream TEXT PRIMARY KEY, next_sequence INTEGER NOT NULL, dropped INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS records (
    stream TEXT NOT NULL, sequence INTEGER NOT NULL, json TEXT NOT NULL, PRIMARY KEY (stream, sequence)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS statistics (pipeline TEXT PRIMARY KEY, json TEXT NOT NULL);
"""


@dataclass(frozen=True)
class Fetched:
    """What one fetch returns."""

    queue_id: str
    envelopes: list[str]  # RecordEnvelope JSON, in sequence order
    last_sequence: int  # the newest committed sequence number of the stream (0: none yet)
    more_waiting: bool  # records after the last one returned wait


@dataclass
class _Stream:
    next_sequence: int = 1  # the next number to issue (in memory, ahead of the database by the buffer)
    committed: int = 0  # the newest sequence number on disk
    count: int = 0  # records on disk
    dropped: int = 0


class RecordQueue:
    """One edge node's queue of records, by stream."""

    def __init__(self, path: Path, max_records: int = 1_000_000) -> None:
        self.path = path
        self.max_records = max_records
        self.queue_id = ""
        self._db: aiosqlite.Connection | None = None
        self._streams: dict[str, _Stream] = {}
        self._buffer: list[tuple[str, int, str]] = []
        self._stats: dict[str, str] = {}  # pipeline -> statistics JSON waiting to be written
        self._saved_stats: dict[str, str] = {}
        self._pending_drops: dict[str, int] = defaultdict(int)  # dropped from the buffer, not yet counted on disk
        self._full = asyncio.Event()
        self._lock = asyncio.Lock()  # one write transaction at a time
        self.committed = asyncio.Event()  # set after each write that committed records

    async def open(self, streams: list[str]) -> None:
        """Open (or create) the database; ``streams`` are the ones fetch accepts."""
        await asyncio.to_thread(self.path.parent.mkdir, parents=True, exist_ok=True)
        db = await aiosqlite.connect(self.path)
        try:
            await db.execute("PRAGMA journal_mode=WAL")
            await db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a commit survives a process kill
            await db.executescript(_SCHEMA)
            row = await (await db.execute("SELECT value FROM meta WHERE key = 'queue_id'")).fetchone()
            if row is None:
                self.queue_id = secrets.token_hex(8)
                await db.execute("INSERT INTO meta VALUES ('queue_id', ?)", (self.queue_id,))
            else:
                self.queue_id = str(row[0])
            for name in streams:
                await db.execute("INSERT OR IGNORE INTO streams (stream, next_sequence) VALUES (?, 1)", (name,))
            await db.commit()
            counts = {
                str(r[0]): (int(r[1]), int(r[2]))
                for r in await db.execute_fetchall(
                    "SELECT stream, count(*), max(sequence) FROM records GROUP BY stream"
                )
            }
            for name, next_sequence, dropped in await db.execute_fetchall(
                "SELECT stream, next_sequence, dropped FROM streams"
            ):
                count, _ = counts.get(name, (0, 0))
                self._streams[name] = _Stream(next_sequence, next_sequence - 1, count, dropped)
            self._saved_stats = {
                str(r[0]): str(r[1]) for r in await db.execute_fetchall("SELECT pipeline, json FROM statistics")
            }
        except BaseException:
            await db.close()
            raise
        self._db = db

    async def close(self) -> None:
        """Write what is buffered and close."""
        if self._db is None:
            return
        try:
            await self.flush()
        finally:
            await self._db.close()
            self._db = None

    @property
    def streams(self) -> list[str]:
        """The stream names, sorted."""
        return sorted(self._streams)

    def append(self, stream: str, record: Record) -> int:
        """Queue ``record`` (written within FLUSH_INTERVAL_S); its sequence number. Never waits."""
        state = self._streams.get(stream)
        if state is None:
            raise NotFound(f"record stream {stream!r} does not exist")
        sequence = state.next_sequence
        state.next_sequence += 1
        self._buffer.append((stream, sequence, record.model_dump_json()))
        if len(self._buffer) > self.max_records:  # writes keep failing (disk full): memory stays bounded too
            lost, _, _ = self._buffer.pop(0)
            self._pending_drops[lost] += 1
        if len(self._buffer) >= FLUSH_RECORDS:
            self._full.set()
        return sequence

    def put_statistics(self, pipeline: str, statistics_json: str) -> None:
        """Keep this statistics snapshot with the next write."""
        self._stats[pipeline] = statistics_json

    def saved_statistics(self, pipeline: str) -> str | None:
        """The statistics JSON stored for a pipeline when the queue opened."""
        return self._saved_stats.get(pipeline)

    def dropped(self, stream: str) -> int:
        """Records of the stream dropped by the overflow policy, ever."""
        state = self._streams.get(stream)
        return state.dropped if state else 0

    def waiting(self, stream: str) -> int:
        """Committed records of the stream not yet acknowledged."""
        state = self._streams.get(stream)
        return state.count if state else 0

    def last_sequence(self, stream: str) -> int:
        """The newest committed sequence number of the stream (0: none yet)."""
        state = self._streams.get(stream)
        return state.committed if state else 0

    @property
    def size(self) -> int:
        """Committed records in all streams."""
        return sum(s.count for s in self._streams.values())

    async def run(self) -> None:
        """Write the buffer every FLUSH_INTERVAL_S, or at once when FLUSH_RECORDS wait; forever."""
        while True:
            try:
                await asyncio.wait_for(self._full.wait(), FLUSH_INTERVAL_S)
            except TimeoutError:
                pass
            honour_cancel()
            try:
                await self.flush()
            except aiosqlite.Error as exc:  # e.g. disk full: keep the buffer and try again
                _log.warning("record queue: write failed (%s); %d record(s) wait in memory", exc, len(self._buffer))
                await asyncio.sleep(1.0)

    async def flush(self) -> None:
        """Write the buffered records and statistics in one transaction."""
        db = self._require()
        async with self._lock:
            self._full.clear()
            batch, stats = self._buffer, self._stats
            if not batch and not stats and not any(self._pending_drops.values()):
                return
            self._buffer, self._stats = [], {}
            # The transaction runs in SQLite's thread and ends there even when this task is cancelled (the
            # node stopping): wait for its outcome, else a batch already committed would be put back into
            # the buffer and written twice (UNIQUE stream, sequence: every later flush would fail too).
            write = asyncio.ensure_future(self._write(db, batch, stats))
            cancelled = False
            while not write.done():
                try:
                    await asyncio.wait([write])
                except asyncio.CancelledError:
                    cancelled = True
            failure = write.exception()
            if failure is not None:
                self._buffer = batch + self._buffer  # nothing was committed: write it with the next flush
                while len(self._buffer) > self.max_records:
                    self._pending_drops[self._buffer.pop(0)[0]] += 1
                self._stats = {**stats, **self._stats}
                raise failure
        if write.result():
            self.committed.set()
        if cancelled:
            raise asyncio.CancelledError

    async def _write(self, db: aiosqlite.Connection, batch: list[tuple[str, int, str]], stats: dict[str, str]) -> bool:
        added: dict[str, int] = defaultdict(int)
        newest: dict[str, int] = {}
        for stream, sequence, _ in batch:
            added[stream] += 1
            newest[stream] = sequence
        drops = self._overflow(added)
        unbuffered = dict(self._pending_drops)
        try:
            await db.executemany("INSERT INTO records VALUES (?, ?, ?)", batch)
            for stream, sequence in newest.items():
                await db.execute(
                    "UPDATE streams SET next_sequence = max(next_sequence, ?) WHERE stream = ?", (sequence + 1, stream)
                )
            for stream, n in drops.items():
                # Records of a stream are always one run of sequence numbers: drop the n lowest.
                await db.execute(
                    "DELETE FROM records WHERE stream = ? AND sequence IN "
                    "(SELECT sequence FROM records WHERE stream = ? ORDER BY sequence LIMIT ?)",
                    (stream, stream, n),
                )
                await db.execute("UPDATE streams SET dropped = dropped + ? WHERE stream = ?", (n, stream))
            for stream, n in unbuffered.items():
                await db.execute("UPDATE streams SET dropped = dropped + ? WHERE stream = ?", (n, stream))
            await db.executemany("INSERT OR REPLACE INTO statistics VALUES (?, ?)", list(stats.items()))
            await db.commit()
        except BaseException:
            await db.rollback()
            raise
        for stream, n in added.items():
            state = self._streams[stream]
            state.count += n - drops.get(stream, 0)
            state.dropped += drops.get(stream, 0)
            state.committed = max(state.committed, newest[stream])
        for stream, n in unbuffered.items():
            self._pending_drops[stream] -= n
            self._streams[stream].dropped += n
        if drops:
            _log.warning("record queue full (%d records): dropped the oldest %s", self.max_records, dict(drops))
        return bool(batch)

    def _overflow(self, added: dict[str, int]) -> dict[str, int]:
        """How many of the oldest records to drop per stream so the queue keeps max_records."""
        excess = self.size + sum(added.values()) - self.max_records
        drops: dict[str, int] = {}
        for stream in sorted(added, key=lambda s: -(self._streams[s].count + added[s])):
            if excess <= 0:
                break
            n = min(excess, self._streams[stream].count + added[stream])
            drops[stream] = n
            excess -= n
        return drops

    def _require(self) -> aiosqlite.Connection:
        if self._db is None:
            raise RuntimeError("record queue is not open")
        return self._db

    def _stream(self, stream: str) -> _Stream:
        state = self._streams.get(stream)
        if state is None:
            known = ", ".join(repr(s) for s in self.streams)
            raise NotFound(f"record stream {stream!r} does not exist (streams: {known})")
        return state

    async def fetch(self, stream: str, after: int, max_records: int = 0, max_bytes: int = FETCH_MAX_BYTES) -> Fetched:
        """Committed records of ``stream`` with sequence > ``after``, at most ``max_records`` (0: the most allowed).

        Also at most about ``max_bytes`` of JSON (always at least one record), so an answer fits one message.
        """
        state = self._stream(stream)
        if after < 0:
            raise OutOfRange(f"AfterSequence {after} is negative")
        after = min(after, _LARGEST_SEQUENCE)  # no record comes after that (SQLite integers are 64-bit signed)
        limit = FETCH_MAX_RECORDS if max_records <= 0 else min(max_records, FETCH_MAX_RECORDS)
        async with self._lock:  # one connection: never read in the middle of a write transaction
            rows = list(
                await self._require().execute_fetchall(
                    "SELECT sequence, json FROM records WHERE stream = ? AND sequence > ? ORDER BY sequence LIMIT ?",
                    (stream, after, limit + 1),
                )
            )
        envelopes: list[str] = []
        size = 0
        for seq, text in rows[:limit]:
            envelope = f'{{"sequence":{int(seq)},"record":{text}}}'
            size += len(envelope)
            if envelopes and size > max_bytes:
                break
            envelopes.append(envelope)
        more = len(rows) > len(envelopes)
        return Fetched(self.queue_id, envelopes, state.committed, more)

    async def acknowledge(self, stream: str, queue_id: str, up_to: int) -> int:
        """Delete the records of ``stream`` with sequence <= ``up_to``; how many were deleted."""
        state = self._stream(stream)
        if queue_id != self.queue_id:
            raise QueueMismatch(f"QueueId {queue_id!r} is not this queue's ({self.queue_id!r}): fetch again from 0")
        if up_to > state.committed:
            newest = state.committed
            raise OutOfRange(f"UpToSequence {up_to} is beyond the newest record of stream {stream!r} ({newest})")
        db = self._require()
        async with self._lock:
            cursor = await db.execute("DELETE FROM records WHERE stream = ? AND sequence <= ?", (stream, up_to))
            await db.commit()
        removed = max(cursor.rowcount, 0)
        state.count -= removed
        return removed


def parse_envelope(text: str) -> RecordEnvelope:
    """A RecordEnvelope from the JSON fetch returns."""
    return RecordEnvelope.model_validate_json(text)
