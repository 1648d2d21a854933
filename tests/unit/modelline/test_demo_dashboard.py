"""The demo's dashboard: what a first-time viewer needs to read it right."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from asyncua import Client, Server, ua
from rich.console import Console

from gateway.monitor.thresholds import Level, MonitorThresholds
from gateway.store.base import DeploymentRecord
from modelline.cli.demo_cmd import _dashboard, _monitor_summary
from modelline.demo import run
from modelline.demo.monitor_view import DeviceMonitor, MonitorView
from modelline.demo.run import Demo, DemoReport, Snapshot
from nodesets.ids import MODELLINE_URI, DeploymentState
from sdk.opcua.ports import free_port
from sdk.opcua.shelf import init_server


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


def _panel_text(snapshot: Snapshot) -> tuple[str, str]:
    console = Console(record=True, width=200, force_terminal=True, color_system="standard")
    console.print(_dashboard(snapshot))
    return console.export_text(clear=False), console.export_text(styles=True)


def test_the_monitor_panel_shows_figures_levels_alarms_and_waiting() -> None:
    snapshot = Snapshot(
        elapsed_s=60.0,
        tags={"Pump1": {}, "Pump2": {}},
        nodes={"edge-1": {**_node("1.0.0", 0.02), "pump": "Pump1"}, "edge-2": _node("1.0.0", 0.9)},
        deployments=[],
        events=[],
        monitor={
            "edge-1": DeviceMonitor("deploy-0001", 431, 0.42, Level.OK, 1.0, "Ok", [], offers_drift_alarm=True),
            "edge-2": DeviceMonitor(
                "deploy-0002", 455, 17.25, Level.ALARM, 0.93, "Alarm", ["InputDriftAlarm"], offers_drift_alarm=True
            ),
        },
    )
    text, styled = _panel_text(snapshot)
    assert "Model Monitor (gateway)" in text
    row1 = next(line for line in text.splitlines() if "deploy-0001" in line)
    assert "edge-1" in row1 and "431" in row1 and "0.42 Ok" in row1 and "100.0%" in row1 and "none" in row1
    row2 = next(line for line in styled.splitlines() if "deploy-0002" in line)
    assert "455" in row2 and "17.25 Alarm" in row2 and "93.0%" in row2 and "InputDriftAlarm" in row2
    assert "41m17.25 Alarm" in row2  # white on red
    # Before the gateway offers a figure (or while it is Bad): "waiting", never a made-up 0.
    waiting = Snapshot(
        elapsed_s=5.0,
        tags={},
        nodes={"edge-2": _node("1.0.0", 0.9)},
        deployments=[],
        events=[],
        monitor={"edge-2": DeviceMonitor("deploy-0002", inferences=12)},
    )
    text, _ = _panel_text(waiting)
    row = next(line for line in text.splitlines() if "deploy-0002" in line)
    assert "12" in row and row.count("waiting") == 4, row


def test_the_summary_says_when_the_drift_alarm_fired_or_that_it_waits() -> None:
    report = DemoReport()
    assert (
        _monitor_summary(report)[1] == "drift alarm on edge-2 (Pump2): waiting (the gateway shows no InputDriftAlarm)"
    )
    report.drift_alarm_offered = True
    report.drift_alarm_s = {"edge-2": 52.4}
    report.monitor = {"edge-2": DeviceMonitor("deploy-0002", inferences=455)}
    report.monitor_gateway_counts = {"edge-2": 455}
    lines = _monitor_summary(report)
    assert lines[:2] == ["no drift alarm on edge-1 (Pump1)", "drift alarm on edge-2 (Pump2) at 00:52 after start"]
    assert (
        "Model Monitor edge-2: 455 inferences on the panel, 455 in the gateway's ModelMonitor/deploy-0002/edge-2"
        in lines
    )
    assert any("Model Monitor (gateway)" in line for line in lines)


async def test_the_monitor_view_reads_figures_and_alarms_by_browse_name() -> None:
    """A real server shaped like ModelMonitor/<deployment>/<device>: figures read, Bad ones waiting, conditions
    active by ActiveState/Id; the alarm added later is found on a later browse."""
    server = Server()
    await init_server(server)
    url = f"opc.tcp://127.0.0.1:{free_port()}/monitor/"
    server.set_endpoint(url)
    ml = await server.register_namespace(MODELLINE_URI)
    mine = await server.register_namespace("urn:test:gateway")
    root = await server.nodes.objects.add_object(ua.NodeId("ModelMonitor", mine), ua.QualifiedName("ModelMonitor", ml))
    deployment = await root.add_object(ua.NodeId("d", mine), ua.QualifiedName("deploy-0002", mine))
    device = await deployment.add_object(ua.NodeId("e", mine), ua.QualifiedName("edge-2", mine))
    await device.add_variable(
        ua.NodeId("n", mine), ua.QualifiedName("InferenceCount", ml), ua.Variant(77, ua.VariantType.UInt64)
    )
    drift = await device.add_variable(ua.NodeId("s", mine), ua.QualifiedName("DriftScore", ml), 0.0)
    await drift.write_value(
        ua.DataValue(ua.Variant(0.0, ua.VariantType.Double), ua.StatusCode(ua.StatusCodes.BadWaitingForInitialData))
    )
    async with server, Client(url) as client:
        view = MonitorView(client, MonitorThresholds())
        row = await view.read("deploy-0002", "edge-2")
        assert (row.inferences, row.drift, row.drift_level, row.alarms, row.offers_drift_alarm) == (
            77,
            None,
            None,
            [],
            False,
        )
        assert (await view.read("deploy-0009", "edge-2")).inferences is None  # no such deployment: waiting
        alarm = await device.add_object(ua.NodeId("a", mine), ua.QualifiedName("InputDriftAlarm", ml))
        active = await alarm.add_variable(
            ua.NodeId("as", mine), ua.QualifiedName("ActiveState", 0), ua.LocalizedText("Active")
        )
        await active.add_property(ua.NodeId("id", mine), ua.QualifiedName("Id", 0), True)
        await drift.write_value(ua.DataValue(ua.Variant(0.2, ua.VariantType.Double)))
        row = await view.read("deploy-0002", "edge-2")
        assert row.drift == 0.2 and row.drift_level == Level.WARNING and row.alarms == []  # browsed 5 s ago: kept
        view._nodes.clear()
        row = await view.read("deploy-0002", "edge-2")
        assert row.alarms == ["InputDriftAlarm"] and row.offers_drift_alarm
