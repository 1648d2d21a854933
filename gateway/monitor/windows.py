"""Sliding windows over records, kept as running tallies so a batch costs the same however long the history.

A window holds the newest rows (one row per record or per prediction/ground
truth pair) up to ``max_rows`` of them and/or those at most ``max_age_s``
seconds older than the newest row seen, by the rows' own times. Rows are kept in
the order they arrived (sequence order); the age limit drops from the oldest.

Every figure is a function of a *tally* of the window: counts per bin, confusion
counts, sums of errors. The window adds each new batch to its tally and
subtracts the rows it drops, so updating costs the size of the batch plus the
rows leaving, never a re-read of the history. Float sums are recomputed from the
rows still held once as many rows have left as the window holds, so rounding
from adding and subtracting cannot build up.

``Totals`` is the tally since deployment: add only, never drop.
"""

from __future__ import annotations

from collections import Counter, deque
from typing import Generic, Protocol, TypeVar

import numpy as np

from gateway.monitor.thresholds import MonitorThresholds

_MERGE_BELOW = 512  # small batches are appended to the last chunk, so a window holds few arrays


class Tally(Protocol):
    """Something a window keeps up to date: add rows, remove rows, start again."""

    def add(self, rows: np.ndarray) -> None:
        """Count ``rows`` in."""

    def remove(self, rows: np.ndarray) -> None:
        """Count ``rows`` out (they were added before)."""

    def clear(self) -> None:
        """Forget everything."""


T = TypeVar("T", bound=Tally)


class VectorSum:
    """Column sums of float rows (e.g. absolute error, squared error), and how many rows."""

    def __init__(self, width: int) -> None:
        self.width = width
        self.sums = np.zeros(width)
        self.count = 0

    def add(self, rows: np.ndarray) -> None:
        """Add the column sums of ``rows``."""
        self.sums += rows.sum(axis=0)
        self.count += rows.shape[0]

    def remove(self, rows: np.ndarray) -> None:
        """Subtract the column sums of ``rows``."""
        self.sums -= rows.sum(axis=0)
        self.count -= rows.shape[0]

    def clear(self) -> None:
        """Back to zero."""
        self.sums = np.zeros(self.width)
        self.count = 0


class BinCounts:
    """Per column, how many rows fall in each bin: rows hold bin numbers, -1 where the row has none."""

    def __init__(self, columns: int, bins: int) -> None:
        self.counts = np.zeros((columns, bins), dtype=np.int64)
        self.rows = 0

    def _tally(self, rows: np.ndarray, sign: int) -> None:
        columns, bins = self.counts.shape
        flat = rows.astype(np.int64) + np.arange(columns, dtype=np.int64) * bins
        flat = flat[rows >= 0]
        self.counts += sign * np.bincount(flat, minlength=columns * bins).reshape(columns, bins)
        self.rows += sign * rows.shape[0]

    def add(self, rows: np.ndarray) -> None:
        """Count the bins of ``rows`` (shape: rows x columns) in."""
        self._tally(rows, 1)

    def remove(self, rows: np.ndarray) -> None:
        """Count the bins of ``rows`` out."""
        self._tally(rows, -1)

    def clear(self) -> None:
        """Back to zero."""
        self.counts[:] = 0
        self.rows = 0


class PairCounts:
    """How often each (true class, predicted class) pair occurs: a confusion matrix over the classes seen."""

    def __init__(self) -> None:
        self.pairs: Counter[tuple[int, int]] = Counter()
        self.count = 0

    def _tally(self, rows: np.ndarray) -> Counter[tuple[int, int]]:
        found, counts = np.unique(rows.astype(np.int64), axis=0, return_counts=True)
        return Counter({(int(t), int(p)): int(c) for (t, p), c in zip(found, counts, strict=True)})

    def add(self, rows: np.ndarray) -> None:
        """Count (true, predicted) rows in."""
        if rows.shape[0]:
            self.pairs.update(self._tally(rows))
            self.count += rows.shape[0]

    def remove(self, rows: np.ndarray) -> None:
        """Count (true, predicted) rows out."""
        if rows.shape[0]:
            self.pairs.subtract(self._tally(rows))
            self.pairs = +self.pairs  # drop pairs whose count reached zero
            self.count -= rows.shape[0]

    def clear(self) -> None:
        """Back to zero."""
        self.pairs.clear()
        self.count = 0


class SlidingWindow(Generic[T]):
    """The newest rows, bounded by count and/or age, with a tally of exactly those rows."""

    def __init__(self, tally: T, *, max_rows: int | None, max_age_s: float | None, exact: bool = False) -> None:
        """``exact``: the tally is integer counts, no recomputation needed against rounding."""
        if max_rows is None and max_age_s is None:
            raise ValueError("a window needs max_rows, max_age_s or both")
        self.tally = tally
        self.max_rows = max_rows
        self.max_age_s = max_age_s
        self._exact = exact
        self._chunks: deque[tuple[np.ndarray, np.ndarray]] = deque()  # (times, rows), oldest first
        self._held = 0
        self._newest = -np.inf
        self._dropped_since_sum = 0

    def __len__(self) -> int:
        return self._held

    def add(self, times: np.ndarray, rows: np.ndarray) -> None:
        """Add a batch: ``times`` (seconds, one per row) and ``rows`` (one per record); drop what left the window."""
        if rows.shape[0] == 0:
            return
        self.tally.add(rows)
        self._held += rows.shape[0]
        self._newest = max(self._newest, float(np.max(times)))
        if self._chunks and self._chunks[-1][0].shape[0] < _MERGE_BELOW:
            old_times, old_rows = self._chunks.pop()
            times, rows = np.concatenate([old_times, times]), np.concatenate([old_rows, rows])
        self._chunks.append((times, rows))
        self._evict()

    def expire(self, now_s: float) -> None:
        """Drop rows older than the age limit as of ``now_s`` (for a stream that went quiet)."""
        self._newest = max(self._newest, now_s)
        self._evict()

    def _drop(self, rows: np.ndarray) -> None:
        self.tally.remove(rows)
        self._held -= rows.shape[0]
        self._dropped_since_sum += rows.shape[0]

    def _evict(self) -> None:
        if self.max_rows is not None:
            while self._held > self.max_rows:
                times, rows = self._chunks[0]
                extra = self._held - self.max_rows
                if extra >= rows.shape[0]:
                    self._chunks.popleft()
                    self._drop(rows)
                else:
                    self._drop(rows[:extra])
                    self._chunks[0] = (times[extra:], rows[extra:])
        if self.max_age_s is not None:
            cutoff = self._newest - self.max_age_s
            while self._chunks and float(self._chunks[0][0][0]) < cutoff:
                times, rows = self._chunks[0]
                keep = np.argmax(times >= cutoff) if bool(np.any(times >= cutoff)) else times.shape[0]
                self._drop(rows[:keep])
                if keep == times.shape[0]:
                    self._chunks.popleft()
                else:
                    self._chunks[0] = (times[keep:], rows[keep:])
        if not self._exact and self._dropped_since_sum > max(self._held, _MERGE_BELOW):
            self._resum()

    def _resum(self) -> None:
        self.tally.clear()
        for _, rows in self._chunks:
            self.tally.add(rows)
        self._dropped_since_sum = 0


class Totals(Generic[T]):
    """A tally since deployment: rows are added, never dropped."""

    def __init__(self, tally: T) -> None:
        self.tally = tally

    def add(self, times: np.ndarray, rows: np.ndarray) -> None:
        """Add a batch (``times`` unused: kept for the same call shape as a window)."""
        if rows.shape[0]:
            self.tally.add(rows)


def window_of(tally: T, thresholds: MonitorThresholds, *, exact: bool = False) -> SlidingWindow[T]:
    """A window sized by the monitor's settings (``window_records``, ``window_seconds``)."""
    return SlidingWindow(tally, max_rows=thresholds.window_records, max_age_s=thresholds.window_seconds, exact=exact)
