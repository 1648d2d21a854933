"""Drift: are the model's inputs (and outputs) still distributed like the data it was made for?

**Population stability index (PSI).** The value range of a feature is cut into
bins. For each bin, compare the share of recent values that fall in it (actual,
``a``) with the share the reference put there (expected, ``e``):

    PSI = sum over bins of (a - e) x ln(a / e)

Every bin adds a positive amount when the shares differ, and nothing when they
agree, so PSI is 0 for an identical distribution and grows as values move to
other bins. The usual reading:

- PSI under 0.1: no real change;
- 0.1 to 0.25: a moderate change, worth a look (default Warning);
- over 0.25: a significant change, the model sees data unlike its training
  data (default Alarm).

**Input drift** compares each input feature with the package's training
reference (``Manifest.reference_stats``): the bin edges and the share of
training rows per bin that ``modelline package build`` computed from the
training CSV (quantile bins: about the same share per bin). Two open-ended outer
bins catch values below the first edge and above the last one; the training
data put nothing there. A bin with no share on either side would make the
formula divide by zero or take ln(0), so an empty share counts as ``epsilon``
(default 0.0001, i.e. 0.01 %) on both sides; a new value range that shows up
in, say, 10 % of recent values then adds about (0.1 - 0.0001) x ln(0.1 / 0.0001)
~ 0.69: a clear alarm, as it should be.

Where a machine's normal running covers only a narrow part of the training
data (one pump at one state of wear, while the training data spans whole pump
lives), every window differs from the training reference and input drift
against it is high from the start. For such a pipeline set
``input_reference = "deployment"``: input drift then compares with the first
``baseline_records`` inputs after deployment, in quantile bins like output
drift below, and says "the inputs now differ from when the model was
installed". A feature the manifest has no reference statistics for gets no
input drift score against the training data.

The **pipeline's input drift** is the largest of its features' PSI: one sensor
that drifts is enough for the model to see data it was not made for, and the
per-feature scores tell which one.

**Output drift** compares the distribution of each numeric output in the
recent window with the model's own predictions in the first window after its
deployment (the *baseline*: the first ``baseline_records`` predictions). The
baseline's bins are its quantiles (``output_bins`` of them, each holding about
the same share of the baseline), so output drift says "the model now predicts
differently from how it did when it was installed", whatever the reason. Outputs
that are lists (vectors) are not scored. The pipeline's output drift is the
largest over its outputs.

Values that are missing or Bad are left out of drift (data quality counts
them). No score is given before the window holds ``min_records`` values (by
default a full window): a handful of values always looks drifted.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from gateway.monitor.thresholds import MonitorThresholds
from gateway.monitor.windows import BinCounts, SlidingWindow, window_of
from sdk.package.manifest import FeatureStats


class ReferenceBins:
    """Bin edges and the expected share per bin, with the two open-ended outer bins added (share 0)."""

    def __init__(self, edges: np.ndarray, shares: np.ndarray) -> None:
        if edges.ndim != 1 or edges.size != shares.size + 1 or edges.size < 2:
            raise ValueError("bin edges need one more entry than shares, and at least two")
        self.edges = edges
        self.expected = np.concatenate([[0.0], shares, [0.0]])

    @classmethod
    def from_stats(cls, stats: FeatureStats) -> ReferenceBins:
        """The training reference of a feature, as the manifest carries it."""
        return cls(np.asarray(stats.bin_edges, dtype=np.float64), np.asarray(stats.frequencies, dtype=np.float64))

    @classmethod
    def from_values(cls, values: np.ndarray, bins: int) -> ReferenceBins | None:
        """Quantile bins of a baseline sample (as the package builder makes them); None without two finite values."""
        finite = values[np.isfinite(values)]
        if finite.size < 2:
            return None
        edges = np.unique(np.quantile(finite, np.linspace(0.0, 1.0, bins + 1)))
        if edges.size < 2:  # a constant baseline: one bin around the value
            return cls(np.array([finite[0], finite[0]]), np.array([1.0]))
        counts, _ = np.histogram(finite, bins=edges)
        return cls(edges, counts / finite.size)

    @property
    def slots(self) -> int:
        """Bins including the two outer ones."""
        return int(self.expected.size)

    def slot(self, values: np.ndarray) -> np.ndarray:
        """Bin number of each value: 0 below the first edge, 1..n the reference bins, n + 1 above the last; -1 for NaN.

        Like ``numpy.histogram``: a bin holds its lower edge, the last one also its upper edge.
        """
        last = self.edges.size - 1
        out = np.searchsorted(self.edges, values, side="right")
        out[values == self.edges[-1]] = last
        out[np.isnan(values)] = -1
        return out


def psi(counts: np.ndarray, expected: np.ndarray, epsilon: float) -> float | None:
    """PSI of bin ``counts`` against ``expected`` shares; an empty share counts as ``epsilon``; None without counts."""
    total = counts.sum()
    if total == 0:
        return None
    actual = np.maximum(counts / total, epsilon)
    reference = np.maximum(expected, epsilon)
    return float(np.sum((actual - reference) * np.log(actual / reference)))


def psi_of_values(values: np.ndarray, reference: ReferenceBins, epsilon: float = 1e-4) -> float | None:
    """PSI of a sample of values against a reference (for one-off checks; the monitor keeps running counts)."""
    slots = reference.slot(np.asarray(values, dtype=np.float64))
    counts = np.bincount(slots[slots >= 0], minlength=reference.slots)
    return psi(counts, reference.expected, epsilon)


class DriftTracker:
    """PSI per column (feature or output) of a sliding window against reference bins.

    The reference is given (the training reference of input features) or, when
    None, made from the first ``baseline_records`` rows added (the baseline
    after deployment), with ``output_bins`` quantile bins per column. Rows in
    the baseline are not counted in the window: drift is what came after it.
    """

    def __init__(
        self, names: Sequence[str], thresholds: MonitorThresholds, references: dict[str, ReferenceBins] | None = None
    ) -> None:
        self.names = list(names)
        self.thresholds = thresholds
        self.references: dict[str, ReferenceBins] | None = None
        self._window: SlidingWindow[BinCounts] | None = None
        self._baseline: list[np.ndarray] = []
        self._baseline_rows = 0
        if references is not None:
            self._use(references)

    def _use(self, references: dict[str, ReferenceBins]) -> None:
        self.references = references
        slots = max((r.slots for r in references.values()), default=1)
        self._window = window_of(BinCounts(len(self.names), slots), self.thresholds, exact=True)

    @property
    def baseline_complete(self) -> bool:
        """The reference is there (given, or the baseline is full)."""
        return self.references is not None

    def add(self, times: np.ndarray, values: np.ndarray) -> None:
        """Add rows of values (rows x columns, NaN where there is none) with their times (s)."""
        if self.references is None:
            wanted = self.thresholds.baseline_records - self._baseline_rows
            self._baseline.append(values[:wanted])
            self._baseline_rows += min(wanted, values.shape[0])
            times, values = times[wanted:], values[wanted:]
            if self._baseline_rows < self.thresholds.baseline_records:
                return
            baseline = np.concatenate(self._baseline)
            self._baseline = []
            made = {
                name: ReferenceBins.from_values(baseline[:, j], self.thresholds.output_bins)
                for j, name in enumerate(self.names)
            }
            self._use({name: ref for name, ref in made.items() if ref is not None})
        assert self.references is not None
        assert self._window is not None
        bins = np.full(values.shape, -1, dtype=np.int64)
        for j, name in enumerate(self.names):
            reference = self.references.get(name)
            if reference is not None:
                bins[:, j] = reference.slot(values[:, j])
        self._window.add(times, bins)

    def expire(self, now_s: float) -> None:
        """Drop rows older than the window's age limit as of ``now_s``."""
        if self._window is not None:
            self._window.expire(now_s)

    def __len__(self) -> int:
        return 0 if self._window is None else len(self._window)

    def scores(self) -> dict[str, float | None]:
        """PSI per column; None without a reference or before the window holds ``min_records`` values."""
        out: dict[str, float | None] = dict.fromkeys(self.names)
        if self._window is None or self.references is None:
            return out
        for j, name in enumerate(self.names):
            reference = self.references.get(name)
            if reference is None:
                continue
            counts = self._window.tally.counts[j, : reference.slots]
            if counts.sum() >= self.thresholds.enough_records:
                out[name] = psi(counts, reference.expected, self.thresholds.psi_epsilon)
        return out


def worst(scores: dict[str, float | None]) -> float | None:
    """A pipeline's score: the largest of its features' (or outputs') scores, None if none has one."""
    known = [s for s in scores.values() if s is not None]
    return max(known) if known else None
