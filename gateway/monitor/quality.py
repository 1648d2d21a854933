"""Model quality from ground truth: how often a classifier is right, how far off a regressor is.

Ground truth (feedback) is compared with one output of the model, the
*feedback output*: the one the settings name for the model
(``MonitorThresholds.feedback_outputs``), else the manifest's first output.

**Classifier or regressor.** The settings can say so per model
(``MonitorThresholds.tasks``). Otherwise the manifest decides, by the feedback
output's description:

- an integer or bool output is a class label: **classification**;
- a floating-point output whose valid range is exactly 0..1 is a probability
  (a fault probability, an anomaly score): **classification**, predicting class
  1 when the value is at or above ``decision_threshold`` (default 0.5), else 0;
- any other output: **regression**.

Ground truth for a classifier is rounded to the nearest whole number (a quality
station writes 0/1 or a class number). Classes are *binary* (1 is the positive
class: "fault", "reject") when the output can only mean 0 or 1 (bool, a
probability, an integer output with valid range within 0..1); otherwise
multiclass.

**Classifier figures**, over the pairs in the window:

- accuracy: share of predictions that were right;
- precision: of the predictions "positive", the share that were positive
  (how far to trust an alarm from the model);
- recall: of the truly positive parts, the share the model caught
  (how much it misses);
- F1: one number for both, 2 x precision x recall / (precision + recall).

Binary: for class 1. Multiclass: each class in turn is "positive", and the
figure is the plain average over the classes that occur in the window (as
truth or prediction), every class counting the same (macro average), so a
rare class the model never gets right pulls the figure down.

A figure that would divide by zero is *undefined* (None), not 0: precision
when the model predicted no positive, recall when no part was positive, F1
when neither happened. A window of a healthy machine, with no fault and no
fault predicted, has no F1 and so raises no F1 alarm; a multiclass average
leaves out the classes where the figure is undefined. These are the
definitions of scikit-learn's ``accuracy_score``, ``precision_score``,
``recall_score`` and ``f1_score`` with ``average="binary"`` / ``"macro"`` and
``zero_division=numpy.nan``.

**Regressor figures**, in the output's own units:

- MAE, mean absolute error: the average of |prediction - truth|;
- RMSE, root mean squared error: the square root of the average of
  (prediction - truth)^2; it weighs large misses more, so RMSE well above MAE
  means a few large misses rather than many small ones.

A window needs ``min_pairs`` pairs before it gives any figure.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
from pydantic import BaseModel, ConfigDict

from gateway.monitor.thresholds import MonitorThresholds, Task
from gateway.monitor.windows import PairCounts, SlidingWindow, Totals, VectorSum, window_of
from sdk.package.manifest import ElementType, Manifest, TensorSpec

_INTEGER_TYPES = frozenset(
    {
        ElementType.INT8,
        ElementType.INT16,
        ElementType.INT32,
        ElementType.INT64,
        ElementType.UINT8,
        ElementType.UINT16,
        ElementType.UINT32,
        ElementType.UINT64,
        ElementType.BOOL,
    }
)


def feedback_output(manifest: Manifest, thresholds: MonitorThresholds) -> TensorSpec:
    """The output ground truth is compared with: the configured one, else the first."""
    wanted = thresholds.feedback_outputs.get(manifest.name)
    for tensor in manifest.outputs:
        if wanted is None or tensor.name == wanted:
            return tensor
    raise KeyError(f"model {manifest.name} has no output {wanted!r}")


def is_probability(tensor: TensorSpec) -> bool:
    """A floating-point output with valid range exactly 0..1."""
    return tensor.element_type not in _INTEGER_TYPES and tensor.valid.min == 0.0 and tensor.valid.max == 1.0


def task_of(manifest: Manifest, thresholds: MonitorThresholds) -> Task:
    """Classification or regression for the model's feedback output (the rule in the module docstring)."""
    if manifest.name in thresholds.tasks:
        return thresholds.tasks[manifest.name]
    tensor = feedback_output(manifest, thresholds)
    if tensor.element_type in _INTEGER_TYPES or is_probability(tensor):
        return Task.CLASSIFICATION
    return Task.REGRESSION


def is_binary(tensor: TensorSpec) -> bool:
    """The output can only mean class 0 or 1."""
    if tensor.element_type == ElementType.BOOL or is_probability(tensor):
        return True
    low, high = tensor.valid.min, tensor.valid.max
    return tensor.element_type in _INTEGER_TYPES and low is not None and high is not None and low >= 0 and high <= 1


class QualityFigures(BaseModel):
    """Quality of one model version over some pairs; a figure is None when it does not apply or lacks pairs."""

    model_config = ConfigDict(frozen=True)

    task: Task
    pairs: int
    accuracy: float | None = None
    precision: float | None = None
    recall: float | None = None
    f1: float | None = None
    mae: float | None = None
    rmse: float | None = None


def _ratio(num: float, den: float) -> float | None:
    return num / den if den else None


def _mean(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return float(np.mean(known)) if known else None


def classification_figures(pairs: Counter[tuple[int, int]], binary: bool) -> dict[str, float | None]:
    """Accuracy, precision, recall and F1 from confusion counts {(true, predicted): count}; None where undefined."""
    total = sum(pairs.values())
    right = sum(c for (t, p), c in pairs.items() if t == p)
    classes = [1] if binary else sorted({t for t, _ in pairs} | {p for _, p in pairs})
    precision, recall, f1 = [], [], []
    for k in classes:
        tp = pairs.get((k, k), 0)
        predicted = sum(c for (_, p), c in pairs.items() if p == k)
        actual = sum(c for (t, _), c in pairs.items() if t == k)
        precision.append(_ratio(tp, predicted))
        recall.append(_ratio(tp, actual))
        f1.append(_ratio(2 * tp, predicted + actual))  # = 2PR/(P+R), also where P or R alone is undefined
    return {"accuracy": _ratio(right, total), "precision": _mean(precision), "recall": _mean(recall), "f1": _mean(f1)}


class QualityTracker:
    """Quality figures of one model version, updated batch by batch of (prediction, ground truth) pairs."""

    def __init__(self, manifest: Manifest, thresholds: MonitorThresholds) -> None:
        self.thresholds = thresholds
        self.output = feedback_output(manifest, thresholds)
        self.task = task_of(manifest, thresholds)
        self.binary = is_binary(self.output)
        self._classes: tuple[SlidingWindow[PairCounts], Totals[PairCounts]] | None = None
        self._errors: tuple[SlidingWindow[VectorSum], Totals[VectorSum]] | None = None
        if self.task == Task.CLASSIFICATION:
            self._classes = (window_of(PairCounts(), thresholds, exact=True), Totals(PairCounts()))
        else:
            self._errors = (window_of(VectorSum(2), thresholds), Totals(VectorSum(2)))

    def predicted_class(self, values: np.ndarray) -> np.ndarray:
        """Class numbers from output values: thresholded probabilities, or rounded labels."""
        if is_probability(self.output):
            return np.asarray(values >= self.thresholds.decision_threshold, dtype=np.int64)
        return np.asarray(np.rint(values), dtype=np.int64)

    def add(self, times: np.ndarray, predicted: np.ndarray, truth: np.ndarray) -> None:
        """Add pairs: ``times`` (seconds) of the predictions, their output values and the ground truth values."""
        predicted = np.asarray(predicted, dtype=np.float64)
        truth = np.asarray(truth, dtype=np.float64)
        usable = np.isfinite(predicted) & np.isfinite(truth)
        times, predicted, truth = np.asarray(times, dtype=np.float64)[usable], predicted[usable], truth[usable]
        if self._classes is not None:
            rows = np.column_stack([np.rint(truth).astype(np.int64), self.predicted_class(predicted)])
            for tally in self._classes:
                tally.add(times, rows)
        elif self._errors is not None:
            error = predicted - truth
            rows = np.column_stack([np.abs(error), error * error])
            for sums in self._errors:
                sums.add(times, rows)

    def expire(self, now_s: float) -> None:
        """Drop pairs older than the window's age limit as of ``now_s``."""
        for window in (self._classes[0] if self._classes else None, self._errors[0] if self._errors else None):
            if window is not None:
                window.expire(now_s)

    def _figures(self, index: int) -> QualityFigures:
        if self._classes is not None:
            counts = self._classes[index].tally
            if counts.count < self.thresholds.min_pairs:
                return QualityFigures(task=self.task, pairs=counts.count)
            return QualityFigures(
                task=self.task, pairs=counts.count, **classification_figures(counts.pairs, self.binary)
            )
        assert self._errors is not None
        sums = self._errors[index].tally
        if sums.count < self.thresholds.min_pairs:
            return QualityFigures(task=self.task, pairs=sums.count)
        mae = float(sums.sums[0]) / sums.count
        rmse = math.sqrt(max(float(sums.sums[1]), 0.0) / sums.count)
        return QualityFigures(task=self.task, pairs=sums.count, mae=mae, rmse=rmse)

    def window(self) -> QualityFigures:
        """Figures over the sliding window."""
        return self._figures(0)

    def since_deployment(self) -> QualityFigures:
        """Figures over every pair since the version was deployed."""
        return self._figures(1)


_HIGHER_IS_BETTER = {"accuracy": True, "precision": True, "recall": True, "f1": True, "mae": False, "rmse": False}


class FigureChange(BaseModel):
    """One figure of a version next to the same figure of the version before it."""

    model_config = ConfigDict(frozen=True)

    current: float
    previous: float
    change: float
    better: bool


def compare(current: QualityFigures, previous: QualityFigures) -> dict[str, FigureChange]:
    """Figures both versions have, with the change (current - previous) and whether it is an improvement."""
    out: dict[str, FigureChange] = {}
    for name, higher_is_better in _HIGHER_IS_BETTER.items():
        now, before = getattr(current, name), getattr(previous, name)
        if now is None or before is None:
            continue
        change = now - before
        out[name] = FigureChange(
            current=now, previous=before, change=change, better=change > 0 if higher_is_better else change < 0
        )
    return out
