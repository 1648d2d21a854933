"""Recording on the edge node: each inference as a PredictionRecord, feedback, warnings, and running statistics.

The collector is the pipelines' RecordSink. It works synchronously on the event
loop and never waits: a record goes to the queue's memory buffer (written by
the queue's own task), statistics are counted in memory and handed to the queue
and to listeners at most once a second (``run``).

Sampling, per pipeline: every ``sample_every``-th prediction is recorded, and at
most ``max_records_per_s`` in any one second; the others are counted as
``sampled_out`` in the statistics. Statistics count every prediction.

Counting every feature of every prediction in Python was the largest cost per prediction with many input tags, so
a prediction whose inputs were all Good numbers within their valid ranges (``Inference.values``, the pipeline's
common case) only has its values copied into a preallocated array (``_Binned``); the array is counted on the
reference bins with numpy when it is full, and always before the statistics are read or handed on (``statistics``,
``publish_statistics``), so what anyone sees counts every prediction exactly as one by one would.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import numpy as np

from edge_node.monitor.queue import RecordQueue
from edge_node.runtime import quality
from edge_node.runtime.pipeline import Inference, Reading
from sdk.cancel import honour_cancel
from sdk.monitor.records import LOG_STREAM, FeedbackRecord, LogLevel, LogRecord, PredictionRecord
from sdk.monitor.statistics import FeatureCounts, PipelineStatistics
from sdk.package.manifest import Manifest

_log = logging.getLogger(__name__)

StatisticsListener = Callable[[str, PipelineStatistics], Awaitable[None]]


def _number(value: Any) -> float | int | bool | None:
    if isinstance(value, bool | int | float):
        return value
    return None


def _status_of(reading: Reading) -> int:
    if reading.stale and not quality.is_bad(reading.status):
        return quality.UNCERTAIN_LAST_USABLE_VALUE
    return reading.status


def _part_key(reading: Reading | None) -> str | None:
    if reading is None or reading.value is None or quality.is_bad(reading.status):
        return None
    return str(reading.value)[:256]


class _Rate:
    """Sampling of one pipeline: every n-th prediction, and at most ``limit`` in one second."""

    def __init__(self, every: int, limit: int, clock: Callable[[], float]) -> None:
        self.every, self.limit, self.clock = every, limit, clock
        self.seen = 0
        self.second = -1
        self.in_second = 0

    def take(self) -> bool:
        self.seen += 1
        if (self.seen - 1) % self.every:
            return False
        second = int(self.clock())
        if second != self.second:
            self.second, self.in_second = second, 0
        if self.in_second >= self.limit:
            return False
        self.in_second += 1
        return True


BINNED_VALUES = 65_536
"""Feature values a pipeline's ``_Binned`` array holds (rows of one prediction's features), at most 1,024 rows."""


class _Binned:
    """Predictions' feature values not yet counted on their reference bins: one row per prediction, counted with
    numpy (``flush``) when full, into the FeatureCounts of ``stats``."""

    def __init__(self, stats: PipelineStatistics, manifest: Manifest) -> None:
        self.stats = stats
        self.manifest = manifest
        features = manifest.input_features()
        self.columns: list[tuple[int, FeatureCounts, np.ndarray]] = []
        for j, feature in enumerate(features):
            counts = stats.features.get(feature.name)
            if counts is not None and counts.bin_edges:  # counted on bins; the others count only Bad or out of range
                self.columns.append((j, counts, np.asarray(counts.bin_edges, dtype=np.float64)))
        rows = max(16, min(1024, BINNED_VALUES // max(1, len(features))))
        self.rows = np.empty((rows, len(features)), dtype=np.float64)
        self.width = len(features)
        self.n = 0

    def add(self, values: np.ndarray) -> None:
        """One prediction's values (every input feature, in ``Manifest.input_features`` order)."""
        if not self.columns:
            return
        self.rows[self.n] = values
        self.n += 1
        if self.n == len(self.rows):
            self.flush()

    def flush(self) -> None:
        """Count the waiting rows as ``FeatureCounts.add`` would, one by one."""
        n, self.n = self.n, 0
        if n == 0:
            return
        for j, counts, edges in self.columns:
            x = self.rows[:n, j]
            # bisect_right - 1 for each value: -1 below the first edge, len(edges) - 1 at or above the last.
            where = np.bincount(np.searchsorted(edges, x, side="right"), minlength=len(edges) + 1)
            last = len(edges) - 1
            on_last = int(np.count_nonzero(x == edges[last])) if counts.counts else 0  # the last bin is closed
            counts.below += int(where[0])
            counts.above += int(where[last + 1]) - on_last
            bins = counts.counts
            for i in range(min(last, len(bins))):
                if where[i + 1]:
                    bins[i] += int(where[i + 1])
            if on_last:
                bins[-1] += on_last


class Collector:
    """Every pipeline's RecordSink, writing to one RecordQueue."""

    def __init__(
        self,
        queue: RecordQueue,
        sample_every: int = 1,
        max_records_per_s: int = 100,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.queue = queue
        self._sample_every = sample_every
        self._max_per_s = max_records_per_s
        self._clock = clock
        self._rates: dict[str, _Rate] = {}
        self._stats: dict[str, PipelineStatistics] = {}
        self._dirty: set[str] = set()
        self._listeners: list[StatisticsListener] = []
        self._binned: dict[str, _Binned] = {}

    def add_pipeline(self, name: str) -> None:
        """Start keeping records and statistics for a pipeline (statistics as the queue last stored them)."""
        saved = self.queue.saved_statistics(name)
        stats = None
        if saved:
            try:
                stats = PipelineStatistics.model_validate_json(saved)
            except ValueError:
                _log.warning("pipeline %s: stored statistics unreadable, starting anew", name)
        self._stats[name] = stats or PipelineStatistics(pipeline=name)
        self._rates[name] = _Rate(self._sample_every, self._max_per_s, self._clock)

    def statistics(self, pipeline: str) -> PipelineStatistics:
        """The running statistics of a pipeline (a copy)."""
        self._flush(pipeline)
        return self._stats[pipeline].model_copy(deep=True)

    def _flush(self, pipeline: str) -> None:
        binned = self._binned.get(pipeline)
        if binned is not None:
            binned.flush()

    def on_statistics(self, listener: StatisticsListener) -> None:
        """Call ``listener`` with a pipeline's statistics whenever they changed (at most once a second)."""
        self._listeners.append(listener)

    # --- RecordSink ------------------------------------------------------------------------------

    def inferred(self, inference: Inference) -> None:
        """Count the inference and queue its record if the sample takes it."""
        stats = self._count(inference)
        if not self._rates[inference.pipeline].take():
            stats.sampled_out += 1
            return
        self.queue.append(inference.pipeline, self._prediction(inference))

    def feedback(self, pipeline: str, reading: Reading, part_key: Reading | None) -> None:
        """Queue the measured result as a FeedbackRecord (a value that is not a number is ignored)."""
        value = _number(reading.value)
        if value is None or quality.is_bad(reading.status) or not math.isfinite(float(value)):
            return
        record = FeedbackRecord(
            time=reading.source_time or datetime.now(UTC), value=float(value), part_key=_part_key(part_key)
        )
        self.queue.append(pipeline, record)

    # --- internals -------------------------------------------------------------------------------

    def _prediction(self, inference: Inference) -> PredictionRecord:
        m = inference.manifest
        inputs: dict[str, float | int | bool | None] = {}
        statuses: dict[str, int] = {}
        newest: datetime | None = None
        if inference.values is not None and inference.outputs:
            # All Good, current numbers (the pipeline checked): each input as read, no status; the outputs carry
            # the newest source time of the inputs.
            inputs = {name: r.value for name, r in inference.readings.items() if r is not None}
            newest = inference.outputs[0].source_time
        else:
            for name, reading in inference.readings.items():
                if reading is None:
                    inputs[name] = None
                    statuses[name] = quality.BAD_WAITING_FOR_INITIAL_DATA
                    continue
                status = _status_of(reading)
                inputs[name] = None if quality.is_bad(status) else _number(reading.value)
                if status:
                    statuses[name] = status
                if reading.source_time is not None and (newest is None or reading.source_time > newest):
                    newest = reading.source_time
        # Built without validation: every field is made here from checked values, and this runs per prediction.
        return PredictionRecord.model_construct(
            kind="prediction",
            time=inference.time,
            source_time=newest,
            model=m.name,
            version=m.version,
            configuration=inference.configuration,
            inputs=inputs,
            input_status=statuses,
            outputs={o.name: o.value for o in inference.outputs},
            status=inference.status,
            latency_ms=inference.latency_ms,
            skipped=inference.skipped,
            part_key=_part_key(inference.part_key),
        )

    def _count(self, inference: Inference) -> PipelineStatistics:
        m = inference.manifest
        stats = self._stats[inference.pipeline]
        if (stats.model, stats.version) != (m.name, m.version):
            self._flush(inference.pipeline)
            stats = self._stats[inference.pipeline] = _fresh(inference.pipeline, m)
        stats.inferences += 1
        stats.skipped += inference.skipped
        if quality.is_bad(inference.status):
            key = f"0x{inference.status:08X}"
            stats.bad_outputs[key] = stats.bad_outputs.get(key, 0) + 1
        if inference.latency_ms > 0:
            stats.add_latency(inference.latency_ms)
        stats.updated = inference.time
        self._dirty.add(inference.pipeline)
        if inference.values is not None:  # all Good and in range: counted on the bins a batch at a time
            binned = self._binned.get(inference.pipeline)
            if binned is None or binned.stats is not stats or binned.manifest is not m:
                if binned is not None:
                    binned.flush()
                binned = self._binned[inference.pipeline] = _Binned(stats, m)
            if len(inference.values) == binned.width:
                binned.add(inference.values)
                return stats
        for feature in m.input_features():
            counts = stats.features.get(feature.name)
            if counts is None:
                continue
            reading = inference.readings.get(feature.name)
            value = _number(reading.value) if reading is not None else None
            if reading is None or value is None or quality.is_bad(reading.status):
                counts.bad += 1
                continue
            number = float(value)
            low, high = feature.valid.min, feature.valid.max
            if not math.isfinite(number) or (low is not None and number < low) or (high is not None and number > high):
                counts.out_of_range += 1
                continue
            counts.add(number)
        return stats

    async def run(self, period_s: float = 1.0) -> None:
        """Hand changed statistics to the queue and the listeners, at most once every ``period_s``; forever."""
        while True:
            await asyncio.sleep(period_s)
            honour_cancel()
            await self.publish_statistics()

    async def publish_statistics(self) -> None:
        """Hand the statistics changed since the last call to the queue and the listeners now."""
        dirty, self._dirty = self._dirty, set()
        for name in sorted(dirty):
            self._flush(name)
            stats = self._stats[name]
            self.queue.put_statistics(name, stats.model_dump_json())
            for listener in self._listeners:
                await listener(name, stats)


def _fresh(pipeline: str, manifest: Manifest) -> PipelineStatistics:
    now = datetime.now(UTC)
    features = {
        name: FeatureCounts(bin_edges=list(ref.bin_edges), counts=[0] * (len(ref.bin_edges) - 1))
        for name, ref in manifest.reference_stats.items()
    }
    for feature in manifest.input_features():  # features without reference bins still count Bad and out of range
        features.setdefault(feature.name, FeatureCounts())
    return PipelineStatistics(
        pipeline=pipeline, model=manifest.name, version=manifest.version, since=now, updated=now, features=features
    )


class LogForwarder(logging.Handler):
    """WARNING and above of the whole node as LogRecords on stream "" (a handler for the root logger).

    Loop-safe: from another thread the record is handed to the loop. Never recursive:
    a record logged while one is being queued (on the same thread) is dropped. Bounded:
    at most ``max_per_s`` records a second; the others are counted in ``dropped``.
    """

    def __init__(
        self,
        queue: RecordQueue,
        loop: asyncio.AbstractEventLoop,
        max_per_s: int = 20,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(logging.WARNING)
        self._queue = queue
        self._loop = loop
        self._rate = _Rate(1, max_per_s, clock)
        self._busy = threading.local()
        self._thread = threading.get_ident()
        self.dropped = 0

    def emit(self, record: logging.LogRecord) -> None:
        """Queue the record (never raises)."""
        if getattr(self._busy, "on", False):
            return
        self._busy.on = True
        try:
            level = LogLevel.CRITICAL if record.levelno >= logging.CRITICAL else LogLevel(record.levelname)
            if record.levelno >= logging.ERROR and record.levelno < logging.CRITICAL:
                level = LogLevel.ERROR
            message = record.getMessage()
            if record.exc_info and record.exc_info[1] is not None:
                message += f" ({type(record.exc_info[1]).__name__}: {record.exc_info[1]})"
            entry = LogRecord(
                time=datetime.fromtimestamp(record.created, UTC),
                level=level,
                logger=record.name[:256],
                message=message[:4096],
            )
            if threading.get_ident() == self._thread:
                self._append(entry)
            elif not self._loop.is_closed():
                self._loop.call_soon_threadsafe(self._append, entry)
        except Exception:  # a log handler never raises into the code that logged
            self.dropped += 1
        finally:
            self._busy.on = False

    def _append(self, entry: LogRecord) -> None:
        if not self._rate.take():
            self.dropped += 1
            return
        try:
            self._queue.append(LOG_STREAM, entry)
        except Exception:
            self.dropped += 1
