"""The figures of one model version on one pipeline, updated batch by batch of stored prediction records.

The gateway keeps one ``PipelineMonitor`` per (device, pipeline, model version):
it feeds each committed batch of ``PredictionRecord`` to ``add`` and ground
truth pairs to ``add_feedback``, then reads ``figures()`` and ``levels()``.
A batch costs time in proportion to its own size, never to the history
(see ``windows``). The formulas are in ``drift``, ``data_quality`` and
``quality``; the states in ``thresholds``.

Figure keys for ``levels()``: ``input_drift``, ``input_drift/<feature>``,
``output_drift``, ``output_drift/<output>``, ``missing_rate``, ``bad_rate``,
``out_of_range_rate`` (each also ``/<feature>``), and ``accuracy``, ``f1``
(classifiers) or ``mae``, ``rmse`` (regressors) over the window.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict

from gateway.monitor import data_quality
from gateway.monitor.drift import ReferenceBins, psi
from gateway.monitor.quality import QualityFigures, QualityTracker
from gateway.monitor.thresholds import Level, LevelTracker, MonitorThresholds
from gateway.monitor.windows import BinCounts, SlidingWindow, VectorSum, window_of
from sdk.monitor.records import PredictionRecord
from sdk.package.manifest import ElementType, Manifest


class PipelineFigures(BaseModel):
    """What the monitor shows for one pipeline's model version; None where there is not enough data yet."""

    model_config = ConfigDict(frozen=True)

    records: int
    input_drift: float | None
    feature_drift: dict[str, float | None]
    output_drift: float | None
    output_drifts: dict[str, float | None]
    baseline_complete: bool
    missing_rate: dict[str, float | None]
    bad_rate: dict[str, float | None]
    out_of_range_rate: dict[str, float | None]
    quality: QualityFigures
    quality_since_deployment: QualityFigures


def _worst(scores: dict[str, float | None]) -> float | None:
    known = [s for s in scores.values() if s is not None]
    return max(known) if known else None


class PipelineMonitor:
    """Running figures of one model version on one pipeline."""

    def __init__(self, manifest: Manifest, thresholds: MonitorThresholds) -> None:
        self.thresholds = thresholds
        self.features = manifest.input_features()
        self.names = [f.name for f in self.features]
        self.references: dict[str, ReferenceBins] = {
            name: ReferenceBins.from_stats(manifest.reference_stats[name])
            for name in self.names
            if name in manifest.reference_stats
        }
        slots = max((r.slots for r in self.references.values()), default=1)
        self._inputs = window_of(BinCounts(len(self.names), slots), thresholds, exact=True)
        self._flags = window_of(VectorSum(len(self.names) * 3 + 3), thresholds, exact=True)
        # Scalar numeric outputs only: a list output has no single value to bin.
        self.outputs = [t.name for t in manifest.outputs if t.element_type != ElementType.STRING]
        self._baseline: list[np.ndarray] = []
        self._baseline_count = 0
        self.output_references: dict[str, ReferenceBins] | None = None
        self._outputs: SlidingWindow[BinCounts] | None = None
        self.quality = QualityTracker(manifest, thresholds)
        self._levels = LevelTracker(thresholds)

    def add(self, records: Sequence[PredictionRecord]) -> None:
        """Count a batch of prediction records (in sequence order) into the windows."""
        if not records:
            return
        times = np.array([r.time.timestamp() for r in records])
        table = data_quality.input_table(records, self.features)
        self._flags.add(times, data_quality.flag_rows(table))
        bins = np.full(table.values.shape, -1, dtype=np.int64)
        for j, name in enumerate(self.names):
            if name in self.references:
                bins[:, j] = self.references[name].slot(table.values[:, j])
        self._inputs.add(times, bins)
        self._add_outputs(times, records)

    def _add_outputs(self, times: np.ndarray, records: Sequence[PredictionRecord]) -> None:
        values = np.full((len(records), len(self.outputs)), np.nan)
        for i, record in enumerate(records):
            if data_quality.is_bad(record.status):
                continue
            for j, name in enumerate(self.outputs):
                value = record.outputs.get(name)
                if isinstance(value, int | float):
                    values[i, j] = float(value)
        if self.output_references is None:
            wanted = self.thresholds.baseline_records - self._baseline_count
            self._baseline.append(values[:wanted])
            self._baseline_count += min(wanted, values.shape[0])
            times, values = times[wanted:], values[wanted:]
            if self._baseline_count < self.thresholds.baseline_records:
                return
            baseline = np.concatenate(self._baseline)
            self._baseline = []
            made = {
                name: ReferenceBins.from_values(baseline[:, j], self.thresholds.output_bins)
                for j, name in enumerate(self.outputs)
            }
            self.output_references = {name: ref for name, ref in made.items() if ref is not None}
            slots = max((r.slots for r in self.output_references.values()), default=1)
            self._outputs = window_of(BinCounts(len(self.outputs), slots), self.thresholds, exact=True)
        assert self._outputs is not None
        assert self.output_references is not None
        bins = np.full(values.shape, -1, dtype=np.int64)
        for j, name in enumerate(self.outputs):
            if name in self.output_references:
                bins[:, j] = self.output_references[name].slot(values[:, j])
        self._outputs.add(times, bins)

    def add_feedback(self, times: np.ndarray, predicted: np.ndarray, truth: np.ndarray) -> None:
        """Count (prediction, ground truth) pairs: prediction times (s), the feedback output's values, the truth."""
        self.quality.add(times, predicted, truth)

    def expire(self, now_s: float) -> None:
        """Drop what is older than the windows' age limit as of ``now_s``."""
        for window in (self._inputs, self._flags, self._outputs):
            if window is not None:
                window.expire(now_s)
        self.quality.expire(now_s)

    def _drift(
        self, window: SlidingWindow[BinCounts], references: dict[str, ReferenceBins], names: list[str]
    ) -> dict[str, float | None]:
        out: dict[str, float | None] = {}
        for j, name in enumerate(names):
            reference = references.get(name)
            counts = window.tally.counts[j, : reference.slots] if reference else None
            if reference is None or counts is None or counts.sum() < self.thresholds.min_records:
                out[name] = None
            else:
                out[name] = psi(counts, reference.expected, self.thresholds.psi_epsilon)
        return out

    def figures(self) -> PipelineFigures:
        """The figures as of the records added so far."""
        feature_drift = self._drift(self._inputs, self.references, self.names)
        output_drifts: dict[str, float | None] = dict.fromkeys(self.outputs)
        if self._outputs is not None and self.output_references is not None:
            output_drifts = self._drift(self._outputs, self.output_references, self.outputs)
        held = len(self._flags)
        if held >= self.thresholds.min_records:
            found: dict[str, dict[str, float | None]] = {
                kind: dict(rates)
                for kind, rates in data_quality.rates(self._flags.tally.sums, held, self.names).items()
            }
        else:
            found = {kind: dict.fromkeys(["", *self.names]) for kind in data_quality.KINDS}
        return PipelineFigures(
            records=held,
            input_drift=_worst(feature_drift),
            feature_drift=feature_drift,
            output_drift=_worst(output_drifts),
            output_drifts=output_drifts,
            baseline_complete=self.output_references is not None,
            missing_rate=found["missing"],
            bad_rate=found["bad"],
            out_of_range_rate=found["out_of_range"],
            quality=self.quality.window(),
            quality_since_deployment=self.quality.since_deployment(),
        )

    def levels(self, figures: PipelineFigures | None = None) -> dict[str, tuple[Level, bool]]:
        """State of every figure (key -> (level, changed since the last call)); see the module docstring."""
        figures = figures or self.figures()
        judged: list[tuple[str, str, float | None]] = [("input_drift", "input_drift", figures.input_drift)]
        judged += [(f"input_drift/{n}", "input_drift", v) for n, v in figures.feature_drift.items()]
        judged.append(("output_drift", "output_drift", figures.output_drift))
        judged += [(f"output_drift/{n}", "output_drift", v) for n, v in figures.output_drifts.items()]
        for kind in ("missing_rate", "bad_rate", "out_of_range_rate"):
            for name, value in getattr(figures, kind).items():
                judged.append((f"{kind}/{name}" if name else kind, kind, value))
        for name in ("accuracy", "f1", "mae", "rmse"):
            value = getattr(figures.quality, name)
            if value is not None or name in self._levels.levels:
                judged.append((name, name, value))
        return {key: self._levels.update(key, figure, value) for key, figure, value in judged}
