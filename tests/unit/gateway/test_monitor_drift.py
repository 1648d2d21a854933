"""Drift, data quality and states: PSI by hand, quiet on in-distribution data, loud on a shift and on the demo's wear."""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType

import numpy as np
import onnxruntime as ort
import pytest

from gateway.monitor import windows
from gateway.monitor.data_quality import is_bad
from gateway.monitor.drift import ReferenceBins, psi, psi_of_values
from gateway.monitor.figures import PipelineMonitor
from gateway.monitor.thresholds import FigureThresholds, InputReference, Level, LevelTracker, MonitorThresholds
from modelline.demo.line import TAGS, Pump
from sdk.monitor.records import PredictionRecord
from sdk.package.build import build_package
from sdk.package.manifest import FeatureStats, Manifest
from sdk.package.spec import PackageSpec

T0 = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
BAD_NO_COMMUNICATION = 0x80310000
UNCERTAIN_LAST_USABLE_VALUE = 0x40900000


@pytest.fixture(scope="module")
def pump(example: Path, tmp_path_factory: pytest.TempPathFactory) -> Manifest:
    """The example pump model's manifest, built by the real package builder from its training CSV."""
    out = tmp_path_factory.mktemp("package") / "pump-health.mlpkg"
    spec = PackageSpec.load(example / "spec.toml")
    return build_package(example / "model.onnx", out, name="pump-health", version="1.0.0", spec=spec).manifest


@pytest.fixture(scope="module")
def session(example: Path) -> ort.InferenceSession:
    """The example model itself, to give records their real outputs."""
    return ort.InferenceSession(str(example / "model.onnx"), providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def train(example: Path) -> ModuleType:
    """examples/pump_health/train.py: its ``simulate`` draws rows from the distribution the model was trained on."""
    spec = importlib.util.spec_from_file_location("pump_train", example / "train.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def records(
    rows: np.ndarray, session: ort.InferenceSession, start: int = 0, hz: float = 10.0
) -> list[PredictionRecord]:
    """Prediction records for sensor rows (one per row, ``hz`` a second), outputs from the real model."""
    score, life = session.run(None, {"sensors": rows.astype(np.float32)})
    return [
        PredictionRecord(
            time=T0 + timedelta(seconds=(start + i) / hz),
            model="pump-health",
            version="1.0.0",
            inputs=dict(zip(TAGS, map(float, row), strict=True)),
            outputs={"anomaly_score": float(score[i, 0]), "remaining_life": float(life[i, 0])},
            latency_ms=0.2,
        )
        for i, row in enumerate(rows)
    ]


def batches(rows: np.ndarray, size: int) -> Iterator[tuple[int, np.ndarray]]:
    for start in range(0, rows.shape[0], size):
        yield start, rows[start : start + size]


# --- PSI -----------------------------------------------------------------------------------------


def test_psi_equals_a_hand_computed_value() -> None:
    reference = ReferenceBins(np.array([0.0, 1.0, 2.0]), np.array([0.5, 0.5]))
    # 3 of 4 values in the first bin, 1 in the second: actual 0.75 / 0.25 against 0.5 / 0.5.
    by_hand = (0.75 - 0.5) * math.log(0.75 / 0.5) + (0.25 - 0.5) * math.log(0.25 / 0.5)
    assert psi_of_values(np.array([0.5, 0.5, 0.5, 1.5]), reference) == pytest.approx(by_hand)
    assert by_hand == pytest.approx(0.274653, abs=1e-6)
    # Half the values above the last edge: the open outer bin, whose empty reference share counts as epsilon.
    eps = 1e-4
    by_hand = 2 * (0.25 - 0.5) * math.log(0.25 / 0.5) + (0.5 - eps) * math.log(0.5 / eps)
    assert psi_of_values(np.array([0.5, 1.5, 2.5, 3.0]), reference, eps) == pytest.approx(by_hand)
    assert psi_of_values(np.array([0.5, 1.5]), reference) == 0.0
    assert psi(np.zeros(4), reference.expected, eps) is None


def test_bins_are_numpy_histogram_bins_with_two_open_outer_bins() -> None:
    rng = np.random.default_rng(1)
    edges = np.array([-1.0, -0.3, 0.0, 0.4, 1.0])
    reference = ReferenceBins(edges, np.full(4, 0.25))
    values = np.concatenate([rng.normal(0, 1, 1000), edges, [np.nan]])
    slots = reference.slot(values)
    counts = np.bincount(slots[slots >= 0], minlength=reference.slots)
    inner, _ = np.histogram(values[np.isfinite(values)], bins=edges)
    assert list(counts[1:-1]) == list(inner)
    assert counts[0] == np.sum(values < -1.0)
    assert counts[-1] == np.sum(values > 1.0)
    assert slots[-1] == -1  # NaN counts nowhere
    constant = ReferenceBins.from_values(np.full(50, 3.0), 10)
    assert constant is not None
    assert list(constant.slot(np.array([2.0, 3.0, 4.0]))) == [0, 1, 2]


# --- input and output drift ----------------------------------------------------------------------


def test_in_distribution_data_stays_quiet_for_a_long_run(
    pump: Manifest, session: ort.InferenceSession, train: ModuleType
) -> None:
    """100 windows of fresh rows from the training data's own simulation: drift and data quality stay Ok."""
    monitor = PipelineMonitor(pump, MonitorThresholds())
    rows, _, _ = train.simulate(100_000, np.random.default_rng(2026))
    highest = 0.0
    for start, batch in batches(rows, 1000):
        monitor.add(records(batch, session, start))
        figures = monitor.figures()
        if start >= 1000:
            assert figures.input_drift is not None
            highest = max(highest, figures.input_drift)
        not_ok = {key: level for key, (level, _) in monitor.levels(figures).items() if level != Level.OK}
        assert not not_ok, f"after {start + 1000} records: {not_ok} {figures}"
    assert highest < 0.05  # well under the 0.1 warning: quantile bins, 1000 values per window
    assert figures.output_drift is not None
    assert figures.bad_rate[""] == 0.0


def test_a_shift_of_one_standard_deviation_raises_input_drift_on_that_feature(
    pump: Manifest, session: ort.InferenceSession, train: ModuleType
) -> None:
    """Bearing wear seen as vibration one training standard deviation higher: Alarm, and the feature says which."""
    thresholds = MonitorThresholds(window_records=500)
    monitor = PipelineMonitor(pump, thresholds)
    rows, _, _ = train.simulate(3000, np.random.default_rng(7))
    std = pump.reference_stats["vibration_rms"].std
    monitor.add(records(rows[:1000], session))
    assert monitor.levels()["input_drift"][0] == Level.OK
    shifted = rows[1000:].copy()
    shifted[:, 0] += std
    monitor.add(records(shifted, session, 1000))
    figures = monitor.figures()
    assert figures.feature_drift["vibration_rms"] is not None
    assert figures.feature_drift["vibration_rms"] > 0.25
    assert figures.input_drift == figures.feature_drift["vibration_rms"]  # the pipeline's score: the worst feature
    others = [v for k, v in figures.feature_drift.items() if k != "vibration_rms"]
    assert all(v is not None and v < 0.1 for v in others)
    levels = monitor.levels(figures)
    assert levels["input_drift"] == (Level.ALARM, True)
    assert levels["input_drift/vibration_rms"] == (Level.ALARM, True)
    assert levels["input_drift/speed"] == (Level.OK, False)


def test_no_drift_score_before_min_records(pump: Manifest, session: ort.InferenceSession, train: ModuleType) -> None:
    monitor = PipelineMonitor(pump, MonitorThresholds(min_records=200, baseline_records=100))
    rows, _, _ = train.simulate(299, np.random.default_rng(3))
    rows[:, 0] += 100.0  # far off, but only 5 records: no verdict
    monitor.add(records(rows[:5], session))
    figures = monitor.figures()
    assert figures.input_drift is None
    assert figures.bad_rate[""] is None
    assert not figures.baseline_complete
    assert monitor.levels(figures)["input_drift"] == (Level.OK, False)
    monitor.add(records(rows[5:], session, 5))
    figures = monitor.figures()
    assert figures.baseline_complete
    assert figures.input_drift is not None
    assert figures.input_drift > 0.25
    assert figures.output_drift is None  # 199 records after the 100 of the baseline: not yet min_records


def demo_pump(name: str, wear: float, wear_rate: float, seconds: float, seed: int = 7) -> np.ndarray:
    """Sensor rows of one pump of the demo line, stepped at the demo's 10 Hz by its own simulation code."""
    pump, rng = Pump(name, wear=wear, wear_rate=wear_rate), np.random.default_rng(seed)
    steps = round(seconds * 10)
    return np.array([[pump.step(0.1, rng, i * 0.1)[t] for t in TAGS] for i in range(steps)])


def first_alarm(monitor: PipelineMonitor, rows: np.ndarray, session: ort.InferenceSession, key: str) -> float | None:
    """Feed the rows 10 s at a time; the second (since deployment) at which ``key`` first is in Alarm."""
    for start, batch in batches(rows, 100):
        monitor.add(records(batch, session, start))
        if monitor.levels()[key][0] == Level.ALARM:
            return (start + 100) / 10.0
    return None


def test_the_demo_pump2_wear_raises_drift_within_200_seconds(pump: Manifest, session: ort.InferenceSession) -> None:
    """Demo Pump2 (worn bearing, 0.006 wear a second) at the demo's 10 predictions a second, default windows.

    Output drift: the baseline is the first 1000 predictions (100 s), the first score comes with the next full
    window of 1000 (100 s later): Alarm at 200 s, the first moment it can be. Input drift against the first window
    after deployment likewise; against the training data, at the first full window (100 s).
    """
    rows = demo_pump("Pump2", 0.55, 0.006, seconds=300)
    assert first_alarm(PipelineMonitor(pump, MonitorThresholds()), rows, session, "output_drift") == 200.0
    deployment = MonitorThresholds(input_reference=InputReference.DEPLOYMENT)
    assert first_alarm(PipelineMonitor(pump, deployment), rows, session, "input_drift") == 200.0
    assert first_alarm(PipelineMonitor(pump, MonitorThresholds()), rows, session, "input_drift") == 100.0


def test_a_steady_demo_pump_raises_no_output_drift_alarm_for_an_hour(
    pump: Manifest, session: ort.InferenceSession
) -> None:
    """A demo pump that does not wear (its cavitation and overheating faults still come): no Alarm in an hour."""
    monitor = PipelineMonitor(pump, MonitorThresholds())
    rows = demo_pump("Pump1", 0.3, 0.0, seconds=3600, seed=11)
    highest = 0.0
    for start, batch in batches(rows, 500):
        monitor.add(records(batch, session, start))
        figures = monitor.figures()
        highest = max(highest, figures.output_drift or 0.0)
        assert monitor.levels(figures)["output_drift"][0] != Level.ALARM, start
    assert 0.0 < highest < 0.25


def test_a_steady_demo_pump_against_its_first_window_stays_quiet_for_two_hours(
    pump: Manifest, session: ort.InferenceSession
) -> None:
    """Input and output drift against the first window after deployment, windows of 200 s: no Alarm in two hours.

    The training data spans whole pump lives, one steady pump a narrow part of it: against the training
    reference its input drift is in Alarm from the first window, which is why ``input_reference`` exists.
    """
    thresholds = MonitorThresholds(
        input_reference=InputReference.DEPLOYMENT, window_records=2000, baseline_records=2000
    )
    monitor = PipelineMonitor(pump, thresholds)
    rows = demo_pump("Pump1", 0.3, 0.0, seconds=7200, seed=12)
    for start, batch in batches(rows, 1000):
        monitor.add(records(batch, session, start))
        levels = monitor.levels()
        alarms = [key for key, (level, _) in levels.items() if level == Level.ALARM and "drift" in key]
        assert not alarms, start
    assert monitor.figures().input_drift is not None
    assert first_alarm(PipelineMonitor(pump, MonitorThresholds()), rows[:2000], session, "input_drift") == 100.0


def test_after_a_restart_the_baseline_and_the_last_window_give_the_same_figures(
    pump: Manifest, session: ort.InferenceSession
) -> None:
    """The rebuild the figures module describes: first baseline, then the newest window, and nothing else."""
    rows = demo_pump("Pump2", 0.55, 0.006, seconds=500)
    every = records(rows, session)
    thresholds = MonitorThresholds(input_reference=InputReference.DEPLOYMENT)
    running = PipelineMonitor(pump, thresholds)
    for start in range(0, len(every), 250):
        running.add(every[start : start + 250])
    rebuilt = PipelineMonitor(pump, thresholds)
    rebuilt.add(every[: thresholds.baseline_records])
    rebuilt.add(every[-1000:])
    assert rebuilt.figures() == running.figures()
    assert running.figures().output_drift is not None


# --- data quality --------------------------------------------------------------------------------


def test_data_quality_rates_per_feature_and_per_pipeline(pump: Manifest) -> None:
    good = {"vibration_rms": 3.0, "bearing_temperature": 50.0, "discharge_pressure": 4.6, "flow_rate": 118.0,
            "speed": 1475.0}  # fmt: skip

    def record(i: int, inputs: dict[str, float | None], status: dict[str, int] | None = None) -> PredictionRecord:
        return PredictionRecord(
            time=T0 + timedelta(seconds=i),
            model="pump-health",
            version="1.0.0",
            inputs=inputs,
            input_status=status or {},
            outputs={"anomaly_score": 0.1, "remaining_life": 3000.0},
        )

    batch = []
    for i in range(100):
        inputs: dict[str, float | None] = dict(good)
        status: dict[str, int] = {}
        if i < 10:  # 10 %: speed not recorded at all
            del inputs["speed"]
        if 10 <= i < 15:  # 5 %: vibration None with a Bad status
            inputs["vibration_rms"], status["vibration_rms"] = None, BAD_NO_COMMUNICATION
        if 15 <= i < 17:  # 2 %: a value with a Bad status
            status["flow_rate"] = BAD_NO_COMMUNICATION
        if 17 <= i < 20:  # 3 %: NaN
            inputs["flow_rate"] = math.nan
        if 20 <= i < 40:  # 20 %: temperature over its valid range (max 150 °C)
            inputs["bearing_temperature"] = 180.0
        if i == 40:  # Uncertain is not Bad
            status["speed"] = UNCERTAIN_LAST_USABLE_VALUE
        if 5 <= i < 8:  # these records also have an out-of-range pressure (valid 0..16 bar)
            inputs["discharge_pressure"] = -1.0
        batch.append(record(i, inputs, status))
    assert is_bad(BAD_NO_COMMUNICATION)
    assert not is_bad(UNCERTAIN_LAST_USABLE_VALUE)
    monitor = PipelineMonitor(pump, MonitorThresholds(min_records=50, window_records=100))
    monitor.add(batch)
    figures = monitor.figures()
    assert figures.missing_rate == {"": 0.1, "speed": 0.1, "vibration_rms": 0.0, "bearing_temperature": 0.0,
                                    "discharge_pressure": 0.0, "flow_rate": 0.0}  # fmt: skip
    assert figures.bad_rate["vibration_rms"] == 0.05
    assert figures.bad_rate["flow_rate"] == 0.05
    assert figures.bad_rate["speed"] == 0.0
    assert figures.bad_rate[""] == 0.1  # records 10..19
    assert figures.out_of_range_rate["bearing_temperature"] == 0.2
    assert figures.out_of_range_rate["discharge_pressure"] == 0.03
    assert figures.out_of_range_rate[""] == 0.23  # records 5..7 and 20..39
    levels = monitor.levels(figures)
    assert levels["missing_rate"][0] == Level.WARNING
    assert levels["out_of_range_rate"][0] == Level.ALARM
    assert levels["out_of_range_rate/discharge_pressure"][0] == Level.OK
    # 100 clean records later the window holds only those: all rates back to 0 and the states clear.
    monitor.add([record(100 + i, dict(good)) for i in range(100)])
    figures = monitor.figures()
    assert figures.out_of_range_rate[""] == 0.0
    quality = {k: v for k, v in monitor.levels(figures).items() if k.split("/")[0].endswith("_rate")}
    assert len(quality) == 3 * 6
    assert quality["out_of_range_rate"] == (Level.OK, True)
    assert all(level == Level.OK for level, _ in quality.values())


# --- states --------------------------------------------------------------------------------------


def test_states_have_hysteresis_so_a_value_near_a_threshold_does_not_flap() -> None:
    drift = FigureThresholds(warning=0.1, alarm=0.25, deadband=0.02)
    level, seen = Level.OK, []
    for value in [0.05, 0.09, 0.1, 0.09, 0.081, 0.079, 0.26, 0.24, 0.231, 0.229, 0.09, 0.07, None, 0.3, None]:
        level = drift.next_level(level, value)
        seen.append(level)
    assert "".join(level.value[0] for level in seen) == "OOWWWOAAAWWOOAA"  # Ok, Warning, Alarm
    # Hovering around the alarm threshold: one rise, no flapping.
    tracker = LevelTracker(MonitorThresholds())
    changes = [tracker.update("d", "input_drift", 0.25 + 0.01 * (-1) ** i)[1] for i in range(20)]
    assert changes == [True] + [False] * 19  # 0.26 raises the Alarm; 0.24 is within the deadband
    # Lower is worse (accuracy): Warning at or under 0.85, Alarm at or under 0.7, cleared 0.02 above.
    accuracy = MonitorThresholds().accuracy
    assert accuracy.next_level(Level.OK, 0.86) == Level.OK
    assert accuracy.next_level(Level.OK, 0.85) == Level.WARNING
    assert accuracy.next_level(Level.OK, 0.6) == Level.ALARM
    assert accuracy.next_level(Level.ALARM, 0.71) == Level.ALARM
    assert accuracy.next_level(Level.ALARM, 0.73) == Level.WARNING
    assert accuracy.next_level(Level.WARNING, 0.86) == Level.WARNING
    assert accuracy.next_level(Level.WARNING, 0.88) == Level.OK
    assert MonitorThresholds().mae.next_level(Level.OK, 1e9) == Level.OK  # no threshold set: never raised
    with pytest.raises(ValueError, match="less severe"):
        FigureThresholds(warning=0.3, alarm=0.2)
    with pytest.raises(ValueError, match="window needs a size"):
        MonitorThresholds(window_records=None, window_seconds=None)


# --- cost per batch ------------------------------------------------------------------------------


def test_a_batch_of_1000_records_costs_the_same_after_a_long_history(
    pump: Manifest, monkeypatch: pytest.MonkeyPatch, session: ort.InferenceSession, train: ModuleType
) -> None:
    """The work of an update (rows the tallies touch) does not grow with the records seen before."""
    touched = [0]

    def counting(method: Callable[..., None]) -> Callable[..., None]:
        def wrapper(self: object, rows: np.ndarray) -> None:
            touched[0] += rows.shape[0]
            method(self, rows)

        return wrapper

    for tally in (windows.BinCounts, windows.VectorSum, windows.PairCounts):
        monkeypatch.setattr(tally, "add", counting(tally.add))
        monkeypatch.setattr(tally, "remove", counting(tally.remove))
    monitor = PipelineMonitor(pump, MonitorThresholds(window_records=2000, baseline_records=1000))
    rows, _, life = train.simulate(1000, np.random.default_rng(4))
    batch = records(rows, session)
    work = []
    for _ in range(40):
        touched[0] = 0
        monitor.add(batch)
        monitor.add_feedback(np.arange(1000.0), life, life + 1.0)
        monitor.figures()
        work.append(touched[0])
    assert work[5] > 0
    assert work[39] == work[5]  # 40 000 records later, the same work as after 6000
    assert len(monitor.input_drift) == 2000


def test_reference_bins_come_from_the_manifest(pump: Manifest) -> None:
    stats: FeatureStats = pump.reference_stats["speed"]
    reference = ReferenceBins.from_stats(stats)
    assert reference.slots == len(stats.frequencies) + 2
    assert reference.expected[0] == reference.expected[-1] == 0.0
    assert reference.expected.sum() == pytest.approx(1.0)
