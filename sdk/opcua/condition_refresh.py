"""ConditionRefresh and ConditionRefresh2 (OPC 10000-9 5.5.7, 5.5.8) for conditions asyncua does not know.

A client that subscribes late (or reconnects) calls ConditionRefresh(SubscriptionId) with the MethodId
of ConditionType's method (i=3875), or ConditionRefresh2(SubscriptionId, MonitoredItemId) (i=12912).
The standard names the ConditionType (i=2782) as ObjectId; many clients pass the Server object
(i=2253): both are served. A subscription of another session gets Bad_UserAccessDenied, one without
event monitored items Bad_NothingToDo (5.5.7 Table 21). The server then sends, to the event monitored items of that
subscription, a RefreshStartEvent, the latest notification of every retained condition, and a
RefreshEndEvent (5.5.7: "the Server shall ... send Events for all retained Conditions ... between a
RefreshStartEvent and a RefreshEndEvent").

asyncua 2.1 binds its own refresh only with ``InternalServer.bind_condition_methods``, replays each
condition to the monitored items of the node that emitted it last, and sends the start and end
events only to monitored items on the Server object. Here each retained condition comes with the
notifiers it is emitted on (its source, area and the Server object); a monitored item on any of them
gets it, and every event monitored item of the subscription gets the start and end events.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from weakref import WeakKeyDictionary

from asyncua import Server, ua
from asyncua.common.event_objects import RefreshEndEvent, RefreshStartEvent
from asyncua.common.events import Event

from sdk.opcua import sessions
from sdk.opcua.ids import node_id

_log = logging.getLogger(__name__)

Retained = Callable[[], list[tuple[Event, list[ua.NodeId]]]]
"""Returns the latest notification of every retained condition with the nodes it is emitted on."""

REFRESH = ua.ObjectIds.ConditionType_ConditionRefresh  # i=3875
REFRESH2 = ua.ObjectIds.ConditionType_ConditionRefresh2  # i=12912

_providers: WeakKeyDictionary[Server, list[Retained]] = WeakKeyDictionary()


async def serve(server: Server, retained: Retained) -> Callable[[], None]:
    """Include ``retained`` in the server's ConditionRefresh; returns a function that removes it."""
    if server not in _providers:
        _providers[server] = []
        server.link_method(server.get_node(node_id(REFRESH)), _method(server, with_item=False))
        server.link_method(server.get_node(node_id(REFRESH2)), _method(server, with_item=True))
    providers = _providers[server]
    providers.append(retained)

    def stop() -> None:
        if retained in providers:
            providers.remove(retained)

    return stop


def _status(code: int) -> ua.StatusCode:
    return ua.StatusCode(ua.UInt32(code))


def _method(server: Server, *, with_item: bool) -> Callable[..., Any]:
    async def refresh(parent: ua.NodeId, *args: Any) -> Any:
        expected = 2 if with_item else 1
        if len(args) < expected:
            return _status(ua.StatusCodes.BadArgumentsMissing)
        if len(args) > expected:
            return _status(ua.StatusCodes.BadTooManyArguments)
        values = [a.Value if isinstance(a, ua.Variant) else a for a in args]
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            return ua.CallMethodResult(
                StatusCode=_status(ua.StatusCodes.BadInvalidArgument),
                InputArgumentResults=[
                    _status(ua.StatusCodes.Good if isinstance(v, int) else ua.StatusCodes.BadTypeMismatch)
                    for v in values
                ],
            )
        return await _refresh(server, int(values[0]), int(values[1]) if with_item else None)

    return refresh


async def _refresh(server: Server, subscription_id: int, item: int | None) -> Any:
    service = server.iserver.subscription_service
    sub = service.subscriptions.get(subscription_id)
    session = sessions.current_session_id()
    # 5.5.7 Table 21 (1.05): an unknown subscription, another session's subscription, one without events.
    if sub is None:
        return _status(ua.StatusCodes.BadSubscriptionIdInvalid)
    if session is not None and sub.session_id != session:
        return _status(ua.StatusCodes.BadUserAccessDenied)
    items = sub.monitored_item_srv
    watched: dict[ua.NodeId, list[int]] = {n: list(m) for n, m in items._monitored_events.items() if m}
    if not watched:
        return _status(ua.StatusCodes.BadNothingToDo)
    if item is not None:
        if item not in items._monitored_items:
            return _status(ua.StatusCodes.BadMonitoredItemIdInvalid)
        watched = {n: [m for m in mids if m == item] for n, mids in watched.items()}
    targets = [(n, m) for n, mids in watched.items() for m in mids]
    start = RefreshStartEvent()  # type: ignore[no-untyped-call]
    await _send_to_all(items, _system_event(start), targets)
    for provider in list(_providers.get(server, [])):
        for event, notifiers in provider():
            for notifier in notifiers:
                for mid in watched.get(notifier, []):
                    event.emitting_node = notifier
                    await items.trigger_event(event, mid)
    end = RefreshEndEvent()  # type: ignore[no-untyped-call]
    await _send_to_all(items, _system_event(end), targets)
    _log.info("ConditionRefresh of subscription %d (item %s) done", subscription_id, item)
    return []


def _system_event(event: Event) -> Event:
    now = datetime.now(UTC)
    event.EventId = uuid.uuid4().bytes  # type: ignore[attr-defined]
    event.Time = now  # type: ignore[attr-defined]
    event.ReceiveTime = now  # type: ignore[attr-defined]
    event.SourceNode = node_id(ua.ObjectIds.Server)  # type: ignore[attr-defined]
    event.SourceName = "Server"  # type: ignore[attr-defined]
    event.Message = ua.LocalizedText("")  # type: ignore[attr-defined]
    event.Severity = 1  # type: ignore[attr-defined]
    return event


async def _send_to_all(items: Any, event: Event, targets: list[tuple[ua.NodeId, int]]) -> None:
    for notifier, mid in targets:
        event.emitting_node = notifier
        await items.trigger_event(event, mid)
