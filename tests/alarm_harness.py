"""A real asyncua server with an alarm book (and history) for the alarm and history tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from asyncua import Node, Server, ua

from sdk.opcua.alarm_store import JsonAlarmStore
from sdk.opcua.alarms import OFF_NORMAL_ALARM, AlarmBook
from sdk.opcua.history import History
from sdk.opcua.ids import node_id, qname
from sdk.opcua.service import new_server, start_listening
from sdk.opcua.users import hash_password
from tests.opcua_servers import free_port
from tests.tls import Client

PASSWORDS = {"op": "operator-pw", "eng": "engineer-pw", "obs": "observer-pw"}


def users_file(folder: Path) -> Path:
    """Users op (Operator), eng (Engineer), obs (Observer); anonymous clients are Observers."""
    path = folder / "users.toml"
    roles = {"op": "Operator", "eng": "Engineer", "obs": "Observer"}
    text = 'anonymous = "Observer"\n' + "".join(
        f'[users.{u}]\nrole = "{roles[u]}"\npassword = "{hash_password(p)}"\n' for u, p in PASSWORDS.items()
    )
    path.write_text(text)
    return path


@dataclass
class AlarmRig:
    """A running server: ``book`` holds conditions "drift" (AlarmConditionType) on Pump2 and "offline"
    (OffNormalAlarmType) on Pump3, both under the area object Monitor; ``history`` keeps Pump2's DriftScore
    (Double) and the events of the Server object and of Monitor."""

    url: str
    server: Server
    book: AlarmBook
    monitor: Node
    pump: Node
    ns: int
    history: History
    drift_score: Node


@asynccontextmanager
async def alarm_server(
    data_dir: Path, port: int | None = None, period: timedelta = timedelta(days=7), count: int = 0
) -> AsyncIterator[AlarmRig]:
    """Start the server on ``port`` (free one if None) with its alarm state in ``data_dir``; stop it on exit."""
    data_dir.mkdir(parents=True, exist_ok=True)
    users = data_dir / "users.toml" if (data_dir / "users.toml").exists() else users_file(data_dir)
    url = f"opc.tcp://127.0.0.1:{port or free_port()}/alarms/"
    server, _, ns = await new_server(
        endpoint=url, name="alarms", application_uri="urn:test:alarms", product="alarms", users_file=users
    )
    monitor = await server.nodes.objects.add_object(node_id("Monitor", ns), qname("Monitor", ns))
    pump = await monitor.add_object(node_id("Monitor.Pump2", ns), qname("Pump2", ns))
    pump3 = await monitor.add_object(node_id("Monitor.Pump3", ns), qname("Pump3", ns))
    score_id = node_id("Monitor.Pump2.DriftScore", ns)
    drift_score = await pump.add_variable(score_id, qname("DriftScore", ns), ua.Variant(0.0, ua.VariantType.Double))
    history = History(server, data_dir, period=period, count=count)
    await history.start()
    await history.historize([drift_score])
    await history.historize_events(server.nodes.server)
    await history.historize_events(monitor)
    book = AlarmBook(server, JsonAlarmStore.in_dir(data_dir), history=history)
    await book.start()
    await book.add("drift", pump, "Drift", area=monitor)
    await book.add("offline", pump3, "Offline", area=monitor, alarm_type=OFF_NORMAL_ALARM)
    async with AsyncExitStack() as stack:
        await start_listening(stack, server, url)
        try:
            yield AlarmRig(url, server, book, monitor, pump, ns, history, drift_score)
        finally:
            await book.stop()


@asynccontextmanager
async def connect(url: str, user: str | None = None) -> AsyncIterator[Client]:
    """An asyncua client, anonymous or logged in as ``user`` of ``PASSWORDS``."""
    client = Client(url, timeout=10)
    if user:
        client.set_user(user)
        client.set_password(PASSWORDS[user])
    async with client:
        yield client


ALARM_FIELDS = [
    "EventId",
    "EventType",
    "SourceNode",
    "SourceName",
    "Time",
    "ReceiveTime",
    "Message",
    "Severity",
    "ConditionName",
    "BranchId",
    "Retain",
    "ActiveState",
    "ActiveState/Id",
    "AckedState",
    "AckedState/Id",
    "ConfirmedState",
    "ConfirmedState/Id",
    "EnabledState",
    "EnabledState/Id",
    "Quality",
    "LastSeverity",
    "Comment",
    "NodeId",
]
"""What a SCADA alarm list reads from a condition's notification (NodeId: the ConditionId)."""

__all__ = ["ALARM_FIELDS", "AlarmRig", "alarm_server", "connect", "ua"]
