"""The figures of one model version on one pipeline, updated batch by batch of stored prediction records.

The gateway keeps one ``PipelineMonitor`` per (device, pipeline, model version):
it feeds each committed batch of ``PredictionRecord`` to ``add`` and ground
truth pairs to ``add_feedback``, then reads ``figures()`` and ``levels()``.
A batch costs time in proportion to its own size, never to the history
(see ``windows``). The formulas are in ``drift``, ``data_quality`` and
``quality``; the states in ``thresholds``.

The monitor lives in memory. After a gateway restart, rebuild it from the
store: ``add`` the version's first ``baseline_records`` records (the output
drift baseline), then its newest window of records (``window_records``, or
those of the last ``window_seconds``), and ``add_feedback`` every pair since
deployment; the figures are then the ones it had. The states start at Ok
again (the alarm layer keeps its own alarm state).

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
from gateway.monitor.drift import DriftTracker, ReferenceBins, worst
from gateway.monitor.quality import QualityFigures, QualityTracker
from gateway.monitor.thresholds import InputReference, Level, LevelTracker, MonitorThresholds
from gateway.monitor.windows import VectorSum, window_of
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


class PipelineMonitor:
    """Running figures of one model version on one pipeline."""

    def __init__(self, manifest: Manifest, thresholds: MonitorThresholds) -> None:
        self.thresholds = thresholds
        self.features = manifest.input_features()
        self.names = [f.name for f in self.features]
        training = {
            name: ReferenceBins.from_stats(manifest.reference_stats[name])
            for name in self.names
            if name in manifest.reference_stats
        }
        use_training = thresholds.input_reference == InputReference.TRAINING
        self.input_drift = DriftTracker(self.names, thresholds, training if use_training else None)
        self._flags = window_of(VectorSum(len(self.names) * 3 + 3), thresholds, exact=True)
        # Scalar numeric outputs only: a list output has no single value to bin (its rows stay NaN).
        self.outputs = [t.name for t in manifest.outputs if t.element_type != ElementType.STRING]
        self.output_drift = DriftTracker(self.outputs, thresholds)
        self.quality = QualityTracker(manifest, thresholds)
        self._levels = LevelTracker(thresholds)

    def add(self, records: Sequence[PredictionRecord]) -> None:
        """Count a batch of prediction records (in sequence order) into the windows."""
        if not records:
            return
        times = np.array([r.time.timestamp() for r in records])
        table = data_quality.input_table(records, self.features)
        self._flags.add(times, data_quality.flag_rows(table))
        self.input_drift.add(times, table.values)
        values = np.full((len(records), len(self.outputs)), np.nan)
        for i, record in enumerate(records):
            if data_quality.is_bad(record.status):
                continue
            for j, name in enumerate(self.outputs):
                value = record.outputs.get(name)
                if isinstance(value, int | float):
                    values[i, j] = float(value)
        self.output_drift.add(times, values)

    def add_feedback(self, times: np.ndarray, predicted: np.ndarray, truth: np.ndarray) -> None:
        """Count (prediction, ground truth) pairs: prediction times (s), the feedback output's values, the truth."""
        self.quality.add(times, predicted, truth)

    def expire(self, now_s: float) -> None:
        """Drop what is older than the windows' age limit as of ``now_s``."""
        self.input_drift.expire(now_s)
        self.output_drift.expire(now_s)
        self._flags.expire(now_s)
        self.quality.expire(now_s)

    def figures(self) -> PipelineFigures:
        """The figures as of the records added so far."""
        feature_drift = self.input_drift.scores()
        output_drifts = self.output_drift.scores()
        held = len(self._flags)
        if held >= self.thresholds.enough_records:
            found: dict[str, dict[str, float | None]] = {
                kind: dict(rates)
                for kind, rates in data_quality.rates(self._flags.tally.sums, held, self.names).items()
            }
        else:
            found = {kind: dict.fromkeys(["", *self.names]) for kind in data_quality.KINDS}
        return PipelineFigures(
            records=held,
            input_drift=worst(feature_drift),
            feature_drift=feature_drift,
            output_drift=worst(output_drifts),
            output_drifts=output_drifts,
            baseline_complete=self.output_drift.baseline_complete,
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
