"""What the demo's Model Monitor panel shows, read from the gateway over OPC UA as any client reads it.

Per device: ``Objects/ModelMonitor/<deployment>/<device>`` (MonitoredDeviceType) found by browse
name, its figures (InferenceCount, DriftScore, DataQuality, MonitorState) and its alarm
conditions (``InputDriftAlarm`` and the others, OPC 10000-9 5.5.2 ConditionType): a condition is
active when its ``ActiveState/Id`` is true (OPC 10000-9 5.8.2 AlarmConditionType, 5.4 TwoStateVariableType).
A figure or an alarm the gateway does not offer (yet), or offers without a Good value, is None:
the panel shows "waiting".
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from asyncua import Client, Node, ua

from gateway.monitor.thresholds import FigureThresholds, Level, MonitorThresholds
from nodesets.ids import MODELLINE_URI

FIGURES = ("InferenceCount", "DriftScore", "DataQuality", "MonitorState")
ALARMS = ("InputDriftAlarm", "OutputDriftAlarm", "QualityAlarm", "DataQualityAlarm", "ErrorRateAlarm")
BROWSE_AGAIN_S = 5.0
"""How often a device's children are browsed again while some of them are missing (added by a newer gateway)."""


@dataclass
class DeviceMonitor:
    """One device's row of the panel; None: waiting (not offered yet, or no Good value yet)."""

    deployment: str = ""
    inferences: int | None = None
    drift: float | None = None
    drift_level: Level | None = None
    data_quality: float | None = None
    state: str | None = None
    alarms: list[str] = field(default_factory=list)  # active conditions, by browse name
    offers_drift_alarm: bool = False


def drift_level(thresholds: FigureThresholds, score: float | None) -> Level | None:
    """Ok, Warning or Alarm of a drift score by the thresholds alone (the gateway's alarm adds hysteresis)."""
    return None if score is None else thresholds.next_level(Level.OK, score)


class MonitorView:
    """Reads the panel's figures from a gateway session, finding nodes by browse name and keeping them."""

    def __init__(self, client: Client, thresholds: MonitorThresholds) -> None:
        self.client = client
        self.thresholds = thresholds
        self._root: Node | None = None
        self._nodes: dict[tuple[str, str], tuple[float, dict[str, Node]]] = {}  # (deployment, device) -> when, nodes

    async def _device_nodes(self, deployment: str, device: str) -> dict[str, Node] | None:
        key = (deployment, device)
        known = self._nodes.get(key)
        if known is not None and (
            all(n in known[1] for n in (*FIGURES, *ALARMS)) or time.monotonic() - known[0] < BROWSE_AGAIN_S
        ):
            return known[1]
        if self._root is None:
            ml = await self.client.get_namespace_index(MODELLINE_URI)
            self._root = await self.client.nodes.objects.get_child(f"{ml}:ModelMonitor")
        node = await _child(self._root, deployment)
        node = await _child(node, device) if node is not None else None
        if node is None:
            return None
        found: dict[str, Node] = {}
        for ref in await node.get_references(ua.ObjectIds.HierarchicalReferences, ua.BrowseDirection.Forward):
            name, child = str(ref.BrowseName.Name), Node(node.session, ref.NodeId)  # one Browse for all children
            if name in FIGURES:
                found[name] = child
            elif name in ALARMS:
                active = await _child(child, "ActiveState")
                active_id = await _child(active, "Id") if active is not None else None
                if active_id is not None:
                    found[name] = active_id
        self._nodes[key] = (time.monotonic(), found)
        return found

    async def read(self, deployment: str, device: str) -> DeviceMonitor:
        """The panel's row for ``device`` under ``deployment``; fields stay None where the gateway has nothing."""
        row = DeviceMonitor(deployment=deployment)
        try:
            nodes = await self._device_nodes(deployment, device)
        except (ua.UaError, ConnectionError, TimeoutError):
            return row
        if not nodes:
            return row
        names = list(nodes)
        try:
            values = await self.client.read_attributes([nodes[n] for n in names], ua.AttributeIds.Value)
        except (ua.UaError, ConnectionError, TimeoutError):
            return row
        good = {n: _value(dv) for n, dv in zip(names, values, strict=True)}
        inferences = good.get("InferenceCount")
        row.inferences = int(inferences) if isinstance(inferences, int) else None
        drift = good.get("DriftScore")
        row.drift = float(drift) if isinstance(drift, float) else None
        row.drift_level = drift_level(self.thresholds.input_drift, row.drift)
        quality = good.get("DataQuality")
        row.data_quality = float(quality) if isinstance(quality, float) else None
        state = good.get("MonitorState")
        row.state = str(state) if isinstance(state, str) and state else None
        row.alarms = [n for n in ALARMS if good.get(n) is True]
        row.offers_drift_alarm = "InputDriftAlarm" in nodes
        return row


async def _child(node: Node, name: str) -> Node | None:
    """The child of ``node`` with browse name ``name`` in any namespace (a gateway may declare it in its own)."""
    for ref in await node.get_references(ua.ObjectIds.HierarchicalReferences, ua.BrowseDirection.Forward):
        if ref.BrowseName.Name == name:
            return Node(node.session, ref.NodeId)
    return None


def _value(dv: Any) -> Any:
    """A DataValue's value when its status is Good, else None."""
    if dv is None or dv.Value is None or (dv.StatusCode is not None and not dv.StatusCode.is_good()):
        return None
    return dv.Value.Value
