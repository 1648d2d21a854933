"""Historical Access (OPC 10000-11) for chosen variables and for alarm notifications, in SQLite.

Variables: ``History.historize`` hands them to asyncua's history manager with its SQLite storage
(``asyncua.server.history_sql.HistorySQLite``) in ``<data_dir>/history.sqlite3``; each value
change is stored, values older than ``period`` and beyond ``count`` per variable (the oldest
stored first) are deleted as new ones arrive. asyncua sets the variable's Historizing attribute to
True and adds HistoryRead to its AccessLevel and UserAccessLevel (10000-3 5.6.2), so a client sees
that it may read raw history (ReadRawModifiedDetails, 10000-11 6.4.3). SQLite runs on aiosqlite's
own thread: the event loop only encodes.

Events: asyncua's event history (``historize_node_event``) does not fit conditions. It names the
table after the event's SourceNode while reading by the historized notifier, makes columns only for
the event type's properties (a condition's ActiveState/Id, AckedState/Id... are properties of
variables, so every insert fails), and cannot select ConditionId. ``History`` therefore stores
event notifications itself, as the alarm book sends them (``record``): one row per notifier
(source, area, Server object) with every field, answered to ReadEventDetails (10000-11 6.4.2) on
that notifier with whatever fields the client's EventFilter selects. The notifier gets HistoryRead
in its EventNotifier attribute. Retention is the same period and count, per notifier.

What a SCADA engineer configures: trend views read raw history of the historized variables (start
and end time, values per node); an alarm history view reads events of the Server object or of the
Model Monitor area object with the same select clauses as the live alarm list.

asyncua cannot store variables with string NodeIds (it refuses its own table name for them); here
each variable's table is named after a hash of its NodeId instead.

asyncua's history manager samples each variable through an internal subscription with a 10 ms
publishing interval and a queue of one: of several changes within 10 ms only the last is stored.
Event reads apply the EventFilter's SelectClauses, not its WhereClause (asyncua's HistoryManager
does not evaluate it); HistoryUpdate is refused (BadNotWritable).

asyncua deletes expired values after every insert with a query on SourceTimestamp; each table gets
an index on it here, or every insert would scan the table. SQLite runs in WAL mode with
synchronous=NORMAL: trend data survives a process crash, a power cut may lose the last commits.

Values a client writes without a SourceTimestamp (asyncua keeps it null) are stored with their
ServerTimestamp or the time they arrive, so a time-range read finds them.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import os
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiosqlite
from asyncua import Node, Server, ua
from asyncua.common.events import Event
from asyncua.common.utils import Buffer
from asyncua.server.history_sql import HistorySQLite
from asyncua.ua.ua_binary import variant_from_binary, variant_to_binary

_log = logging.getLogger(__name__)

FILE_NAME = "history.sqlite3"

_EVENTS = "modelline_events"  # asyncua's tables are named '<ns>_<id>': no clash


class _Storage(HistorySQLite):
    """asyncua's SQLite history, plus timestamps filled in and condition events kept whole."""

    def __init__(self, path: Path, period: timedelta | None, count: int) -> None:
        super().__init__(str(path))
        self._event_retention = (period, count)
        self._counts: dict[ua.NodeId, int] = {}

    async def init(self) -> None:
        await super().init()
        await self._db.execute("PRAGMA journal_mode=WAL")
        # Trend data: a crash of the process loses nothing, a power cut at most the last commits.
        await self._db.execute("PRAGMA synchronous=NORMAL")
        await self._db.execute(
            f'CREATE TABLE IF NOT EXISTS "{_EVENTS}" (id INTEGER PRIMARY KEY, notifier TEXT NOT NULL,'
            " time TIMESTAMP NOT NULL, event_type TEXT NOT NULL, fields TEXT NOT NULL)"
        )
        await self._db.execute(f'CREATE INDEX IF NOT EXISTS "{_EVENTS}_by_time" ON "{_EVENTS}" (notifier, time)')
        await self._db.commit()

    async def new_historized_node(self, node_id: ua.NodeId, period: timedelta | None, count: int = 0) -> None:
        # The count limit is kept here: asyncua's counts the whole table after every insert (72 values/s
        # at 300,000 rows). Row ids grow by one per insert, so the rows below the newest id minus count
        # are the ones beyond it: one index lookup.
        self._counts[node_id] = count
        await super().new_historized_node(node_id, period, 0)
        # asyncua deletes by SourceTimestamp after every insert: without an index that scans the whole
        # table (300,000 rows: 17 ms a value, 57 values/s).
        table = self._get_table_name(node_id)
        await self._db.execute(f'CREATE INDEX IF NOT EXISTS "{table}_by_time" ON "{table}" (SourceTimestamp)')
        await self._db.commit()

    def _get_table_name(self, node_id: ua.NodeId) -> str:
        # asyncua names a table '<ns>_<repr(identifier)>' and then refuses names holding a quote: every
        # string NodeId (ModelLine's are strings) would fail. Numeric ids keep asyncua's name.
        if isinstance(node_id.Identifier, int):
            return f"{node_id.NamespaceIndex}_{node_id.Identifier}"
        digest = hashlib.sha256(node_id.to_string().encode()).hexdigest()[:40]
        return f"{node_id.NamespaceIndex}_h{digest}"

    async def save_node_value(self, node_id: ua.NodeId, datavalue: ua.DataValue) -> None:
        server_time = datavalue.ServerTimestamp or datetime.now(UTC)
        datavalue = ua.DataValue(
            datavalue.Value,
            StatusCode=datavalue.StatusCode,
            SourceTimestamp=_naive_utc(datavalue.SourceTimestamp or server_time),  # type: ignore[arg-type]
            ServerTimestamp=_naive_utc(server_time),  # type: ignore[arg-type]
        )
        await super().save_node_value(node_id, datavalue)
        count = self._counts.get(node_id, 0)
        if count:
            table = self._get_table_name(node_id)
            await self.execute_sql_delete(f'_Id <= (SELECT MAX(_Id) FROM "{table}") - ?', (count,), table, node_id)

    @staticmethod
    def _get_bounds(start: datetime | None, end: datetime | None, nb_values: int) -> tuple[str, str, str, int]:
        first, last, order, limit = HistorySQLite._get_bounds(start, end, nb_values)
        return _naive_text(first), _naive_text(last), order, limit

    async def record(self, notifiers: Sequence[ua.NodeId], event: Event) -> None:
        fields = {
            name: base64.b64encode(variant_to_binary(variant)).decode()
            for name, variant in event.get_event_props_as_fields_dict().items()
        }
        text = json.dumps(fields)
        when = _naive_utc(getattr(event, "Time", None) or datetime.now(UTC))
        kind = str(getattr(event, "EventType", ""))
        rows = [(n.to_string(), when, kind, text) for n in notifiers]
        await self._db.executemany(
            f'INSERT INTO "{_EVENTS}" (notifier, time, event_type, fields) VALUES (?, ?, ?, ?)', rows
        )
        period, count = self._event_retention
        for notifier in notifiers:
            if period:
                limit = _naive_utc(datetime.now(UTC) - period)
                await self._db.execute(
                    f'DELETE FROM "{_EVENTS}" WHERE notifier = ? AND time < ?', (notifier.to_string(), limit)
                )
            if count:
                await self._db.execute(
                    f'DELETE FROM "{_EVENTS}" WHERE notifier = ? AND id NOT IN '
                    f'(SELECT id FROM "{_EVENTS}" WHERE notifier = ? ORDER BY id DESC LIMIT ?)',
                    (notifier.to_string(), notifier.to_string(), count),
                )
        await self._db.commit()

    async def read_event_history(
        self, source_id: ua.NodeId, start: datetime | None, end: datetime | None, nb_values: int, evfilter: Any
    ) -> tuple[list[Event], Any]:
        start_time, end_time, order, limit = self._get_bounds(start, end, nb_values)
        events: list[Event] = []
        stamps: list[datetime] = []
        query = (
            f'SELECT time, fields FROM "{_EVENTS}" WHERE notifier = ? AND time BETWEEN ? AND ? '
            f"ORDER BY id {order} LIMIT ?"
        )
        try:
            async with self._db.execute(query, (source_id.to_string(), start_time, end_time, limit)) as cursor:
                async for when, text in cursor:
                    stored: dict[str, str] = json.loads(text)
                    fields = {k: variant_from_binary(Buffer(base64.b64decode(v))) for k, v in stored.items()}
                    events.append(Event.from_field_dict(fields))
                    stamps.append(when)
        except (aiosqlite.Error, ValueError) as exc:
            _log.error("event history of %s unreadable: %s", source_id.to_string(), exc)
        cont = None
        if len(events) > self.max_history_data_response_size:
            cont = stamps[self.max_history_data_response_size]
            events = events[: self.max_history_data_response_size]
        return events, cont


def _naive_utc(moment: datetime) -> datetime:
    """``moment`` in UTC without a zone. sqlite3's TIMESTAMP converter (asyncua opens the file with
    PARSE_DECLTYPES) cannot read back '...:00+00:00', the text a zone-aware time without microseconds
    is stored as: the whole read would fail. asyncua encodes zone-less times as UTC."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment


def _naive_text(text: str) -> str:
    return _naive_utc(datetime.fromisoformat(text)).isoformat(" ")


class History:
    """The server's history: chosen variables and alarm notifications, kept ``period`` and at most ``count``
    values (or events) each; 0 means no count limit."""

    def __init__(self, server: Server, data_dir: Path, period: timedelta = timedelta(days=30), count: int = 0) -> None:
        self.path = data_dir / FILE_NAME
        self._server = server
        self._period = period
        self._count = count
        self._storage = _Storage(self.path, period, count)
        self._event_notifiers: set[ua.NodeId] = set()

    async def start(self) -> None:
        """Open the file and make it the server's history storage (before the server starts serving).

        A file that is not an SQLite database is moved to ``history.sqlite3.damaged`` and history starts
        empty: lost trends must not keep the server from starting (DESIGN.md, Principles)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            await self._storage.init()
        except sqlite3.DatabaseError as exc:
            await self._storage.stop()
            aside = self.path.with_name(self.path.name + ".damaged")
            _log.error("history file %s is unusable (%s): moved to %s, history starts empty", self.path, exc, aside)
            await asyncio.to_thread(os.replace, self.path, aside)
            self._storage = _Storage(self.path, self._period, self._count)
            await self._storage.init()
        # asyncua closes the storage when the server stops (HistoryManager.stop); ``close`` is for a server
        # that never started.
        self._server.iserver.history_manager.set_storage(self._storage)

    async def close(self) -> None:
        """Close the file if the server did not (it was never started); harmless after a server stop."""
        await self._storage.stop()

    async def historize(self, nodes: Sequence[Node]) -> None:
        """Store every value change of ``nodes`` from now on (Historizing=True, AccessLevel HistoryRead)."""
        await self._server.historize_node_data_change(list(nodes), period=self._period, count=self._count)

    async def forget(self, nodes: Sequence[Node]) -> None:
        """Stop storing the value changes of ``nodes`` (they are going away); what was stored stays in the file
        until it ages out."""
        await self._server.dehistorize_node_data_change(list(nodes))

    async def historize_events(self, notifier: Node) -> None:
        """Answer HistoryRead for events on ``notifier`` (its EventNotifier gets HistoryRead)."""
        current = await notifier.read_event_notifier()
        wanted = {*current, ua.EventNotifier.SubscribeToEvents, ua.EventNotifier.HistoryRead}
        if wanted != current:
            await notifier.set_event_notifier(wanted)
        self._event_notifiers.add(notifier.nodeid)

    async def record(self, notifiers: Sequence[ua.NodeId], event: Event) -> None:
        """Store one event notification as sent on those of ``notifiers`` whose events are historized (the
        alarm book calls this for every notification)."""
        kept = [n for n in notifiers if n in self._event_notifiers]
        if not kept:
            return
        try:
            await self._storage.record(kept, event)
        except (aiosqlite.Error, sqlite3.Error) as exc:
            _log.error("event history: notification not stored: %s", exc)
