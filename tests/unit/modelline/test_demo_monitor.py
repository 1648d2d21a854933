"""The demo gateway's Model Monitor settings on the demo line's own pumps: Pump2's wear raises a drift alarm
within the first minute after deployment, steady Pump1 stays quiet for a quarter of an hour.

The rows come from the demo's LineSimulator pumps stepped by their own code at the line's period (one
prediction per step: the demo binding triggers on speed), the outputs from the real example model, the
figures and states from the gateway's PipelineMonitor with the demo's DEMO_MONITOR.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from gateway.monitor.figures import PipelineMonitor
from gateway.monitor.thresholds import Level
from modelline.demo.line import TAGS, LineSimulator
from modelline.demo.run import DEMO_MONITOR
from sdk.monitor.records import PredictionRecord
from sdk.package.build import build_package
from sdk.package.manifest import Manifest
from sdk.package.spec import PackageSpec

T0 = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
DEPLOYED_AFTER_S = 9.0  # the demo's set-up: the line runs about this long before the model is active


@pytest.fixture(scope="module")
def manifest(example: Path, tmp_path_factory: pytest.TempPathFactory) -> Manifest:
    out = tmp_path_factory.mktemp("package") / "pump-health.mlpkg"
    spec = PackageSpec.load(example / "spec.toml")
    return build_package(example / "model.onnx", out, name="pump-health", version="1.0.0", spec=spec).manifest


@pytest.fixture(scope="module")
def session(example: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(example / "model.onnx"), providers=["CPUExecutionProvider"])


def _rows(pump_name: str, seconds: float, seed: int) -> np.ndarray:
    """The pump's tags from its deployment on, as the demo line makes them (the line's own pump and period)."""
    line = LineSimulator("opc.tcp://127.0.0.1:1/unused/", seed=seed)
    pump = next(p for p in line.pumps if p.name == pump_name)
    steps = round((DEPLOYED_AFTER_S + seconds) / line.period_s)
    rows = [[pump.step(line.period_s, line.rng, i * line.period_s)[t] for t in TAGS] for i in range(steps)]
    return np.array(rows[round(DEPLOYED_AFTER_S / line.period_s) :])


def _levels(
    rows: np.ndarray, manifest: Manifest, session: ort.InferenceSession
) -> list[tuple[float, dict[str, Level]]]:
    """Every 2 s (the demo gateway's figures refresh): seconds since deployment, the drift levels."""
    monitor = PipelineMonitor(manifest, DEMO_MONITOR)
    score, life = session.run(None, {"sensors": rows.astype(np.float32)})
    out = []
    for start in range(0, rows.shape[0], 20):
        monitor.add(
            [
                PredictionRecord(
                    time=T0 + timedelta(seconds=i / 10),
                    model="pump-health",
                    version="1.0.0",
                    inputs=dict(zip(TAGS, map(float, rows[i]), strict=True)),
                    outputs={"anomaly_score": float(score[i, 0]), "remaining_life": float(life[i, 0])},
                    latency_ms=0.2,
                )
                for i in range(start, min(start + 20, rows.shape[0]))
            ]
        )
        levels = {key: level for key, (level, _) in monitor.levels().items() if "drift" in key}
        out.append(((start + 20) / 10, levels))
    return out


@pytest.mark.parametrize("seed", [7, 8, 9, 10, 11])
def test_pump2_drift_alarm_comes_within_a_minute_of_deployment(
    seed: int, manifest: Manifest, session: ort.InferenceSession
) -> None:
    levels = _levels(_rows("Pump2", 90, seed), manifest, session)
    first = next((t for t, lv in levels if lv["input_drift"] == Level.ALARM), None)
    # The first moment it can be: the baseline (150 predictions) and one full window (150) after deployment.
    assert first == 30, first
    assert all(lv["input_drift"] == Level.ALARM for t, lv in levels if t >= first)  # and stays


@pytest.mark.parametrize("seed", [7, 8, 9])
def test_steady_pump1_raises_no_drift_warning_in_a_quarter_of_an_hour(
    seed: int, manifest: Manifest, session: ort.InferenceSession
) -> None:
    levels = _levels(_rows("Pump1", 900, seed), manifest, session)
    loud = [(t, key, level) for t, lv in levels for key, level in lv.items() if level != Level.OK]
    assert not loud, loud[:5]
    assert levels[-1][0] >= 900
