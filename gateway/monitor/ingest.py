"""Collecting one edge node's records: fetch after the stored cursor, store, then acknowledge.

The loop follows the record contract (sdk/monitor/records.py, after OPC 40001-101
result management and DI FetchTransferResultData, OPC 10000-100 §8.4.6): for each
stream, FetchRecords after the last stored sequence, store the batch with the
cursor in one transaction (MonitorStore.ingest_batch), and only then
AcknowledgeRecords up to the last stored sequence. A batch fetched twice (an
acknowledgement lost, a gateway restart between commit and acknowledge) is stored
once. A new QueueId (the node's queue was created anew) starts the stream over
at sequence 1. While the node says MoreWaiting the loop fetches again at once;
otherwise it waits for ``wake()`` (a RecordsReady event) or the poll interval.

The logic speaks to a ``RecordSource``; gateway/opcua/record_link.py is the OPC UA
one, over the device link's session.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from gateway.monitor.store import MonitorStore
from sdk.monitor.records import FetchResult, RecordEnvelope

_log = logging.getLogger(__name__)


class RecordSource(Protocol):
    """An edge node's record queue (the FetchRecords / AcknowledgeRecords method pair)."""

    async def fetch(self, stream: str, after: int, max_records: int) -> FetchResult:
        """Records of ``stream`` after sequence ``after``, at most ``max_records``."""

    async def acknowledge(self, stream: str, queue_id: str, up_to: int) -> int:
        """Let the node delete records up to ``up_to``; returns how many it removed."""


@dataclass
class StreamStats:
    """What the collection of one stream did since the gateway started."""

    fetched: int = 0
    stored: int = 0  # new records (a record fetched again counts once)
    unreadable: int = 0
    acknowledged: int = 0  # sequence acknowledged last
    queue_id: str = ""


DeploymentOf = Callable[[str, str, str], str | None]
"""(device, model, version) -> the deployment that brought that model version to the device, if any."""

OnStored = Callable[[str, list[RecordEnvelope]], Awaitable[None]]
"""(stream, records) after a batch is committed: only the records stored by it (none stored before)."""


class RecordIngest:
    """The collection loop of one device."""

    def __init__(
        self,
        device: str,
        source: RecordSource,
        store: MonitorStore,
        streams: Callable[[], Iterable[str]],
        *,
        max_records: int = 1000,
        poll_s: float = 2.0,
        idle_poll_s: float | None = None,
        retry_cap_s: float = 30.0,
        deployment_of: DeploymentOf | None = None,
        on_stored: OnStored | None = None,
    ) -> None:
        self.device = device
        self._source = source
        self._store = store
        self._streams = streams
        self._max = max_records
        self._poll_s = poll_s
        # With the device's RecordsReady events subscribed, polling is only the safety net: a device that sent
        # nothing is asked again after twice the wait, up to idle_poll_s (the edge repeats an event for records
        # still waiting every 30 s, edge_node/opcua/records.py REPEAT_S). None: always every poll_s.
        self._idle_poll_s = idle_poll_s
        self._retry_cap_s = retry_cap_s
        self._deployment_of = deployment_of
        self._on_stored = on_stored
        self._wake = asyncio.Event()
        self.stats: dict[str, StreamStats] = {}
        self.rounds = 0  # completed rounds over every stream (tests wait on it)
        self.last_error = ""

    def wake(self) -> None:
        """Collect now (records are waiting), not at the next poll."""
        self._wake.set()

    async def run(self) -> None:
        """Collect until cancelled; a failure (link lost, store unwritable) is logged, waited out and retried."""
        delay = idle = self._poll_s
        while True:
            woken = self._wake.is_set()
            self._wake.clear()
            try:
                stored = await self.collect_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure of the link, the node or the store: nothing acknowledged, retry
                reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                level = logging.DEBUG if reason == self.last_error else logging.WARNING
                _log.log(level, "device %s: collecting records: %s; retrying in %.1f s", self.device, reason, delay)
                self.last_error = reason
                await self._sleep(delay)
                delay = min(delay * 2, self._retry_cap_s)
                continue
            self.last_error, delay = "", self._poll_s
            self.rounds += 1
            if self._idle_poll_s is None or stored or woken:
                idle = self._poll_s
            else:
                idle = min(idle * 2, max(self._idle_poll_s, self._poll_s))
            await self._sleep(idle)

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._wake.wait(), seconds)
        except TimeoutError:
            pass

    def _deployment(self, model: str, version: str) -> str | None:
        return self._deployment_of(self.device, model, version) if self._deployment_of else None

    async def collect_once(self) -> int:
        """Drain every stream once; returns how many new records were stored."""
        return sum([await self.drain(stream) for stream in list(self._streams())])

    async def drain(self, stream: str) -> int:
        """Fetch, store and acknowledge one stream until the node has nothing more waiting."""
        stats = self.stats.setdefault(stream, StreamStats())
        new = 0
        while True:
            cursor = await self._store.cursor(self.device, stream)
            after = cursor.last_sequence if cursor else 0
            result = await self._source.fetch(stream, after, self._max)
            if cursor is not None and result.queue_id != cursor.queue_id:
                # The node's queue was created anew: its sequences start again at 1.
                _log.info("device %s stream %r: new queue %s (was %s)", self.device, stream, result.queue_id, cursor)
                after = 0
                if cursor.last_sequence:
                    result = await self._source.fetch(stream, 0, self._max)
            handled = [e.sequence for e in result.records] + result.unreadable
            stats.fetched += len(result.records)
            stats.unreadable += len(result.unreadable)
            stats.queue_id = result.queue_id
            if handled:
                up_to = max(handled)
                stored = await self._store.ingest_batch(
                    self.device, stream, result.queue_id, result.records, through=up_to, deployment_of=self._deployment
                )
                stats.stored += stored
                new += stored
                if self._on_stored is not None and stored:
                    # The cursor was at ``after`` in the same queue: what lies beyond it was not stored before.
                    await self._on_stored(stream, [e for e in result.records if e.sequence > after])
                # Only now, with the batch committed (OPC 40001-101 §7.1.6: acknowledge what is stored).
                await self._source.acknowledge(stream, result.queue_id, up_to)
                stats.acknowledged = up_to
            elif after and stats.acknowledged != after:
                # Stored before but maybe never acknowledged (the gateway stopped in between): say so once.
                await self._source.acknowledge(stream, result.queue_id, after)
                stats.acknowledged = after
            if not result.more_waiting or not handled:
                return new
