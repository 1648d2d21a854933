"""Alarms of the Model Manager's operations: ``Devices/<id>/OfflineAlarm`` and ``Deployments/<id>/FailedAlarm``.

Both are OffNormalAlarmType conditions (OPC 10000-9 5.8.24.2: active while something is not in
its normal state) in the alarm book of the Model Monitor (its area object, so one alarm list
subscribed to ModelMonitor or to the Server object shows them with the figures' alarms).

- OfflineAlarm (severity 700): a device Offline for longer than ``offline_alarm_s`` (counted from
  its LastSeen, else from when the gateway first saw it Offline); cleared when it is Online or
  Degraded again.
- FailedAlarm (severity 800): a deployment that ended Failed. It is cleared once a *later*
  deployment of the same model to (at least) the same targets is Active: the failure is then
  mended. A cleared alarm stays listed (Retain) until an operator has acknowledged and confirmed
  it (10000-9 5.7); an acknowledged one that is never mended stays active. The condition is made
  only for a deployment that failed.
"""

from __future__ import annotations

from datetime import UTC, datetime

from asyncua import Node, Server

from gateway.devices.device import Device
from gateway.store.base import DeploymentRecord
from nodesets.ids import DeploymentState, DeviceState
from sdk.opcua.alarms import OFF_NORMAL_ALARM, AlarmBook
from sdk.opcua.ids import path_id

OFFLINE_SEVERITY = 700
FAILED_SEVERITY = 800


class OperationsAlarms:
    """OfflineAlarm per device and FailedAlarm per failed deployment."""

    def __init__(
        self, server: Server, book: AlarmBook, area: Node, devices: Node, deployments: Node, offline_s: float
    ) -> None:
        self._server = server
        self._book = book
        self._area = area
        self._devices = devices
        self._deployments = deployments
        self._offline_s = offline_s
        self._offline_since: dict[str, datetime] = {}
        self._records: dict[str, DeploymentRecord] = {}
        self._keys: set[str] = set()

    async def _condition(self, key: str, source: Node, name: str) -> str:
        if key not in self._keys:
            await self._book.add(key, source, name, area=self._area, alarm_type=OFF_NORMAL_ALARM)
            self._keys.add(key)
        return key

    async def device_shown(self, link: Device) -> None:
        """Judge a device's OfflineAlarm (called with every device sweep)."""
        source = self._server.get_node(path_id(self._devices.nodeid, link.device_id))
        key = await self._condition(f"device/{link.device_id}/OfflineAlarm", source, "OfflineAlarm")
        view = link.view
        now = datetime.now(UTC)
        if view.state != DeviceState.OFFLINE:
            self._offline_since.pop(link.device_id, None)
            await self._book.clear(key, f"device {link.device_id} is back online")
            return
        since = view.last_seen or self._offline_since.setdefault(link.device_id, now)
        if (now - since).total_seconds() >= self._offline_s and not self._book.state(key).active:
            seen = f"last seen {view.last_seen:%Y-%m-%d %H:%M} UTC" if view.last_seen else "never seen"
            why = f": {view.reason}" if view.reason else ""
            await self._book.raise_(key, OFFLINE_SEVERITY, f"device {link.device_id} is offline ({seen}){why}")

    async def deployments_changed(self, records: list[DeploymentRecord]) -> None:
        """Judge the FailedAlarm of every failed deployment after ``records`` changed (all of them at start)."""
        for record in records:
            self._records[record.id] = record
        for record in list(self._records.values()):
            if record.state != DeploymentState.FAILED:
                continue
            source = self._server.get_node(path_id(self._deployments.nodeid, record.id))
            key = await self._condition(f"deployment/{record.id}/FailedAlarm", source, "FailedAlarm")
            mended = self._mended_by(record)
            if mended is not None:
                await self._book.clear(key, f"deployment {record.id} was mended by {mended}, now Active")
            elif not self._book.state(key).active:
                reason = f": {record.last_error}" if record.last_error else ""
                await self._book.raise_(
                    key,
                    FAILED_SEVERITY,
                    f"deployment {record.id} of {record.model} {record.version} to "
                    f"{', '.join(record.targets)} failed{reason}",
                )

    def _mended_by(self, failed: DeploymentRecord) -> str | None:
        for other in self._records.values():
            if (
                other.created_at > failed.created_at
                and other.model == failed.model
                and other.state == DeploymentState.ACTIVE
                and set(failed.targets) <= set(other.targets)
            ):
                return other.id
        return None
