"""node-opcua as a SCADA alarm list and trend view (alarms.mjs): ConditionRefresh replays the active alarm,
Acknowledge and Confirm with the EventId it was shown, HistoryRead of a variable and of alarm events;
and node-opcua's generic crawl reads every attribute of the condition nodes (crawl.mjs)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from asyncua import ua

from sdk.opcua.ids import data_value
from tests.alarm_harness import PASSWORDS, AlarmRig, alarm_server
from tests.edge_harness import wait_for
from tests.interop.test_crawl_node_opcua import crawl
from tests.opcua_servers import free_port

pytestmark = [pytest.mark.interop, pytest.mark.e2e]


async def _run(node_opcua: Path, rig: AlarmRig, condition: str, start: datetime, end: datetime) -> dict[str, Any]:
    """alarms.mjs as Operator "op" against ``rig``, acknowledging ``condition``; its JSON summary."""
    args = [rig.url, "op", PASSWORDS["op"], condition, rig.drift_score.nodeid.to_string()]
    proc = await asyncio.create_subprocess_exec(
        "node",
        str(node_opcua / "alarms.mjs"),
        *args,
        start.isoformat(),
        end.isoformat(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=node_opcua,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()[-3000:]
    lines = [line for line in out.decode().splitlines() if line.startswith("{")]
    assert lines, out.decode()[-2000:]
    summary: dict[str, Any] = json.loads(lines[-1])
    return summary


@pytest.mark.timeout(120)
async def test_node_opcua_refreshes_acknowledges_confirms_and_reads_history(node_opcua: Path, tmp_path: Path) -> None:
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    end = t0 + timedelta(minutes=30)
    series = [0.25, 0.5, 0.75]
    port = free_port()
    async with alarm_server(tmp_path, port) as rig:
        for i, value in enumerate(series):
            stamp = t0 + timedelta(minutes=i)
            await rig.drift_score.write_value(data_value(ua.Variant(value, ua.VariantType.Double), source_time=stamp))

            async def stored(n: int = i + 1) -> bool:
                return len(await rig.drift_score.read_raw_history(t0, end)) >= n

            await wait_for(stored, what=f"{i + 1} values stored")
        await rig.book.raise_("drift", 750, "PSI over threshold")
        drift = rig.book.node("drift").nodeid.to_string()
        summary = await _run(node_opcua, rig, drift, t0, end)
        assert rig.book.state("drift").acked and rig.book.state("drift").confirmed
        assert rig.book.state("drift").comment == "done" and rig.book.state("drift").user == "op"
    _check(summary, drift, series)
    [shown] = [e for e in summary["replayed"] if e["ConditionId"] == drift]
    assert shown["ActiveState.Id"] is True and shown["AckedState.Id"] is False and shown["Retain"] is True
    assert (shown["ConditionName"], shown["SourceName"], shown["Severity"]) == ("Drift", "Pump2", 750)
    assert shown["Message"] == "PSI over threshold" and shown["EnabledState.Id"] is True
    assert shown["EventType"] == "ns=0;i=2915" and shown["BranchId"] == "ns=0;i=0"
    assert all(shown[f] is not None for f in ("EventId", "Time", "ReceiveTime", "Quality", "LastSeverity"))
    assert summary["acked"]["Comment"] == "seen by node-opcua"
    # After a restart: the drift alarm is still active (acknowledged and confirmed, so retained only while
    # active), the history is still there, and a new alarm goes through the same round trip.
    async with alarm_server(tmp_path, port) as rig:
        await rig.book.raise_("offline", 900, "Pump3 offline")
        offline = rig.book.node("offline").nodeid.to_string()
        summary = await _run(node_opcua, rig, offline, t0, end)
    _check(summary, offline, series)
    [still] = [e for e in summary["replayed"] if e["ConditionId"] == drift]
    assert (still["ActiveState.Id"], still["AckedState.Id"], still["ConfirmedState.Id"]) == (True, True, True)
    drift_history = [e for e in summary["eventHistory"] if e["ConditionId"] == drift]
    assert [(e["AckedState.Id"], e["ConfirmedState.Id"]) for e in drift_history] == [
        (False, False),
        (True, False),
        (True, True),
    ]


def _check(summary: dict[str, Any], condition: str, series: list[float]) -> None:
    """What every run of alarms.mjs must have seen for the condition it acknowledged."""
    assert summary["statuses"] == {
        "refresh": "Good",
        "observerAck": "BadUserAccessDenied",
        "staleAck": "BadEventIdUnknown",
        "ack": "Good",
        "ackAgain": "BadConditionBranchAlreadyAcked",
        "confirm": "Good",
        "historyRaw": "Good",
        "historyEvents": "Good",
    }
    assert summary["confirmed"]["ConfirmedState.Id"] is True
    assert [h["value"] for h in summary["history"]] == series
    history = [e for e in summary["eventHistory"] if e["ConditionId"] == condition]
    assert [(e["AckedState.Id"], e["ConfirmedState.Id"]) for e in history] == [
        (False, False),
        (True, False),
        (True, True),
    ]


@pytest.mark.timeout(60)
async def test_node_opcua_crawl_reads_every_attribute_of_the_alarm_nodes(node_opcua: Path, tmp_path: Path) -> None:
    async with alarm_server(tmp_path) as rig:
        await rig.book.raise_("offline", 900, "Pump3 offline")
        summary = await crawl(node_opcua, rig.url)
    paths = set(summary["paths"])
    assert any(p.endswith("/1:Pump2/1:Drift/AckedState/Id") for p in paths), sorted(paths)[:20]
    assert any(p.endswith("/1:Pump3/1:Offline/ConfirmedState") for p in paths)
