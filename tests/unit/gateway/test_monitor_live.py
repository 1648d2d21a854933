"""LiveFigures: fed batch by batch, or rebuilt from the store after a restart, the figures are the same;
verdicts name the figure, the feature and the level in plain words."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from gateway.monitor.base import Feedback
from gateway.monitor.live import LiveFigures
from gateway.monitor.service import Monitor
from gateway.monitor.store import MonitorStore
from gateway.monitor.thresholds import FigureThresholds, InputReference, Level, MonitorThresholds
from gateway.store.base import DeploymentRecord, TargetRecord
from nodesets.ids import DeploymentState
from sdk.monitor.records import PredictionRecord, RecordEnvelope
from sdk.package.manifest import Manifest
from tests.unit.gateway.test_monitor_quality import REGRESSOR

T0 = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
THRESHOLDS = MonitorThresholds(
    window_records=20, baseline_records=20, output_bins=4, min_pairs=3, input_reference=InputReference.DEPLOYMENT
)
ERROR_RATE = FigureThresholds(warning=0.05, alarm=0.2, deadband=0.01)


def _records(
    first: int, count: int, rng: np.random.Generator, shift: float = 0.0, bad: int = 0
) -> list[RecordEnvelope]:
    return [
        RecordEnvelope(
            sequence=first + i,
            record=PredictionRecord(
                time=T0 + timedelta(seconds=first + i),
                model="m",
                version="1.0.0",
                inputs={"x": float(rng.integers(0, 5)) + shift},
                outputs={"remaining_life": float(rng.integers(0, 5)) * 10 + shift * 10},
                part_key=f"P{first + i}",
                status=0x80000000 if i < bad else 0,
            ),
        )
        for i in range(count)
    ]


def _live() -> LiveFigures:
    return LiveFigures("d1", "edge-a", REGRESSOR, THRESHOLDS, ERROR_RATE)


async def test_replay_from_the_store_gives_the_figures_fed_batch_by_batch(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    fed = _live()
    async with MonitorStore.open(tmp_path / "monitor.sqlite3") as store:
        for first, shift in ((1, 0.0), (21, 0.0), (41, 2.0), (61, 2.0)):
            batch = _records(first, 20, rng, shift)
            await store.ingest_batch("edge-a", "main", "q1", batch, deployment_of=lambda _m, _v: "d1")
            fed.add([e.record for e in batch if isinstance(e.record, PredictionRecord)])
        for i in (3, 30, 50, 70):
            await store.add_feedback(
                Feedback(sample_id=f"s{i}", device="edge-a", pipeline="main", value=i, part_key=f"P{i}", time=T0)
            )
        pairs = await store.pairs(device="edge-a")
        assert fed.add_pairs(pairs) == 4 and fed.add_pairs(pairs) == 0  # each sample id counts once
        rebuilt = _live()
        await rebuilt.replay(store)
    assert rebuilt.monitor.figures() == fed.monitor.figures()
    snapshot = fed.evaluate(T0 + timedelta(seconds=90))
    assert snapshot.figures.input_drift is not None and snapshot.figures.input_drift >= 0.25
    verdict = snapshot.verdicts["InputDriftAlarm"]
    assert verdict is not None and verdict.level == Level.ALARM
    assert verdict.message.startswith("m 1.0.0 on edge-a: input drift ")
    assert verdict.message.endswith(" (significant) since 08:01 UTC")  # one feature: no need to name it
    assert snapshot.state == Level.ALARM and snapshot.data_quality == 1.0 and snapshot.error_rate == 0.0
    assert snapshot.figures.quality.mae is not None and snapshot.verdicts["QualityAlarm"] is not None


def test_no_evidence_no_verdict_and_the_error_rate_of_bad_predictions() -> None:
    rng = np.random.default_rng(4)
    live = _live()
    live.add([e.record for e in _records(1, 10, rng) if isinstance(e.record, PredictionRecord)])
    snapshot = live.evaluate(T0)
    assert all(v is None for v in snapshot.verdicts.values())  # the window is not full: the alarms stay as they are
    live.add([e.record for e in _records(11, 10, rng, bad=5) if isinstance(e.record, PredictionRecord)])
    snapshot = live.evaluate(T0)
    assert snapshot.error_rate == 0.25
    verdict = snapshot.verdicts["ErrorRateAlarm"]
    assert verdict is not None and verdict.level == Level.ALARM and "25% of predictions Bad" in verdict.message


async def test_a_newer_deployment_of_the_model_supersedes_the_older_one_on_that_device(tmp_path: Path) -> None:
    packages = {"a" * 64: "1.0.0", "b" * 64: "1.1.0"}  # SHA-256 -> version, as the gateway stores them

    async def manifest_of(model: str, version: str, sha256: str = "") -> Manifest | None:
        if model != "m" or (version not in packages.values() and sha256 not in packages):
            return None
        return REGRESSOR.model_copy(update={"version": packages.get(sha256, version)})

    def deployment(
        name: str, version: str, targets: list[str], sha256: str = ""
    ) -> tuple[DeploymentRecord, list[TargetRecord]]:
        record = DeploymentRecord(
            id=name,
            model="m",
            version=version,
            targets=targets,
            options_json="{}",
            state=DeploymentState.ACTIVE,
            created_at=T0,
            updated_at=T0,
        )
        rows = [
            TargetRecord(deployment_id=name, device_id=d, state=DeploymentState.ACTIVE, updated_at=T0, sha256=sha256)
            for d in targets
        ]
        return record, rows

    async with MonitorStore.open(tmp_path / "monitor.sqlite3") as store:
        monitor = Monitor(store, thresholds=THRESHOLDS, manifest_of=manifest_of)
        await monitor.deployment_changed(*deployment("d1", "1.0.0", ["edge-a", "edge-b"]))
        assert set(monitor.live) == {("d1", "edge-a"), ("d1", "edge-b")}
        await monitor.deployment_changed(*deployment("d2", "1.1.0", ["edge-a"]))
        assert set(monitor.live) == {("d1", "edge-b"), ("d2", "edge-a")}
        assert monitor.superseded == {("d1", "edge-a"): "d2"}
        assert monitor.deployment_of("edge-a", "m", "1.1.0") == "d2"
        rng = np.random.default_rng(5)
        batch = _records(1, 5, rng)
        await monitor.stored(
            "edge-a", [e.model_copy(update={"record": e.record.model_copy(update={"version": "1.1.0"})}) for e in batch]
        )
        assert len(monitor.live[("d2", "edge-a")]._recent) == 5  # credited to the deployment that brought 1.1.0
        await monitor.deployment_changed(*deployment("d1", "1.0.0", ["edge-a", "edge-b"]))  # d1 changes again
        assert ("d1", "edge-a") not in monitor.live  # superseded stays superseded
        # a rollback to the fallback names no version: the target's package says 1.0.0, and 1.0.0's records count
        await monitor.deployment_changed(*deployment("d3", "fallback", ["edge-a"], sha256="a" * 64))
        assert ("d3", "edge-a") in monitor.live and monitor.superseded[("d2", "edge-a")] == "d3"
        assert monitor.deployment_of("edge-a", "m", "1.0.0") == "d3"
        await monitor.stored("edge-a", _records(6, 5, rng))
        assert len(monitor.live[("d3", "edge-a")]._recent) == 5
