"""The live figures of one deployment's model on one device: a PipelineMonitor fed as records are stored.

``LiveFigures`` wraps ``figures.PipelineMonitor`` with what the gateway shows besides it:
the share of Bad predictions (ErrorRateAlarm), DataQuality (the share of records whose
inputs were all present, Good and in range), the newest record's time, and the alarm
verdicts with plain-word messages. The Model Monitor service (service.py) keeps one per
(deployment, device), feeds it every newly stored batch and the feedback pairs as they
join, and rebuilds it from the store after a restart (``replay``, the recipe of
figures.py).

Alarm verdicts (``verdicts``): one per condition name (InputDriftAlarm, OutputDriftAlarm,
QualityAlarm, DataQualityAlarm, ErrorRateAlarm), None while its figures have no value
(no evidence: the alarm keeps the state it had, also across a restart), else the level
(the worst of its figures) and a message.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from gateway.monitor import data_quality
from gateway.monitor.base import Pair
from gateway.monitor.figures import PipelineFigures, PipelineMonitor
from gateway.monitor.store import MonitorStore
from gateway.monitor.thresholds import FigureThresholds, Level, MonitorThresholds
from sdk.monitor.records import PredictionRecord
from sdk.package.manifest import Manifest

_RANK = {Level.OK: 0, Level.WARNING: 1, Level.ALARM: 2}
_WORDS = {Level.WARNING: "moderate", Level.ALARM: "significant"}
ALARMS = ("InputDriftAlarm", "OutputDriftAlarm", "QualityAlarm", "DataQualityAlarm", "ErrorRateAlarm")


def worst_level(levels: Sequence[Level]) -> Level:
    """The most severe of ``levels`` (Ok for none)."""
    return max(levels, key=_RANK.__getitem__, default=Level.OK)


@dataclass(frozen=True)
class Verdict:
    """What one alarm condition should show."""

    level: Level
    message: str


@dataclass(frozen=True)
class Snapshot:
    """The figures of one (deployment, device) at one evaluation."""

    figures: PipelineFigures
    error_rate: float | None
    data_quality: float | None
    last_record: datetime | None
    state: Level
    verdicts: dict[str, Verdict | None]


class LiveFigures:
    """Figures and alarm verdicts of one deployment's model version on one device."""

    def __init__(
        self,
        deployment: str,
        device: str,
        manifest: Manifest,
        thresholds: MonitorThresholds,
        error_rate: FigureThresholds,
    ) -> None:
        self.deployment = deployment
        self.device = device
        self.model, self.version = manifest.name, manifest.version
        self.thresholds = thresholds
        self.monitor = PipelineMonitor(manifest, thresholds)
        self._features = manifest.input_features()
        self._error_rate = error_rate
        self._error_level = Level.OK
        # (prediction Bad, inputs all clean) of the newest records, for ErrorRate and DataQuality
        self._recent: deque[tuple[bool, bool]] = deque(maxlen=thresholds.window_records or 1000)
        self._pairs: set[str] = set()
        self.feedback_seen = -1  # the store's feedback count when pairs were last read
        self.last_record: datetime | None = None
        self._since: dict[str, datetime] = {}

    def add(self, records: Sequence[PredictionRecord]) -> None:
        """Count newly stored predictions (in sequence order)."""
        if not records:
            return
        self.monitor.add(records)
        table = data_quality.input_table(records, self._features)
        clean = [not row.any() for row in table.flags]
        for record, ok in zip(records, clean, strict=True):
            self._recent.append((data_quality.is_bad(record.status), bool(ok)))
        self.last_record = max(r.time for r in records)

    def add_pairs(self, pairs: Sequence[Pair]) -> int:
        """Count joined (prediction, measured value) pairs not counted before; returns how many were new."""
        output = self.monitor.quality.output.name
        new = [
            p
            for p in pairs
            if p.sample_id not in self._pairs
            and p.prediction.deployment_id == self.deployment
            and isinstance(p.prediction.outputs.get(output), int | float)
        ]
        if not new:
            return 0
        self._pairs.update(p.sample_id for p in new)
        times = np.array([p.prediction.time.timestamp() for p in new])
        predicted = np.array([float(p.prediction.outputs[output]) for p in new])
        truth = np.array([p.value for p in new])
        self.monitor.add_feedback(times, predicted, truth)
        return len(new)

    async def replay(self, store: MonitorStore) -> None:
        """Rebuild from the store (figures.py's recipe): the first ``baseline_records`` predictions, the newest
        window, and every pair since the deployment."""
        t = self.thresholds
        newest = t.window_records or 1_000_000
        head = await store.deployment_records(self.deployment, self.device, limit=t.baseline_records + newest)
        if len(head) < t.baseline_records + newest:
            self.add(head)
        else:
            self.add(head[: t.baseline_records])
            self.add(await store.deployment_records(self.deployment, self.device, limit=newest, newest=True))
        self.add_pairs(await store.pairs(device=self.device, model=self.model, version=self.version))

    def evaluate(self, now: datetime) -> Snapshot:
        """The figures now, and each alarm's verdict (call once per refresh: the levels move with each call)."""
        self.monitor.expire(now.timestamp())
        figures = self.monitor.figures()
        levels = {key: level for key, (level, _) in self.monitor.levels(figures).items()}
        enough = len(self._recent) >= self.thresholds.enough_records
        error_rate = sum(b for b, _ in self._recent) / len(self._recent) if enough else None
        quality = sum(c for _, c in self._recent) / len(self._recent) if enough else None
        self._error_level = self._error_rate.next_level(self._error_level, error_rate)
        verdicts = {
            "InputDriftAlarm": self._drift(
                "InputDriftAlarm", "input", figures.input_drift, figures.feature_drift, levels, now
            ),
            "OutputDriftAlarm": self._drift(
                "OutputDriftAlarm", "output", figures.output_drift, figures.output_drifts, levels, now
            ),
            "QualityAlarm": self._quality(figures, levels, now),
            "DataQualityAlarm": self._data_quality(figures, levels, now),
            "ErrorRateAlarm": None
            if error_rate is None
            else self._verdict("ErrorRateAlarm", self._error_level, f"{error_rate:.0%} of predictions Bad", now),
        }
        state = worst_level([*levels.values(), self._error_level])
        return Snapshot(figures, error_rate, quality, self.last_record, state, verdicts)

    # --- verdicts -----------------------------------------------------------------------------------

    def _verdict(self, name: str, level: Level, what: str, now: datetime, detail: str = "") -> Verdict:
        """E.g. "pump-health 1.1.0 on edge-2: input drift 0.31 (significant; vibration_rms 0.52) since 14:02 UTC"."""
        if level == Level.OK:
            self._since.pop(name, None)
            return Verdict(level, f"{self.model} {self.version} on {self.device}: {what}, back to normal")
        since = self._since.setdefault(name, now)
        words = f"{_WORDS[level]}; {detail}" if detail else _WORDS[level]
        return Verdict(
            level,
            f"{self.model} {self.version} on {self.device}: {what} ({words}) since {since.astimezone(UTC):%H:%M} UTC",
        )

    def _drift(
        self,
        name: str,
        kind: str,
        score: float | None,
        parts: dict[str, float | None],
        levels: dict[str, Level],
        now: datetime,
    ) -> Verdict | None:
        if score is None:
            return None
        level = levels.get(f"{kind}_drift", Level.OK)
        known = {k: v for k, v in parts.items() if v is not None}
        top = max(known, key=known.__getitem__) if known else None
        detail = f"{top} {known[top]:.2f}" if top is not None and len(known) > 1 else ""
        return self._verdict(name, level, f"{kind} drift {score:.2f}", now, detail)

    def _quality(self, figures: PipelineFigures, levels: dict[str, Level], now: datetime) -> Verdict | None:
        q = figures.quality
        named = (("accuracy", q.accuracy), ("F1", q.f1), ("MAE", q.mae), ("RMSE", q.rmse))
        shown = [(k, v) for k, v in named if v is not None]
        if not shown:
            return None
        level = worst_level([levels.get(k, Level.OK) for k in ("accuracy", "f1", "mae", "rmse")])
        what = ", ".join(f"{k} {v:.3g}" for k, v in shown)
        return self._verdict("QualityAlarm", level, f"{what} over {q.pairs} measured results", now)

    def _data_quality(self, figures: PipelineFigures, levels: dict[str, Level], now: datetime) -> Verdict | None:
        rates = {
            "missing": figures.missing_rate.get(""),
            "Bad": figures.bad_rate.get(""),
            "out of range": figures.out_of_range_rate.get(""),
        }
        if all(v is None for v in rates.values()):
            return None
        level = worst_level([levels.get(k, Level.OK) for k in ("missing_rate", "bad_rate", "out_of_range_rate")])
        what = ", ".join(f"{v:.0%} of records with {k} inputs" for k, v in rates.items() if v)
        return self._verdict("DataQualityAlarm", level, what or "inputs complete and in range", now)
