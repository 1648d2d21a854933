"""Model quality from ground truth: the monitor's figures equal scikit-learn's on the same pairs, in windows."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    mean_absolute_error,
    mean_squared_error,
    precision_score,
    recall_score,
)

from gateway.monitor.quality import QualityTracker, compare, task_of
from gateway.monitor.thresholds import Level, MonitorThresholds, Task
from gateway.monitor.windows import SlidingWindow, VectorSum
from sdk.package.manifest import Manifest


def manifest(*outputs: dict[str, object], name: str = "m") -> Manifest:
    """A manifest with the given output tensors (one float input feature ``x``)."""
    return Manifest.model_validate(
        {
            "name": name,
            "version": "1.0.0",
            "created": "2026-11-25T10:00:00Z",
            "producer": {"version": "0.1.0"},
            "onnx": {"model_file": "model.onnx", "ir_version": 8, "opsets": {"": 17}},
            "inputs": [{"name": "x", "element_type": "float32", "shape": ["batch", 1]}],
            "outputs": list(outputs),
            "files": [{"path": "model.onnx", "size": 10, "sha256": "a" * 64}],
        }
    )


def output(name: str, element_type: str, low: float | None = None, high: float | None = None) -> dict[str, object]:
    """One output tensor spec."""
    return {"name": name, "element_type": element_type, "shape": ["batch", 1], "valid": {"min": low, "max": high}}


BINARY = manifest(output("fault", "int64", 0, 1))
MULTICLASS = manifest(output("grade", "int64", 0, 4))
PROBABILITY = manifest(output("anomaly_score", "float32", 0, 1), output("remaining_life", "float32", 0))
REGRESSOR = manifest(output("remaining_life", "float32", 0))
EVERYTHING = MonitorThresholds(window_records=100_000, min_pairs=1)


def sklearn_classification(truth: list[int], predicted: list[int], average: str) -> dict[str, float | None]:
    """scikit-learn's figures, with NaN (here None) where a division by zero would happen (as the monitor does)."""
    kw: dict[str, object] = {"average": average, "zero_division": np.nan}
    if average == "binary":
        kw["labels"] = [0, 1]  # binary even when only one class occurs
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn warns about undefined figures; they are the point here
        figures = {
            "accuracy": accuracy_score(truth, predicted),
            "precision": precision_score(truth, predicted, **kw),
            "recall": recall_score(truth, predicted, **kw),
            "f1": f1_score(truth, predicted, **kw),
        }
    return {key: None if math.isnan(value) else float(value) for key, value in figures.items()}


def assert_figures(got: object, expected: dict[str, float | None]) -> None:
    for key, value in expected.items():
        if value is None:
            assert getattr(got, key) is None, key
        else:
            assert getattr(got, key) == pytest.approx(value, abs=1e-12), key


def times(n: int, start: float = 0.0) -> np.ndarray:
    return start + np.arange(n, dtype=np.float64)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1), st.integers(0, 1)), min_size=1, max_size=300))
def test_binary_figures_equal_scikit_learn(pairs: list[tuple[int, int]]) -> None:
    truth, predicted = [t for t, _ in pairs], [p for _, p in pairs]
    tracker = QualityTracker(BINARY, EVERYTHING)
    tracker.add(times(len(pairs)), np.array(predicted), np.array(truth))
    assert tracker.task == Task.CLASSIFICATION
    assert tracker.binary
    assert_figures(tracker.window(), sklearn_classification(truth, predicted, "binary"))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.integers(0, 4)), min_size=1, max_size=300))
def test_multiclass_figures_equal_scikit_learn_macro_average(pairs: list[tuple[int, int]]) -> None:
    truth, predicted = [t for t, _ in pairs], [p for _, p in pairs]
    tracker = QualityTracker(MULTICLASS, EVERYTHING)
    assert not tracker.binary
    for part in range(0, len(pairs), 37):  # in batches, as records arrive
        tracker.add(times(len(pairs[part : part + 37]), part), np.array(predicted[part : part + 37]),
                    np.array(truth[part : part + 37]))  # fmt: skip
    assert_figures(tracker.window(), sklearn_classification(truth, predicted, "macro"))
    assert tracker.window() == tracker.since_deployment()


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(-1e4, 1e4, allow_nan=False), st.floats(-1e4, 1e4, allow_nan=False)),
        min_size=1,
        max_size=300,
    )
)
def test_mae_and_rmse_equal_scikit_learn(pairs: list[tuple[float, float]]) -> None:
    truth, predicted = [t for t, _ in pairs], [p for _, p in pairs]
    tracker = QualityTracker(REGRESSOR, EVERYTHING)
    tracker.add(times(len(pairs)), np.array(predicted), np.array(truth))
    got = tracker.window()
    assert got.task == Task.REGRESSION
    assert got.accuracy is None
    assert got.mae == pytest.approx(mean_absolute_error(truth, predicted), rel=1e-9, abs=1e-9)
    assert got.rmse == pytest.approx(math.sqrt(mean_squared_error(truth, predicted)), rel=1e-9, abs=1e-9)


def test_a_healthy_machine_without_faults_has_no_f1_and_raises_no_f1_alarm() -> None:
    tracker = QualityTracker(BINARY, MonitorThresholds(min_pairs=10))
    tracker.add(times(100), np.zeros(100), np.zeros(100))  # no fault, none predicted: all right
    figures = tracker.window()
    assert figures.accuracy == 1.0
    assert (figures.precision, figures.recall, figures.f1) == (None, None, None)
    assert MonitorThresholds().f1.next_level(Level.OK, figures.f1) == Level.OK
    # One false alarm: precision 0 (defined), recall still undefined (no real fault), F1 0.
    tracker.add(times(1, 100), np.ones(1), np.zeros(1))
    figures = tracker.window()
    assert (figures.precision, figures.recall, figures.f1) == (0.0, None, 0.0)


def test_a_probability_output_is_a_classifier_thresholded_at_the_decision_threshold() -> None:
    rng = np.random.default_rng(3)
    score = rng.random(500)
    truth = (rng.random(500) < score).astype(int)  # a calibrated model, roughly
    for threshold in (0.5, 0.8):
        thresholds = MonitorThresholds(min_pairs=1, decision_threshold=threshold)
        tracker = QualityTracker(PROBABILITY, thresholds)
        tracker.add(times(500), score, truth.astype(float))
        expected = sklearn_classification(list(truth), list((score >= threshold).astype(int)), "binary")
        assert_figures(tracker.window(), expected)


def test_task_comes_from_the_manifest_unless_the_settings_say_otherwise() -> None:
    plain = MonitorThresholds()
    assert task_of(BINARY, plain) == Task.CLASSIFICATION  # integer output
    assert task_of(manifest(output("ok", "bool")), plain) == Task.CLASSIFICATION
    assert task_of(PROBABILITY, plain) == Task.CLASSIFICATION  # float with valid range 0..1
    assert task_of(REGRESSOR, plain) == Task.REGRESSION
    assert task_of(manifest(output("share", "float32", 0, 100)), plain) == Task.REGRESSION
    # The example pump model: ground truth for remaining_life makes it a regressor.
    assert task_of(PROBABILITY, MonitorThresholds(feedback_outputs={"m": "remaining_life"})) == Task.REGRESSION
    assert task_of(PROBABILITY, MonitorThresholds(tasks={"m": Task.REGRESSION})) == Task.REGRESSION
    with pytest.raises(KeyError):
        task_of(PROBABILITY, MonitorThresholds(feedback_outputs={"m": "nope"}))


def test_the_window_keeps_the_newest_pairs_and_since_deployment_keeps_all() -> None:
    rng = np.random.default_rng(11)
    truth, predicted = rng.integers(0, 2, 1000), rng.integers(0, 2, 1000)
    # The model gets worse over time: the last 300 predictions are all wrong.
    predicted[700:] = 1 - truth[700:]
    tracker = QualityTracker(BINARY, MonitorThresholds(window_records=300, min_pairs=30))
    for part in range(0, 1000, 64):
        tracker.add(times(1000)[part : part + 64], predicted[part : part + 64], truth[part : part + 64])
    assert tracker.window().pairs == 300
    assert tracker.window().accuracy == 0.0
    assert_figures(tracker.window(), sklearn_classification(list(truth[700:]), list(predicted[700:]), "binary"))
    assert_figures(tracker.since_deployment(), sklearn_classification(list(truth), list(predicted), "binary"))


def test_a_time_window_keeps_the_pairs_of_the_last_seconds() -> None:
    rng = np.random.default_rng(5)
    truth = rng.normal(100, 10, 600)
    predicted = truth + rng.normal(0, 1, 600)
    predicted[500:] += 20  # a bias in the last 100 s
    tracker = QualityTracker(REGRESSOR, MonitorThresholds(window_records=None, window_seconds=99.5, min_pairs=10))
    tracker.add(times(600), predicted, truth)  # one pair a second, t = 0..599
    got = tracker.window()
    assert got.pairs == 100  # t = 500..599
    assert got.mae == pytest.approx(mean_absolute_error(truth[500:], predicted[500:]))
    # Nothing new for a while: the window empties and gives no figure.
    tracker.expire(1000.0)
    assert tracker.window().pairs == 0
    assert tracker.window().mae is None
    assert tracker.since_deployment().pairs == 600


def test_no_figure_before_min_pairs_and_unusable_pairs_are_left_out() -> None:
    tracker = QualityTracker(REGRESSOR, MonitorThresholds(min_pairs=3))
    tracker.add(times(3), np.array([1.0, np.nan, 3.0]), np.array([1.0, 2.0, np.inf]))
    assert tracker.window().pairs == 1
    assert tracker.window().mae is None
    tracker.add(times(2, 3), np.array([2.0, 4.0]), np.array([1.0, 1.0]))
    assert tracker.window().mae == pytest.approx((0 + 1 + 3) / 3)


def test_compare_a_version_with_the_one_before() -> None:
    old, new = QualityTracker(BINARY, EVERYTHING), QualityTracker(BINARY, EVERYTHING)
    truth = np.array([1, 0, 1, 1, 0, 0, 1, 0])
    old.add(times(8), np.array([1, 1, 0, 1, 0, 1, 0, 0]), truth)
    new.add(times(8), truth.copy(), truth)
    changes = compare(new.since_deployment(), old.since_deployment())
    assert set(changes) == {"accuracy", "precision", "recall", "f1"}
    assert changes["accuracy"].previous == 0.5
    assert changes["accuracy"].current == 1.0
    assert changes["accuracy"].change == 0.5
    assert all(c.better for c in changes.values())
    worse = compare(old.since_deployment(), new.since_deployment())
    assert not any(c.better for c in worse.values())
    r_old, r_new = QualityTracker(REGRESSOR, EVERYTHING), QualityTracker(REGRESSOR, EVERYTHING)
    r_old.add(times(2), np.array([1.0, 3.0]), np.array([0.0, 0.0]))
    r_new.add(times(2), np.array([0.5, 0.5]), np.array([0.0, 0.0]))
    r_changes = compare(r_new.since_deployment(), r_old.since_deployment())
    assert r_changes["mae"].change == pytest.approx(-1.5)
    assert r_changes["mae"].better
    assert compare(r_new.since_deployment(), old.since_deployment()) == {}  # nothing in common


class _Counting(VectorSum):
    """A VectorSum that counts the rows it touches: the work an update does."""

    touched = 0

    def add(self, rows: np.ndarray) -> None:
        type(self).touched += rows.shape[0]
        super().add(rows)

    def remove(self, rows: np.ndarray) -> None:
        type(self).touched += rows.shape[0]
        super().remove(rows)


def test_updating_a_window_costs_the_same_however_long_the_history() -> None:
    window = SlidingWindow(_Counting(2), max_rows=5000, max_age_s=None)
    rng = np.random.default_rng(0)
    work = []
    for batch in range(200):  # 200 000 rows through a window of 5000
        rows = rng.random((1000, 2))
        _Counting.touched = 0
        window.add(times(1000, batch * 1000.0), rows)
        work.append(_Counting.touched)
    # A batch touches its own rows and the ones leaving; now and then the float sums are
    # recomputed from the rows held (against rounding). Never the history.
    assert max(work[10:]) <= 1000 + 1000 + 5000
    assert max(work[10:]) == max(work[10:20])  # no growth with history
    assert len(window) == 5000
    held = np.concatenate([rows for _, rows in window._chunks])
    assert window.tally.sums == pytest.approx(held.sum(axis=0), rel=1e-12)
