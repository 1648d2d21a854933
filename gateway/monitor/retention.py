"""Retention of the monitor database: records older than ``monitor_retention_days`` go, a batch at a time.

The gateway runs ``Retention.run`` from its scheduler (gateway/app.py). Each batch
is one short transaction on the store's connection (at most ``batch`` rows), and
the store's lock is FIFO, so the collection of records goes on between batches
instead of waiting behind one DELETE of millions of rows.

What goes and what stays:
- prediction records whose time is older than the cutoff, and the feedback joined to
  them, in the same transaction (feedback never points at a deleted prediction);
- log records older than the cutoff;
- feedback that never found its prediction and is older than the cutoff;
- kept: the first ``keep_first`` predictions of every deployment on every device, which
  the figures' replay recipe adds first as the output drift baseline (gateway/monitor/
  figures.py; ``MonitorThresholds.baseline_records``), with the feedback joined to them;
- kept: the counts since deployment (``prediction_counts`` grows as rows go in and is
  not lowered by a delete), the cursors and their gap counts.
After retention the figures rebuilt at a gateway start use the same baseline and the
newest window as before; only "quality since deployment" covers the kept period
rather than the whole deployment, since older pairs are gone. Two cases rebuild from
less: predictions of a model the gateway did not deploy (no deployment credited, so no
baseline is kept: the oldest kept records become the baseline), and a pipeline silent for
longer than the retention (its newest window is gone too: its window figures start empty).

Compaction: a database the gateway created has ``auto_vacuum=INCREMENTAL`` (gateway/
monitor/store.py), so once the free pages are more than ``vacuum_share`` of the file
they go back to the file system with ``PRAGMA incremental_vacuum``, ``vacuum_pages``
pages per transaction. A full VACUUM is never run: it rewrites the whole file under
an exclusive lock (minutes for gigabytes) and needs as much free disk again. On a
database created before that setting (``auto_vacuum=NONE``) freed pages are reused
by new records, so the file stops growing once retention keeps up; run ``VACUUM`` on it
offline, with the gateway stopped, to shrink it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from gateway.monitor.store import MonitorStore, store_time

_log = logging.getLogger(__name__)

_DELETE_FEEDBACK_OF = """
    DELETE FROM feedback WHERE match_sequence IS NOT NULL AND rowid IN (
        SELECT f.rowid FROM predictions p JOIN feedback f ON f.device = p.device AND f.pipeline = p.stream
        AND f.match_queue_id = p.queue_id AND f.match_sequence = p.sequence WHERE p.rowid IN ({rows})
    )
"""


@dataclass
class RetentionResult:
    """What one run deleted."""

    predictions: int = 0
    feedback: int = 0
    logs: int = 0
    pages_freed: int = 0


class Retention:
    """Deletes monitor records older than ``days`` in bounded batches and gives the space back."""

    def __init__(
        self,
        store: MonitorStore,
        days: float,
        *,
        keep_first: int = 500,
        batch: int = 2000,
        vacuum_share: float = 0.2,
        vacuum_pages: int = 2048,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self.days = days
        self.keep_first = keep_first
        self.batch = batch
        self.vacuum_share = vacuum_share
        self.vacuum_pages = vacuum_pages
        self.clock = clock

    async def run(self) -> RetentionResult:
        """One pass over the database; logged, and returned for tests."""
        cutoff = store_time(self.clock() - timedelta(days=self.days))
        result = RetentionResult()
        # predictions credited to a deployment: all but its baseline, by the (deployment, device, time) index
        groups = await self._store.read("SELECT deployment_id, device FROM prediction_counts")
        for deployment, device in groups:
            bound = await self._store.read(
                "SELECT time FROM predictions WHERE deployment_id = ? AND device = ? ORDER BY time LIMIT 1 OFFSET ?",
                deployment,
                device,
                max(self.keep_first - 1, 0),
            )
            if self.keep_first and not bound:
                continue  # the whole deployment is still its baseline
            after = bound[0][0] if self.keep_first else ""
            select = (
                "SELECT rowid FROM predictions WHERE deployment_id = ? AND device = ? AND time > ? AND time < ? LIMIT ?"
            )
            await self._predictions(result, select, deployment, device, after, cutoff)
        # predictions of no deployment (a model the gateway did not deploy), per stream by the time index
        for device, stream in await self._store.read("SELECT device, stream FROM cursors"):
            select = (
                "SELECT rowid FROM predictions WHERE device = ? AND stream = ? AND time < ? "
                "AND deployment_id IS NULL LIMIT ?"
            )
            await self._predictions(result, select, device, stream, cutoff)
        result.logs = await self._delete(
            "DELETE FROM logs WHERE rowid IN (SELECT rowid FROM logs WHERE time < ? LIMIT ?)", cutoff
        )
        result.feedback += await self._delete(
            "DELETE FROM feedback WHERE rowid IN "
            "(SELECT rowid FROM feedback WHERE time < ? AND match_sequence IS NULL LIMIT ?)",
            cutoff,
        )
        result.pages_freed = await self._compact()
        if result.predictions or result.logs or result.feedback:
            _log.info(
                "monitor retention (%g days): deleted %d prediction(s), %d feedback, %d log record(s); "
                "%d page(s) freed",
                self.days,
                result.predictions,
                result.feedback,
                result.logs,
                result.pages_freed,
            )
        return result

    async def _predictions(self, result: RetentionResult, select: str, *params: object) -> None:
        while True:
            rows = [r[0] for r in await self._store.read(select, *params, self.batch)]
            if not rows:
                return
            marks = ", ".join("?" * len(rows))
            feedback, predictions = await self._store.write(
                [
                    (_DELETE_FEEDBACK_OF.format(rows=marks), rows),
                    (f"DELETE FROM predictions WHERE rowid IN ({marks})", rows),
                ]
            )
            result.feedback += feedback
            result.predictions += predictions
            await asyncio.sleep(0)  # let a waiting collection transaction in

    async def _delete(self, sql: str, cutoff: str) -> int:
        total = 0
        while True:
            (deleted,) = await self._store.write([(sql, [cutoff, self.batch])])
            total += deleted
            if deleted < self.batch:
                return total
            await asyncio.sleep(0)

    async def _compact(self) -> int:
        """Give free pages back with incremental_vacuum when they are worth it; how many were freed."""
        ((mode,),) = await self._store.read("PRAGMA auto_vacuum")
        if mode != 2:  # INCREMENTAL
            return 0
        ((pages,),) = await self._store.read("PRAGMA page_count")
        ((free,),) = await self._store.read("PRAGMA freelist_count")
        if not free or free < self.vacuum_share * pages:
            return 0
        freed = 0
        while free:
            await self._store.write([(f"PRAGMA incremental_vacuum({self.vacuum_pages})", [])])
            ((left,),) = await self._store.read("PRAGMA freelist_count")
            if left >= free:
                break
            freed, free = freed + free - left, left
            await asyncio.sleep(0)
        return freed
