"""Alarms & Conditions (OPC 10000-9) seen by an asyncua client: notifications with the fields a SCADA alarm
list reads, Acknowledge and Confirm with their refusals, ConditionRefresh, and state across a restart."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from asyncua import Node, ua
from asyncua.common.events import Event

from sdk.opcua.alarms import ACKNOWLEDGE, ADD_COMMENT, CONFIRM
from sdk.opcua.condition_refresh import REFRESH, REFRESH2
from sdk.opcua.ids import node_id
from tests.alarm_harness import ALARM_FIELDS, AlarmRig, alarm_server, connect
from tests.opcua_servers import free_port
from tests.tls import Client

pytestmark = pytest.mark.e2e


class _Events:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[Event] = asyncio.Queue()

    def event_notification(self, event: Event) -> None:
        self.queue.put_nowait(event)

    async def next(self, timeout: float = 5) -> Event:
        return await asyncio.wait_for(self.queue.get(), timeout)

    def empty(self) -> bool:
        return self.queue.empty()


@asynccontextmanager
async def _subscribed(client: Client, *sources: Node) -> AsyncIterator[tuple[_Events, int]]:
    """Alarm, RefreshStart and RefreshEnd events from ``sources`` (the Server object if none)."""
    handler = _Events()
    sub = await client.create_subscription(10, handler)
    types = [client.get_node(node_id(t)) for t in (ua.ObjectIds.AlarmConditionType, 2787, 2788)]
    for source in sources or (client.nodes.server,):
        await sub.subscribe_events(source, types)
    assert sub.subscription_id is not None
    try:
        yield handler, sub.subscription_id
    finally:
        await sub.delete()


def _field(event: Event, name: str) -> Any:
    return getattr(event, name)


async def _status_of(call: Any) -> str:
    try:
        await call
    except ua.UaStatusCodeError as exc:
        return ua.StatusCode(exc.code).name
    return "Good"


async def _alarm(events: _Events) -> Event:
    while True:
        event = await events.next()
        if _field(event, "EventType") not in (node_id(2787), node_id(2788)):
            return event


async def test_a_raised_alarm_reaches_the_server_area_and_source_with_every_alarm_list_field(tmp_path: Path) -> None:
    async with alarm_server(tmp_path) as rig, connect(rig.url) as client:
        async with (
            _subscribed(client) as (at_server, _),
            _subscribed(client, client.get_node(rig.monitor.nodeid), client.get_node(rig.pump.nodeid)) as (below, _),
        ):
            assert await rig.book.raise_("drift", 700, "PSI 0.31 over 0.2")
            event = await _alarm(at_server)
            for name in ALARM_FIELDS:
                assert hasattr(event, name), name
            condition = rig.book.node("drift").nodeid
            assert _field(event, "NodeId") == condition
            assert _field(event, "EventType") == node_id(ua.ObjectIds.AlarmConditionType)
            assert (_field(event, "SourceNode"), _field(event, "SourceName")) == (rig.pump.nodeid, "Pump2")
            assert (_field(event, "ConditionName"), _field(event, "Severity")) == ("Drift", 700)
            assert _field(event, "Message").Text == "PSI 0.31 over 0.2"
            assert _field(event, "BranchId") == ua.NodeId()  # null: no branches
            assert _field(event, "Retain") is True
            assert _field(event, "ActiveState").Text == "Active" and _field(event, "ActiveState/Id") is True
            assert _field(event, "AckedState/Id") is False and _field(event, "ConfirmedState/Id") is False
            assert _field(event, "EnabledState/Id") is True
            assert _field(event, "Quality").is_good()
            assert _field(event, "EventId") == bytes.fromhex(rig.book.state("drift").event_id)
            assert _field(event, "Time") is not None and _field(event, "ReceiveTime") is not None
            # the same notification on the area (Monitor) and on the source (Pump2)
            ids = {_field(await _alarm(below), "EventId") for _ in range(2)}
            assert ids == {_field(event, "EventId")}
            # and the condition's own variables say the same
            node = client.get_node(condition)
            assert await (await node.get_child("0:ActiveState")).get_child("0:Id") is not None
            assert await (await (await node.get_child("0:ActiveState")).get_child("0:Id")).read_value() is True
            assert await (await node.get_child("0:Retain")).read_value() is True
            # an unchanged raise sends nothing; a clear sends one notification
            assert not await rig.book.raise_("drift", 700, "PSI 0.31 over 0.2")
            assert await rig.book.clear("drift", "back in distribution")
            cleared = await _alarm(at_server)
            assert _field(cleared, "ActiveState/Id") is False and _field(cleared, "Retain") is True  # not acked yet
            assert _field(cleared, "LastSeverity") == 700


async def test_acknowledge_and_confirm_with_the_latest_event_id_by_operator_or_engineer_only(tmp_path: Path) -> None:
    async with alarm_server(tmp_path) as rig, connect(rig.url, "op") as op, connect(rig.url, "obs") as obs:
        async with connect(rig.url) as anonymous, connect(rig.url, "eng") as eng:
            async with _subscribed(op) as (events, _):
                await rig.book.raise_("drift", 500, "drift")
                first = _field(await _alarm(events), "EventId")
                cond = rig.book.node("drift").nodeid
                comment = ua.LocalizedText("seen")
                for who in (obs, anonymous):
                    call = who.get_node(cond).call_method(node_id(ACKNOWLEDGE), first, comment)
                    assert await _status_of(call) == "BadUserAccessDenied"
                assert rig.book.state("drift").acked is False
                wrong = await _status_of(op.get_node(cond).call_method(node_id(ACKNOWLEDGE), b"\x01" * 16, comment))
                assert wrong == "BadEventIdUnknown"
                # two operators acknowledge the same notification at once: one of them does it
                both = await asyncio.gather(
                    _status_of(op.get_node(cond).call_method(node_id(ACKNOWLEDGE), first, comment)),
                    _status_of(eng.get_node(cond).call_method(node_id(ACKNOWLEDGE), first, comment)),
                )
                assert sorted(both) == ["BadEventIdUnknown", "Good"]  # the second saw a newer EventId
                acked = await _alarm(events)
                assert _field(acked, "AckedState/Id") is True and _field(acked, "Comment").Text == "seen"
                assert _field(acked, "EventId") != first and _field(acked, "Retain") is True
                stale = await _status_of(op.get_node(cond).call_method(node_id(ACKNOWLEDGE), first, comment))
                assert stale == "BadEventIdUnknown"
                again = op.get_node(cond).call_method(node_id(ACKNOWLEDGE), _field(acked, "EventId"), comment)
                assert await _status_of(again) == "BadConditionBranchAlreadyAcked"
                # Confirm by an Engineer through the condition's own method node
                own_confirm = await eng.get_node(cond).get_child("0:Confirm")
                latest = _field(acked, "EventId")
                assert await _status_of(eng.get_node(cond).call_method(own_confirm.nodeid, latest, comment)) == "Good"
                confirmed = await _alarm(events)
                assert _field(confirmed, "ConfirmedState/Id") is True and _field(confirmed, "Retain") is True
                again = eng.get_node(cond).call_method(node_id(CONFIRM), _field(confirmed, "EventId"), comment)
                assert await _status_of(again) == "BadConditionBranchAlreadyConfirmed"
                note = eng.get_node(cond).call_method(
                    node_id(ADD_COMMENT), _field(confirmed, "EventId"), ua.LocalizedText("sensor replaced")
                )
                assert await _status_of(note) == "Good"
                commented = await _alarm(events)
                assert _field(commented, "Comment").Text == "sensor replaced"
                assert rig.book.state("drift").user == "eng"
                empty = eng.get_node(cond).call_method(
                    node_id(ADD_COMMENT), _field(commented, "EventId"), ua.LocalizedText("")
                )
                assert await _status_of(empty) == "Good"
                assert _field(await _alarm(events), "Comment").Text == "sensor replaced"  # an empty one changes nothing
                # Disable (Engineer only): one notification with Retain False, then silence until Enable
                disable, enable = (
                    node_id(ua.ObjectIds.ConditionType_Disable),
                    node_id(ua.ObjectIds.ConditionType_Enable),
                )
                assert await _status_of(op.get_node(cond).call_method(disable)) == "BadUserAccessDenied"
                assert await _status_of(eng.get_node(cond).call_method(disable)) == "Good"
                disabled = await _alarm(events)
                assert _field(disabled, "EnabledState/Id") is False and _field(disabled, "Retain") is False
                assert _field(disabled, "EnabledState").Text == "Disabled"
                assert await _status_of(eng.get_node(cond).call_method(disable)) == "BadConditionAlreadyDisabled"
                assert await rig.book.raise_("drift", 900, "worse")  # changes the state, sends nothing
                latest = bytes.fromhex(rig.book.state("drift").event_id)
                ack = op.get_node(cond).call_method(node_id(ACKNOWLEDGE), latest, comment)
                assert await _status_of(ack) == "BadConditionDisabled"
                assert await _status_of(eng.get_node(cond).call_method(enable)) == "Good"
                enabled = await _alarm(events)  # the next notification: Enable's, with the state reached meanwhile
                assert _field(enabled, "EnabledState/Id") is True and _field(enabled, "Severity") == 900
                assert _field(enabled, "Retain") is True and _field(enabled, "AckedState/Id") is True
                assert await _status_of(eng.get_node(cond).call_method(enable)) == "BadConditionAlreadyEnabled"
                await rig.book.clear("drift", "ok")
                cleared = await _alarm(events)
                assert _field(cleared, "ActiveState/Id") is False and _field(cleared, "Retain") is False
                # a method of another object on the condition is refused, the wrong argument type too
                assert await _status_of(op.get_node(cond).call_method(node_id(ACKNOWLEDGE), "x", comment)) in (
                    "BadInvalidArgument",
                    "BadTypeMismatch",
                )


async def test_condition_refresh_replays_retained_conditions_between_start_and_end(tmp_path: Path) -> None:
    async with alarm_server(tmp_path) as rig:
        await rig.book.raise_("drift", 800, "drift")
        await rig.book.raise_("offline", 900, "Pump3 offline")
        await rig.book.clear("offline", "back")  # still retained: not acknowledged
        async with connect(rig.url) as client, _subscribed(client) as (events, sub_id):
            assert events.empty()
            server = client.nodes.server
            await server.call_method(node_id(REFRESH), ua.Variant(sub_id, ua.VariantType.UInt32))
            got = [await events.next() for _ in range(4)]
            types = [_field(e, "EventType") for e in got]
            assert types[0] == node_id(2787) and types[-1] == node_id(2788)
            replayed = {_field(e, "ConditionName"): e for e in got[1:3]}
            assert set(replayed) == {"Drift", "Offline"}
            assert _field(replayed["Drift"], "EventId") == bytes.fromhex(rig.book.state("drift").event_id)
            assert _field(replayed["Offline"], "EventType") == node_id(ua.ObjectIds.OffNormalAlarmType)
            # called on the ConditionType, as 10000-9 5.5.7 words it: the same replay
            condition_type = client.get_node(node_id(ua.ObjectIds.ConditionType))
            await condition_type.call_method(node_id(REFRESH), ua.Variant(sub_id, ua.VariantType.UInt32))
            again = [await events.next() for _ in range(4)]
            assert {_field(e, "EventId") for e in again[1:3]} == {_field(e, "EventId") for e in got[1:3]}
            # an unknown subscription id; another session's subscription
            bad = server.call_method(node_id(REFRESH), ua.Variant(sub_id + 1000, ua.VariantType.UInt32))
            assert await _status_of(bad) == "BadSubscriptionIdInvalid"
            async with connect(rig.url) as other:
                theirs = other.nodes.server.call_method(node_id(REFRESH), ua.Variant(sub_id, ua.VariantType.UInt32))
                assert await _status_of(theirs) == "BadUserAccessDenied"
            empty = await client.create_subscription(10, _Events())  # no event monitored item
            call = server.call_method(node_id(REFRESH), ua.Variant(empty.subscription_id, ua.VariantType.UInt32))
            assert await _status_of(call) == "BadNothingToDo"
            await empty.delete()
            mid = ua.Variant(999, ua.VariantType.UInt32)
            call2 = server.call_method(node_id(REFRESH2), ua.Variant(sub_id, ua.VariantType.UInt32), mid)
            assert await _status_of(call2) == "BadMonitoredItemIdInvalid"


async def test_alarm_state_survives_a_restart(tmp_path: Path) -> None:
    port = free_port()
    async with alarm_server(tmp_path, port) as rig:
        await rig.book.raise_("drift", 650, "drift before restart")
        before = rig.book.state("drift")
    async with alarm_server(tmp_path, port) as rig:
        after = rig.book.state("drift")
        assert after == before and after.active and not after.acked and not after.confirmed
        async with connect(rig.url, "op") as op:
            cond = op.get_node(rig.book.node("drift").nodeid)
            assert await (await cond.get_child("0:Retain")).read_value() is True
            assert (await (await cond.get_child("0:Message")).read_value()).Text == "drift before restart"
            # the EventId an operator saw before the restart still acknowledges
            call = cond.call_method(node_id(ACKNOWLEDGE), bytes.fromhex(before.event_id), ua.LocalizedText("after"))
            assert await _status_of(call) == "Good"
        assert rig.book.state("drift").acked


async def test_a_removed_condition_leaves_the_alarm_list_and_can_come_back(tmp_path: Path) -> None:
    async with alarm_server(tmp_path) as rig, connect(rig.url, "op") as op, _subscribed(op) as (events, _):
        await rig.book.raise_("offline", 900, "Pump3 offline")
        raised = await _alarm(events)
        node = rig.book.node("offline")
        source = await node.get_parent()
        assert source is not None
        await rig.book.remove("offline")
        last = await _alarm(events)
        assert _field(last, "NodeId") == node.nodeid and _field(last, "Retain") is False
        call = op.get_node(node.nodeid).call_method(
            node_id(ACKNOWLEDGE), _field(raised, "EventId"), ua.LocalizedText("")
        )
        assert await _status_of(call) in ("BadNodeIdUnknown", "BadNodeIdInvalid")
        assert await source.get_referenced_nodes(ua.ObjectIds.HasCondition) == []
        again = await rig.book.add("offline", source, "Offline", area=rig.monitor)
        assert again.nodeid == node.nodeid and not rig.book.state("offline").active  # a fresh state
        assert [c.nodeid for c in await source.get_referenced_nodes(ua.ObjectIds.HasCondition)] == [node.nodeid]


_RELEASE_CHECK = """
import asyncio, gc, sys, weakref
from pathlib import Path
from tests.alarm_harness import alarm_server

async def main() -> None:
    async with alarm_server(Path(sys.argv[1])) as rig:
        await rig.book.raise_("drift", 500, "drift")
        server = weakref.ref(rig.server)
        del rig
    gc.collect()
    print("released" if server() is None else "alive")

asyncio.run(main())
"""


async def test_a_stopped_server_with_its_alarm_book_and_history_is_released(tmp_path: Path) -> None:
    """In-process restarts must not keep old servers alive through the book's method registrations. Checked
    in a child process: pytest's log capture keeps asyncua's address space alive through warning records."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _RELEASE_CHECK, str(tmp_path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=Path(__file__).parents[2],
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()[-2000:]
    assert out.decode().split() == ["released"]


async def test_the_rig_is_what_the_tests_think(tmp_path: Path) -> None:
    async with alarm_server(tmp_path) as rig:
        assert isinstance(rig, AlarmRig)
        refs = await rig.server.nodes.server.get_referenced_nodes(ua.ObjectIds.HasNotifier)
        assert rig.monitor.nodeid in [r.nodeid for r in refs]
        sources = await rig.monitor.get_referenced_nodes(ua.ObjectIds.HasEventSource)
        assert rig.pump.nodeid in [s.nodeid for s in sources]
        conditions = await rig.pump.get_referenced_nodes(ua.ObjectIds.HasCondition)
        assert [c.nodeid for c in conditions] == [rig.book.node("drift").nodeid]
