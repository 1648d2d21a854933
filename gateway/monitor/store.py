"""The Model Monitor's own database: prediction records, feedback, log records and collection cursors.

``<gateway data_dir>/monitor.sqlite3``, one SQLite file through aiosqlite (its own
thread), WAL journal, apart from gateway.sqlite3 because it takes a high volume of
writes that the Model Manager's small, precious state should not share. Migrations
are numbered scripts recorded in ``PRAGMA user_version``, as in gateway/store/sqlite.py.

Exactly once (sdk/monitor/records.py): every record is keyed by (device, QueueId,
stream, sequence) and inserted with INSERT OR IGNORE, and a fetched batch is
stored with its stream's cursor in ONE transaction, so a batch fetched again
after a crash or a lost acknowledgement is stored once and the cursor never
runs ahead of what is stored.

Joining feedback to predictions (``pairs``): a feedback names its prediction by
record sequence, else by part key, else by source time; the first one given
decides. The match is looked for when the feedback arrives and, while none is
found, again after every batch of that device's pipeline stream, so feedback that
arrives before its prediction record (the edge node's queue was behind) still
joins. A sequence names a prediction outright. A part key joins the newest
prediction with that key at or before the feedback's time, else (the edge node's
clock ahead of the gateway's) the newest with that key. A source time joins
the newest prediction at or before it, and only once the stream holds a
prediction later than that time: records arrive in sequence order, so from then
on no stored-later record can be a better match.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import sqlite3
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosqlite

from gateway.monitor.base import LATENCY_WINDOW, Cursor, Feedback, Figures, Pair, StoredPrediction
from gateway.monitor.export import ExportRow
from sdk.errors import InvalidState, ModelLineError, NotFound, UsageError
from sdk.monitor.records import FeedbackRecord, LogRecord, PredictionRecord, RecordEnvelope

_log = logging.getLogger(__name__)

MIGRATIONS: list[str] = [
    # 1: the first release
    """
    CREATE TABLE predictions (
        device TEXT NOT NULL, queue_id TEXT NOT NULL, stream TEXT NOT NULL, sequence INTEGER NOT NULL,
        time TEXT NOT NULL, source_time TEXT, model TEXT NOT NULL, version TEXT NOT NULL, deployment_id TEXT,
        status INTEGER NOT NULL, latency_ms REAL NOT NULL, skipped INTEGER NOT NULL, part_key TEXT,
        inputs_json TEXT NOT NULL, outputs_json TEXT NOT NULL, input_status_json TEXT NOT NULL,
        PRIMARY KEY (device, queue_id, stream, sequence)
    );
    CREATE INDEX predictions_by_time ON predictions (device, stream, time);
    CREATE INDEX predictions_by_part ON predictions (device, stream, part_key, time) WHERE part_key IS NOT NULL;
    CREATE INDEX predictions_by_sequence ON predictions (device, stream, sequence);
    CREATE INDEX predictions_by_deployment ON predictions (deployment_id, device, time) WHERE deployment_id IS NOT NULL;
    -- counted as rows go in (INSERT OR IGNORE skips the trigger for a record stored before), so that the
    -- figures need not count a table that grows by millions of rows a day
    CREATE TABLE prediction_counts (
        deployment_id TEXT NOT NULL, device TEXT NOT NULL, inferences INTEGER NOT NULL, errors INTEGER NOT NULL,
        PRIMARY KEY (deployment_id, device)
    );
    CREATE TRIGGER count_prediction AFTER INSERT ON predictions WHEN NEW.deployment_id IS NOT NULL BEGIN
        INSERT INTO prediction_counts VALUES (NEW.deployment_id, NEW.device, 1, NEW.status >= 2147483648)
        ON CONFLICT (deployment_id, device) DO UPDATE SET
            inferences = inferences + 1, errors = errors + excluded.errors;
    END;
    CREATE TABLE feedback (
        sample_id TEXT PRIMARY KEY, device TEXT NOT NULL, pipeline TEXT NOT NULL, origin TEXT NOT NULL,
        sequence INTEGER, source_time TEXT, part_key TEXT, value REAL NOT NULL, time TEXT NOT NULL,
        received_at TEXT NOT NULL, match_queue_id TEXT, match_sequence INTEGER
    );
    CREATE INDEX feedback_unmatched ON feedback (device, pipeline) WHERE match_sequence IS NULL;
    CREATE TABLE logs (
        device TEXT NOT NULL, queue_id TEXT NOT NULL, stream TEXT NOT NULL, sequence INTEGER NOT NULL,
        time TEXT NOT NULL, level TEXT NOT NULL, logger TEXT NOT NULL, message TEXT NOT NULL,
        PRIMARY KEY (device, queue_id, stream, sequence)
    );
    CREATE TABLE cursors (
        device TEXT NOT NULL, stream TEXT NOT NULL, queue_id TEXT NOT NULL, last_sequence INTEGER NOT NULL,
        gaps INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (device, stream)
    );
    """,
    # 2: a tag feedback the edge node records again counts once: its subscription sends the tag's value anew
    # after a restart or reconnect (a new sequence; the same source time and value; the part key too, or none
    # when the part key tag's value had not come back yet). One tag has one value per source time, so
    # (device, pipeline, time, value) is one reading. Retention (gateway/monitor/retention.py) finds old logs
    # and the feedback of a prediction by index.
    """
    DELETE FROM feedback WHERE origin = 'tag' AND rowid NOT IN (
        SELECT min(rowid) FROM feedback WHERE origin = 'tag' GROUP BY device, pipeline, time, value
    );
    CREATE UNIQUE INDEX feedback_tag_once ON feedback (device, pipeline, time, value) WHERE origin = 'tag';
    CREATE INDEX feedback_by_match ON feedback (device, pipeline, match_queue_id, match_sequence)
        WHERE match_sequence IS NOT NULL;
    CREATE INDEX feedback_by_time ON feedback (time);
    CREATE INDEX logs_by_time ON logs (time);
    """,
]


class MonitorStoreError(ModelLineError):
    """The monitor database cannot be opened or is newer than this release."""


class FeedbackConflict(UsageError):
    """A SampleId already stored with a different value or prediction key."""


def _ts(value: datetime | None) -> str | None:
    """Stored as UTC ISO text, so that text order is time order."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def store_time(value: datetime) -> str:
    """A time as the store compares it (UTC ISO text)."""
    return _ts(value) or ""


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value is not None else None


# The join of one feedback row ``f`` (see the module docstring); the columns are (queue_id, sequence).
_MATCH = """
    SELECT p.queue_id, p.sequence FROM predictions p
    WHERE p.device = f.device AND p.stream = f.pipeline AND (
        (f.sequence IS NOT NULL AND p.sequence = f.sequence)
        OR (f.sequence IS NULL AND f.part_key IS NOT NULL AND p.part_key = f.part_key AND (p.time <= f.time
            OR NOT EXISTS (SELECT 1 FROM predictions earlier WHERE earlier.device = f.device
            AND earlier.stream = f.pipeline AND earlier.part_key = f.part_key AND earlier.time <= f.time)))
        OR (f.sequence IS NULL AND f.part_key IS NULL AND p.time <= f.source_time AND EXISTS (
            SELECT 1 FROM predictions later WHERE later.device = f.device AND later.stream = f.pipeline
            AND later.time > f.source_time))
    )
    ORDER BY p.time DESC, p.sequence DESC LIMIT 1
"""
_RETRY = f"""
    UPDATE feedback AS f SET (match_queue_id, match_sequence) = ({_MATCH})
    WHERE f.match_sequence IS NULL AND f.device = ? AND f.pipeline = ?
"""


def tag_sample_id(device: str, queue_id: str, stream: str, sequence: int) -> str:
    """The sample id of a feedback that came as a record: the record's place, so a re-delivery counts once."""
    return f"{device}/{queue_id}/{stream}/{sequence}"


class MonitorStore:
    """The monitor database; one writer at a time (an asyncio lock), each batch one transaction."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db
        self._lock = asyncio.Lock()  # the connection is shared: transactions of different devices must not mix

    @classmethod
    @asynccontextmanager
    async def open(cls, path: Path) -> AsyncIterator[MonitorStore]:
        """Open (creating and migrating as needed) and close at the end."""
        path.parent.mkdir(parents=True, exist_ok=True)
        db = await aiosqlite.connect(path, isolation_level=None)  # transactions are explicit
        try:
            db.row_factory = aiosqlite.Row
            # Only a database without tables takes it: retention then gives freed pages back to the file
            # system bit by bit (PRAGMA incremental_vacuum) instead of a VACUUM that rewrites the whole file.
            await db.execute("PRAGMA auto_vacuum=INCREMENTAL")
            await db.execute("PRAGMA journal_mode=WAL")
            await db.execute("PRAGMA synchronous=FULL")  # what is acknowledged to an edge node is on disk
            await cls._migrate(db, path)
            yield cls(db)
        finally:
            await db.close()

    @classmethod
    @asynccontextmanager
    async def open_readonly(cls, path: Path) -> AsyncIterator[MonitorStore]:
        """Open an existing database for reading only (``mode=ro``): safe beside a running gateway, whose
        writes a WAL reader never blocks nor sees half done. Nothing is created or migrated."""
        uri = await asyncio.to_thread(lambda: path.absolute().as_uri() if path.is_file() else None)
        if uri is None:
            raise NotFound(f"no monitor database at {path} (the gateway's data folder holds monitor.sqlite3)")
        try:
            db = await aiosqlite.connect(f"{uri}?mode=ro", uri=True, isolation_level=None)
        except sqlite3.Error as exc:
            raise MonitorStoreError(f"{path} cannot be opened: {exc}") from None
        try:
            db.row_factory = aiosqlite.Row
            try:
                (current,) = await (await db.execute("PRAGMA user_version")).fetchone()  # type: ignore[misc]
            except sqlite3.DatabaseError as exc:
                raise MonitorStoreError(f"{path} is not a monitor database: {exc}") from None
            if current > len(MIGRATIONS):
                raise MonitorStoreError(
                    f"{path} was written by a newer ModelLine (schema {current}); upgrade ModelLine"
                )
            if current == 0:
                raise MonitorStoreError(f"{path} is not a monitor database (no schema)")
            yield cls(db)
        finally:
            await db.close()

    @asynccontextmanager
    async def snapshot(self) -> AsyncIterator[None]:
        """One read transaction: every query inside it sees the database as of its first read (WAL snapshot),
        whatever a running gateway commits meanwhile."""
        async with self._lock:
            await self._db.execute("BEGIN")
            try:
                yield
            finally:
                await self._db.execute("COMMIT")

    @staticmethod
    async def _migrate(db: aiosqlite.Connection, path: Path) -> None:
        (current,) = await (await db.execute("PRAGMA user_version")).fetchone()  # type: ignore[misc]
        if current > len(MIGRATIONS):
            raise MonitorStoreError(f"{path} was written by a newer ModelLine (schema {current}); upgrade ModelLine")
        for number, script in enumerate(MIGRATIONS[current:], start=current + 1):
            await db.executescript(f"BEGIN; {script}; PRAGMA user_version = {number}; COMMIT;")

    async def schema_version(self) -> int:
        """The schema version of the open database."""
        (version,) = await (await self._db.execute("PRAGMA user_version")).fetchone()  # type: ignore[misc]
        return int(version)

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._lock:
            await self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                await self._db.execute("ROLLBACK")
                raise
            await self._db.execute("COMMIT")

    async def _rows(self, sql: str, *params: Any) -> list[aiosqlite.Row]:
        return list(await (await self._db.execute(sql, params)).fetchall())

    async def read(self, sql: str, *params: Any) -> list[aiosqlite.Row]:
        """The rows of one query (for housekeeping such as gateway/monitor/retention.py)."""
        return await self._rows(sql, *params)

    async def write(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> list[int]:
        """Run statements in one transaction; how many rows each changed."""
        changed = []
        async with self._transaction() as db:
            for sql, params in statements:
                cursor = await db.execute(sql, params)
                await cursor.fetchall()  # a pragma such as incremental_vacuum works one step per row
                changed.append(cursor.rowcount)
        return changed

    # --- collection -----------------------------------------------------------------------------

    async def cursor(self, device: str, stream: str) -> Cursor | None:
        """Where collection of a stream stands; None before its first batch."""
        rows = await self._rows("SELECT * FROM cursors WHERE device = ? AND stream = ?", device, stream)
        return Cursor(rows[0]["queue_id"], rows[0]["last_sequence"], rows[0]["gaps"]) if rows else None

    async def ingest_batch(
        self,
        device: str,
        stream: str,
        queue_id: str,
        envelopes: Sequence[RecordEnvelope],
        *,
        through: int = 0,
        deployment_of: Callable[[str, str], str | None] | None = None,
    ) -> int:
        """Store a fetched batch and move the stream's cursor, in one transaction; returns how many records were new.

        Records already stored (a batch fetched again) are ignored. ``through`` moves the cursor
        past sequences that were handled but not stored (records that did not validate).
        A new ``queue_id`` starts the cursor over; sequence jumps count as gaps. ``deployment_of(model,
        version)`` names the deployment that brought a prediction's model to the device, if any."""
        sequences = sorted({e.sequence for e in envelopes})
        now = _ts(datetime.now(UTC))
        predictions, logs, feedback = [], [], []
        for e in envelopes:
            r = e.record
            if isinstance(r, PredictionRecord):
                predictions.append(
                    (
                        device,
                        queue_id,
                        stream,
                        e.sequence,
                        _ts(r.time),
                        _ts(r.source_time),
                        r.model,
                        r.version,
                        deployment_of(r.model, r.version) if deployment_of else None,
                        r.status,
                        r.latency_ms,
                        r.skipped,
                        r.part_key,
                        json.dumps(r.inputs),
                        json.dumps(r.outputs),
                        json.dumps(r.input_status),
                    )
                )
            elif isinstance(r, LogRecord):
                logs.append((device, queue_id, stream, e.sequence, _ts(r.time), r.level.value, r.logger, r.message))
            elif isinstance(r, FeedbackRecord):
                # A tag feedback names its prediction by part key when the binding has one, else by time.
                feedback.append(
                    (
                        tag_sample_id(device, queue_id, stream, e.sequence),
                        device,
                        stream,
                        "tag",
                        None,
                        None if r.part_key else _ts(r.time),
                        r.part_key or None,
                        r.value,
                        _ts(r.time),
                        now,
                    )
                )
        async with self._transaction() as db:
            new = 0
            if predictions:
                cur = await db.executemany(
                    f"INSERT OR IGNORE INTO predictions VALUES ({', '.join('?' * 16)})", predictions
                )
                new += cur.rowcount
            if logs:
                cur = await db.executemany(f"INSERT OR IGNORE INTO logs VALUES ({', '.join('?' * 8)})", logs)
                new += cur.rowcount
            if feedback:
                cur = await db.executemany(
                    "INSERT OR IGNORE INTO feedback (sample_id, device, pipeline, origin, sequence, source_time, "
                    "part_key, value, time, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    feedback,
                )
                new += cur.rowcount
            if predictions or feedback:
                await db.execute(_RETRY, (device, stream))
            await self._advance(db, device, stream, queue_id, sequences, through)
        return new

    async def _advance(
        self, db: aiosqlite.Connection, device: str, stream: str, queue_id: str, sequences: list[int], through: int
    ) -> None:
        sql = "SELECT * FROM cursors WHERE device = ? AND stream = ?"
        rows = list(await db.execute_fetchall(sql, (device, stream)))
        last, gaps = 0, 0
        if rows and rows[0]["queue_id"] == queue_id:
            last, gaps = rows[0]["last_sequence"], rows[0]["gaps"]
        for sequence in sequences:
            if sequence > last:
                gaps += sequence - last - 1
                last = sequence
        last = max(last, through)
        await db.execute(
            "INSERT INTO cursors VALUES (?, ?, ?, ?, ?) ON CONFLICT(device, stream) DO UPDATE SET "
            "queue_id = excluded.queue_id, last_sequence = excluded.last_sequence, gaps = excluded.gaps",
            (device, stream, queue_id, last, gaps),
        )

    # --- feedback -------------------------------------------------------------------------------

    async def add_feedback(self, feedback: Feedback) -> bool:
        """Store a feedback once per sample id and look for its prediction; returns whether it is matched.

        The same sample id again with the same content is a retry: nothing changes and the
        answer is the stored match. With a different value or key it is refused (FeedbackConflict),
        since a counted result must not change under the figures computed from it."""
        if sum(k is not None for k in (feedback.sequence, feedback.part_key, feedback.source_time)) != 1:
            raise UsageError("a feedback names its prediction by exactly one of sequence, part key or source time")
        row = (
            feedback.sample_id,
            feedback.device,
            feedback.pipeline,
            feedback.origin,
            feedback.sequence,
            _ts(feedback.source_time),
            feedback.part_key,
            feedback.value,
            _ts(feedback.time),
            _ts(datetime.now(UTC)),
        )
        async with self._transaction() as db:
            sql = "SELECT * FROM feedback WHERE sample_id = ?"
            stored = list(await db.execute_fetchall(sql, (feedback.sample_id,)))
            if stored:
                s = stored[0]
                if tuple(s[k] for k in ("device", "pipeline", "sequence", "source_time", "part_key", "value")) != (
                    row[1],
                    row[2],
                    row[4],
                    row[5],
                    row[6],
                    row[7],
                ):
                    raise FeedbackConflict(
                        f"sample {feedback.sample_id!r} is stored with other content; a new result needs a new SampleId"
                    )
                return s["match_sequence"] is not None
            await db.execute(
                "INSERT INTO feedback (sample_id, device, pipeline, origin, sequence, source_time, part_key, value, "
                "time, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                row,
            )
            await db.execute(
                f"UPDATE feedback AS f SET (match_queue_id, match_sequence) = ({_MATCH}) WHERE f.sample_id = ?",
                (feedback.sample_id,),
            )
            (matched,) = list(
                await db.execute_fetchall(
                    "SELECT match_sequence IS NOT NULL FROM feedback WHERE sample_id = ?", (feedback.sample_id,)
                )
            )
        return bool(matched[0])

    async def pairs(
        self,
        device: str | None = None,
        pipeline: str | None = None,
        model: str | None = None,
        version: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[Pair]:
        """Matched (prediction, measured value) pairs, by prediction time, filtered as given."""
        where, params = self._prediction_filter(device, model, version, since, until, pipeline)
        rows = await self._rows(
            "SELECT p.*, f.value AS feedback_value, f.sample_id FROM feedback f JOIN predictions p "
            "ON p.device = f.device AND p.stream = f.pipeline AND p.queue_id = f.match_queue_id "
            f"AND p.sequence = f.match_sequence WHERE {where} ORDER BY p.time, p.sequence, f.sample_id",
            *params,
        )
        return [Pair(_prediction(r), r["feedback_value"], r["sample_id"]) for r in rows]

    # --- export ---------------------------------------------------------------------------------

    @staticmethod
    def _prediction_filter(
        device: str | None,
        model: str | None,
        version: str | None,
        since: datetime | None,
        until: datetime | None,
        pipeline: str | None = None,
    ) -> tuple[str, list[str | None]]:
        """The WHERE clause (over predictions ``p``) and its parameters for the filters given."""
        where: list[str] = ["1"]
        params: list[str | None] = []
        for column, value in (("p.device", device), ("p.stream", pipeline), ("p.model", model), ("p.version", version)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if since is not None:
            where.append("p.time >= ?")
            params.append(_ts(since))
        if until is not None:
            where.append("p.time < ?")
            params.append(_ts(until))
        return " AND ".join(where), params

    async def export_count(
        self,
        device: str | None = None,
        model: str | None = None,
        version: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> int:
        """How many predictions ``export_rows`` gives for the same filters."""
        where, params = self._prediction_filter(device, model, version, since, until)
        (row,) = await self._rows(f"SELECT count(*) FROM predictions p WHERE {where}", *params)
        return int(row[0])

    async def export_rows(
        self,
        device: str | None = None,
        model: str | None = None,
        version: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        batch: int = 2000,
    ) -> AsyncGenerator[list[ExportRow], None]:
        """Every stored prediction (prediction time in [since, until)), in (device, pipeline, time, sequence)
        order, with the newest measured result joined to it if any; ``batch`` rows at a time, so an export
        of millions of records never holds them all. Use inside ``snapshot`` to see one consistent state."""
        where, params = self._prediction_filter(device, model, version, since, until)
        sql = (
            "SELECT p.*, f.value AS feedback_value, f.time AS feedback_time FROM predictions p LEFT JOIN ("
            "  SELECT device, pipeline, match_queue_id, match_sequence, value, max(time) AS time FROM feedback"
            "  WHERE match_sequence IS NOT NULL GROUP BY device, pipeline, match_queue_id, match_sequence"
            ") f ON f.device = p.device AND f.pipeline = p.stream AND f.match_queue_id = p.queue_id "
            f"AND f.match_sequence = p.sequence WHERE {where} ORDER BY p.device, p.stream, p.time, p.sequence"
        )
        async with self._db.execute(sql, params) as cursor:
            while rows := list(await cursor.fetchmany(batch)):
                yield [_export_row(r) for r in rows]

    # --- figures --------------------------------------------------------------------------------

    async def counts(self, device: str, pipeline: str) -> dict[str, int]:
        """Stored predictions, those with a Bad status, feedback, and gaps of one device's pipeline."""
        (p,) = await self._rows(
            "SELECT count(*) AS n, coalesce(sum(status >= 2147483648), 0) AS bad FROM predictions "
            "WHERE device = ? AND stream = ?",
            device,
            pipeline,
        )
        sql = "SELECT count(*) AS n FROM feedback WHERE device = ? AND pipeline = ?"
        (f,) = await self._rows(sql, device, pipeline)
        cursor = await self.cursor(device, pipeline)
        return {"predictions": p["n"], "bad": p["bad"], "feedback": f["n"], "gaps": cursor.gaps if cursor else 0}

    async def figures(self, deployment_id: str, device: str) -> Figures:
        """Counts since the deployment, and latency percentiles (nearest rank) of its newest predictions."""
        counts = await self._rows(
            "SELECT inferences, errors FROM prediction_counts WHERE deployment_id = ? AND device = ?",
            deployment_id,
            device,
        )
        inferences, errors = (counts[0]["inferences"], counts[0]["errors"]) if counts else (0, 0)
        (f,) = await self._rows(
            "SELECT count(*) AS n FROM feedback f JOIN predictions p ON p.device = f.device AND p.stream = f.pipeline "
            "AND p.queue_id = f.match_queue_id AND p.sequence = f.match_sequence "
            "WHERE p.deployment_id = ? AND p.device = ?",
            deployment_id,
            device,
        )
        rows = await self._rows(
            "SELECT latency_ms FROM predictions WHERE deployment_id = ? AND device = ? AND latency_ms > 0 "
            "ORDER BY time DESC LIMIT ?",
            deployment_id,
            device,
            LATENCY_WINDOW,
        )
        latencies = sorted(float(r[0]) for r in rows)

        def rank(q: float) -> float | None:
            return latencies[max(0, math.ceil(q * len(latencies)) - 1)] if latencies else None

        return Figures(inferences, errors, f["n"], rank(0.5), rank(0.99))

    async def gaps(self, device: str) -> int:
        """Records the device's queue dropped (sequence gaps over all its streams)."""
        (row,) = await self._rows("SELECT coalesce(sum(gaps), 0) FROM cursors WHERE device = ?", device)
        return int(row[0])

    async def deployment_records(
        self, deployment_id: str, device: str, *, limit: int, newest: bool = False, since: datetime | None = None
    ) -> list[PredictionRecord]:
        """The first (or, with ``newest``, the newest) ``limit`` predictions a deployment's model made on a device,
        at or after ``since``, oldest first: what rebuilds the figures after a restart (gateway/monitor/figures.py)."""
        order = "DESC" if newest else ""
        rows = await self._rows(
            "SELECT * FROM predictions WHERE deployment_id = ? AND device = ? AND time >= ? "
            f"ORDER BY time {order}, sequence {order} LIMIT ?",
            deployment_id,
            device,
            _ts(since) if since is not None else "",
            limit,
        )
        if newest:
            rows.reverse()
        return [_record(r) for r in rows]

    async def sequences(self, device: str, stream: str) -> list[tuple[str, int]]:
        """(QueueId, sequence) of every stored record of a stream, in order (for checks and exports).

        A tag feedback the edge node recorded again (same source time and value) is stored once,
        under the first sequence it came with; the later ones are handled but not listed."""
        rows = await self._rows(
            "SELECT queue_id, sequence FROM predictions WHERE device = ? AND stream = ? UNION ALL "
            "SELECT queue_id, sequence FROM logs WHERE device = ? AND stream = ?",
            device,
            stream,
            device,
            stream,
        )
        found = [(str(r[0]), int(r[1])) for r in rows]
        tags = await self._rows(
            "SELECT sample_id FROM feedback WHERE origin = 'tag' AND device = ? AND pipeline = ?", device, stream
        )
        for (sample_id,) in tags:  # tag_sample_id: device/queue/stream/sequence
            place, sequence = str(sample_id)[len(device) + 1 :].rsplit("/", 1)
            found.append((place[: -len(stream) - 1], int(sequence)))
        return sorted(found)

    async def logs(self, device: str) -> list[LogRecord]:
        """A device's stored log records, oldest first."""
        rows = await self._rows("SELECT * FROM logs WHERE device = ? ORDER BY time, sequence", device)
        return [
            LogRecord.model_validate(
                {"time": r["time"], "level": r["level"], "logger": r["logger"], "message": r["message"]}
            )
            for r in rows
        ]


def _export_row(r: aiosqlite.Row) -> ExportRow:
    """A prediction row with its joined feedback (``export_rows``) as the exporter writes it."""
    return ExportRow(
        device=r["device"],
        pipeline=r["stream"],
        sequence=r["sequence"],
        time=r["time"],
        source_time=r["source_time"],
        model=r["model"],
        version=r["version"],
        status=r["status"],
        latency_ms=r["latency_ms"],
        part_key=r["part_key"],
        inputs=json.loads(r["inputs_json"]),
        outputs=json.loads(r["outputs_json"]),
        feedback=r["feedback_value"],
        feedback_time=r["feedback_time"],
    )


def _prediction(r: aiosqlite.Row) -> StoredPrediction:
    time = _dt(r["time"])
    if time is None:
        raise InvalidState("a stored prediction has no time")
    return StoredPrediction(
        device=r["device"],
        queue_id=r["queue_id"],
        stream=r["stream"],
        sequence=r["sequence"],
        time=time,
        source_time=_dt(r["source_time"]),
        model=r["model"],
        version=r["version"],
        deployment_id=r["deployment_id"],
        status=r["status"],
        latency_ms=r["latency_ms"],
        part_key=r["part_key"],
        inputs=json.loads(r["inputs_json"]),
        outputs=json.loads(r["outputs_json"]),
        input_status=json.loads(r["input_status_json"]),
    )


def _record(r: aiosqlite.Row) -> PredictionRecord:
    return PredictionRecord(
        time=r["time"],
        source_time=r["source_time"],
        model=r["model"],
        version=r["version"],
        inputs=json.loads(r["inputs_json"]),
        outputs=json.loads(r["outputs_json"]),
        input_status=json.loads(r["input_status_json"]),
        status=r["status"],
        latency_ms=r["latency_ms"],
        skipped=r["skipped"],
        part_key=r["part_key"],
    )
