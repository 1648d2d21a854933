"""The demo's dashboard: what a first-time viewer needs to read it right."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from gateway.store.base import DeploymentRecord
from modelline.cli.demo_cmd import _dashboard
from modelline.demo import run
from modelline.demo.run import Demo, Snapshot
from nodesets.ids import DeploymentState


def _record(version: str, state: str, targets: list[str], **options: Any) -> DeploymentRecord:
    now = datetime(2026, 12, 1, tzinfo=UTC)
    return DeploymentRecord(
        id="deploy-0002",
        model="pump-health",
        version=version,
        targets=targets,
        options_json=json.dumps(options),
        state=DeploymentState.from_label(state),
        created_at=now,
        updated_at=now,
    )


def _node(version: str, score: float | None) -> dict[str, Any]:
    return {
        "pump": "Pump2",
        "version": version,
        "state": "RUNNING",
        "inferences": 10,
        "latency_ms": 0.1,
        "outputs": {"anomaly_score": (score, "Good"), "remaining_life": (100.0, "Good")},
    }


def test_a_rollback_shows_the_version_it_serves_not_fallback() -> None:
    nodes = {"edge-1": _node("1.0.0", 0.1)}
    assert Demo._served(_record("1.1.0", "Active", ["edge-1"]), nodes) == "1.1.0"
    rollback = _record("fallback", "Active", ["edge-1"], fallback=True)
    assert Demo._served(rollback, nodes) == "1.0.0 (fallback)"
    assert Demo._served(_record("fallback", "Installing", ["edge-1"], fallback=True), nodes) == "fallback"


def test_high_fault_probability_is_highlighted_and_pump2_explained() -> None:
    snapshot = Snapshot(
        elapsed_s=12.0,
        tags={"Pump1": {}, "Pump2": {}},
        nodes={"edge-1": {**_node("1.0.0", 0.02), "pump": "Pump1"}, "edge-2": _node("1.0.0", 1.0)},
        deployments=[{"id": "deploy-0003", "version": "1.0.0 (fallback)", "targets": ["edge-1"], "state": "Active"}],
        events=[],
    )
    console = Console(record=True, width=160, force_terminal=True, color_system="standard")
    console.print(_dashboard(snapshot))
    text = " ".join(console.export_text(clear=False).split())  # the caption wraps at the table's width
    assert "Pump2 starts with a worn bearing" in text and "on purpose" in text
    assert "1.0.0 (fallback)" in text
    styled = console.export_text(styles=True)
    high = next(line for line in styled.splitlines() if "edge-2" in line)
    low = next(line for line in styled.splitlines() if "edge-1" in line and "Pump1" in line)
    assert "41m1.000" in high, high  # white on red
    assert "0.020" in low and "41m" not in low, low


def test_a_long_set_up_step_keeps_saying_that_it_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The ticker is a thread: a first start's address-space build blocks the event loop for many seconds."""
    monkeypatch.setattr(run, "TICK_S", 0.05)
    said: list[str] = []
    repeated = threading.Event()

    def progress(text: str) -> None:
        said.append(text)
        if "(still working, " in text:
            repeated.set()

    demo = Demo(tmp_path, note=lambda text: None, progress=progress)
    demo.step("first start: building the standard OPC UA address space")
    ticker = threading.Thread(target=demo._ticker, daemon=True)
    ticker.start()
    assert repeated.wait(5)  # said while this thread (standing in for the blocked event loop) waits
    demo._set_up.set()
    ticker.join(2)
    assert said[0] == "first start: building the standard OPC UA address space"
    assert any(text.startswith(said[0] + " (still working, ") for text in said[1:]), said
