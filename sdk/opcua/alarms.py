"""OPC UA Alarms & Conditions (OPC 10000-9) on an asyncua server: conditions a SCADA alarm list shows,
acknowledges and confirms, replayed by ConditionRefresh, and kept across restarts.

``AlarmBook.add`` instantiates a condition type (AlarmConditionType, OffNormalAlarmType or another
subtype of AcknowledgeableConditionType, 10000-9 5.7 and 5.8) as a component of its source object,
with every mandatory child plus ConfirmedState and Confirm. ``raise_`` and ``clear`` change its
state and send one event notification per change, carrying every field of the type (EventId,
EventType, SourceNode, SourceName, Time, ReceiveTime, Message, Severity, ConditionName, BranchId
(null), Retain, ActiveState/Id, AckedState/Id, ConfirmedState/Id, EnabledState/Id, Quality,
LastSeverity, Comment, ClientUserId...) and the ConditionId (the condition's NodeId, selected with
an empty BrowsePath and AttributeId NodeId, 10000-9 5.5.2).

What a SCADA engineer configures:
- Subscribe to events on the Server object (i=2253): every condition's events reach it. Or on the
  area object the book was given (``area``, e.g. the Model Monitor) or on a source object, to see
  only its conditions. Each of these has EventNotifier SubscribeToEvents; the references that make
  the hierarchy browsable are set here (10000-3 7.16-7.18, 10000-9 7.2): Server -HasNotifier-> area
  -HasEventSource-> source -HasCondition-> condition.
- Select the fields above (a type's fields are those of the event type's InstanceDeclarations) and,
  if a WhereClause is used, InList on EventType: asyncua's OfType operator matches the exact type
  only, so OfType ConditionType would filter every alarm out.
- After connecting, call ConditionRefresh (method i=3875 on the ConditionType i=2782 as the standard
  says, or on the Server object i=2253 as many clients do; the subscription id) or
  ConditionRefresh2 (i=12912, with a monitored item id): the retained conditions arrive between a
  RefreshStartEvent and a RefreshEndEvent (10000-9 5.5.7, 5.5.8).
- Acknowledge (i=9111) and Confirm (i=9113) are called on the condition with the EventId of its
  latest notification and a comment; Operator and Engineer may, Observer and anonymous clients get
  Bad_UserAccessDenied. An older EventId gets Bad_EventIdUnknown; a repeated acknowledge
  Bad_ConditionBranchAlreadyAcked, a repeated confirm Bad_ConditionBranchAlreadyConfirmed.

asyncua delivers an event only to monitored items on the exact node that emits it (no propagation
along HasNotifier), so the book emits each notification on the source, the area and the Server,
handing it to the server's subscription service itself: asyncua's EventGenerator makes a new EventId
and Time at each trigger (three different notifications for one change) and adds GeneratesEvent
references from the emitting object, which 10000-3 7.17 allows only from types and methods.
asyncua's own ConditionRefresh is off unless ``bind_condition_methods`` is set and, when on, replays
to the last emitting node only; the book serves both refresh methods itself (``condition_refresh``).
AddComment (i=9029, 10000-9 5.5.6) is served like Acknowledge. Disable (i=9028, 5.5.4) and Enable
(i=9027, 5.5.5) are for the Engineer role: a disabled condition sends one notification with
EnabledState/Id False and Retain False, then nothing until enabled again (its state still follows
``raise_`` and ``clear``); Enable sends its current state. Acknowledge, Confirm and AddComment on a
disabled condition get Bad_ConditionDisabled. Branches (5.5.2 BranchId), shelving and suppression
are not implemented.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, Self

from asyncua import Node, Server, ua
from asyncua.common.events import Event

from sdk.errors import NotFound, OutOfRange, UsageError
from sdk.opcua import condition_refresh, sessions, type_methods
from sdk.opcua.alarm_store import AlarmState, AlarmStore
from sdk.opcua.condition_nodes import ConditionNodes, field_nodes, snapshot, subscribable
from sdk.opcua.ids import delete_subtree, node_id, path_id, qname, status_code
from sdk.opcua.methods import check_call, read_signature
from sdk.opcua.sessions import current_user
from sdk.opcua.status import StatusError, status_on_error
from sdk.opcua.users import Role, requires

_log = logging.getLogger(__name__)

ALARM_CONDITION = ua.ObjectIds.AlarmConditionType
"""10000-9 5.8.2: an alarm without a more specific meaning (a figure over or under a threshold)."""
OFF_NORMAL_ALARM = ua.ObjectIds.OffNormalAlarmType
"""10000-9 5.8.24.2: a discrete alarm, active while something is not in its normal state (offline, failed)."""

ACKNOWLEDGE = ua.ObjectIds.AcknowledgeableConditionType_Acknowledge  # i=9111, 10000-9 5.7.3
CONFIRM = ua.ObjectIds.AcknowledgeableConditionType_Confirm  # i=9113, 10000-9 5.7.4
ADD_COMMENT = ua.ObjectIds.ConditionType_AddComment  # i=9029, 10000-9 5.5.6
ENABLE = ua.ObjectIds.ConditionType_Enable  # i=9027, 10000-9 5.5.5
DISABLE = ua.ObjectIds.ConditionType_Disable  # i=9028, 10000-9 5.5.4


def utc_now() -> datetime:
    """The current time in UTC."""
    return datetime.now(UTC)


class EventRecorder(Protocol):
    """Where notifications go besides subscribers (sdk.opcua.history.History keeps them for HistoryRead)."""

    async def record(self, notifiers: Sequence[ua.NodeId], event: Event) -> None:
        """Keep ``event`` as sent on ``notifiers``."""
        ...


@dataclass
class _Condition:
    key: str
    node: Node
    source: ua.NodeId
    source_name: str
    name: str
    type_id: ua.NodeId
    notifiers: list[ua.NodeId]
    variables: dict[str, Node]
    state: AlarmState
    event: Event | None = None
    stop_serving: list[Callable[[], None]] = field(default_factory=list)


class AlarmBook:
    """The alarm conditions of one server, by key: created, raised, cleared, acknowledged, confirmed, kept."""

    def __init__(
        self,
        server: Server,
        store: AlarmStore,
        clock: Callable[[], datetime] = utc_now,
        history: EventRecorder | None = None,
    ) -> None:
        self._server = server
        self._history = history
        self._store = store
        self._clock = clock
        self._conditions: dict[str, _Condition] = {}
        self._saved: dict[str, AlarmState] = {}
        self._stop_refresh: Callable[[], None] | None = None
        self._nodes = ConditionNodes(server)
        # One state change at a time: two operators acknowledging at once must not both pass the check.
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        """Load the stored states and serve ConditionRefresh for this book's conditions."""
        sessions.install()  # method handlers learn the caller's role from it (new_server installs it too)
        self._saved = await self._store.load()
        self._stop_refresh = await condition_refresh.serve(self._server, self._retained_events)

    async def stop(self) -> None:
        """Stop answering method calls for this book's conditions (the nodes stay). Call it when the server
        stops: the per-server method registries hold the book, and through it the server, until then."""
        for condition in self._conditions.values():
            for stop in condition.stop_serving:
                stop()
            condition.stop_serving.clear()
        if self._stop_refresh is not None:
            self._stop_refresh()
            self._stop_refresh = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def add(
        self,
        key: str,
        source: Node,
        name: str,
        *,
        area: Node | None = None,
        alarm_type: int = ALARM_CONDITION,
        condition_class: int = ua.ObjectIds.BaseConditionClassType,
    ) -> Node:
        """A condition ``name`` (its ConditionName and browse name) on ``source``, in its stored state if any.

        ``area`` is the notifier between the Server object and the source (the Model Monitor object);
        without it the Server object is the source's notifier. The condition's NodeId is
        ``<source id>.<name>`` in the source's namespace."""
        if key in self._conditions:
            raise UsageError(f"alarm {key!r} exists already")
        server_id = node_id(ua.ObjectIds.Server)
        parent_notifier = area.nodeid if area is not None else server_id
        if area is not None:
            await self._nodes.reference(server_id, ua.ObjectIds.HasNotifier, area.nodeid)
            await subscribable(area)
        await self._nodes.reference(parent_notifier, ua.ObjectIds.HasEventSource, source.nodeid)
        await subscribable(source)
        type_node = self._server.get_node(node_id(alarm_type))
        nodeid = path_id(source.nodeid, name)
        node = await self._nodes.instantiate(source, type_node, nodeid, qname(name, source.nodeid.NamespaceIndex))
        await self._nodes.reference(source.nodeid, ua.ObjectIds.HasCondition, node.nodeid)
        condition = _Condition(
            key=key,
            node=node,
            source=source.nodeid,
            source_name=(await source.read_browse_name()).Name or "",
            name=name,
            type_id=type_node.nodeid,
            notifiers=[source.nodeid, *([area.nodeid] if area is not None else []), server_id],
            variables=await field_nodes(node),
            state=self._saved.get(key, AlarmState()),
        )
        class_node = self._server.get_node(node_id(condition_class))
        await self._write(condition, "ConditionClassId", class_node.nodeid, ua.VariantType.NodeId)
        class_name = ua.LocalizedText((await class_node.read_display_name()).Text)
        await self._write(condition, "ConditionClassName", class_name, ua.VariantType.LocalizedText)
        await self._write(condition, "ConditionName", name, ua.VariantType.String)
        await self._write(condition, "SourceNode", source.nodeid, ua.VariantType.NodeId)
        await self._write(condition, "SourceName", condition.source_name, ua.VariantType.String)
        await self._write(condition, "EventType", type_node.nodeid, ua.VariantType.NodeId)
        await self._write(condition, "Quality", status_code(ua.StatusCodes.Good), ua.VariantType.StatusCode)
        await self._show(condition)
        await self._serve_methods(condition)
        self._conditions[key] = condition
        return node

    async def remove(self, *keys: str) -> None:
        """Delete conditions ``keys`` (their source is gone): a last notification with Retain False for one that
        was retained, so alarm lists drop it (10000-9 5.5.2), then its node, its method handlers and its state
        (the states saved once for all of them)."""
        conditions = [self._condition(key) for key in keys]
        async with self._lock:
            for key, condition in zip(keys, conditions, strict=True):
                if condition.state.retain:
                    await self._change(condition, enabled=False)
                for stop in condition.stop_serving:
                    stop()
                await delete_subtree(condition.node)
                del self._conditions[key]
                self._saved.pop(key, None)
            await self._store.save(self._saved)

    def state(self, key: str) -> AlarmState:
        """The current state of condition ``key``."""
        return self._condition(key).state

    def node(self, key: str) -> Node:
        """The condition object of ``key``."""
        return self._condition(key).node

    async def raise_(self, key: str, severity: int, message: str) -> bool:
        """Make the condition active (a new activation needs acknowledging and confirming again) with this
        severity and message; returns whether the state changed (a notification is sent unless the
        condition is disabled)."""
        if not 1 <= severity <= 1000:
            raise OutOfRange(f"severity {severity} is not in 1..1000 (OPC 10000-5 6.4.2 BaseEventType)")
        condition = self._condition(key)
        async with self._lock:
            old = condition.state
            if old.active and old.severity == severity and old.message == message:
                return False
            change: dict[str, Any] = {"active": True, "severity": severity, "message": message}
            if not old.active:  # 10000-9 5.7.2: a new activation is unacknowledged and unconfirmed
                change |= {"acked": False, "confirmed": False, "comment": "", "user": ""}
            await self._change(condition, last_severity=old.severity, **change)
            return True

    async def clear(self, key: str, message: str) -> bool:
        """Make the condition inactive; it stays retained until acknowledged and confirmed. Returns whether
        it was active."""
        condition = self._condition(key)
        async with self._lock:
            if not condition.state.active:
                return False
            await self._change(condition, active=False, message=message, last_severity=condition.state.severity)
            return True

    # --- method handlers (10000-9 5.7.3, 5.7.4, 5.5.4-5.5.6) -----------------------------------------------

    async def _enable(self, condition: _Condition) -> None:
        if condition.state.enabled:
            raise StatusError(ua.StatusCodes.BadConditionAlreadyEnabled, f"{condition.key} is enabled")
        await self._change(condition, enabled=True)

    async def _disable(self, condition: _Condition) -> None:
        if not condition.state.enabled:
            raise StatusError(ua.StatusCodes.BadConditionAlreadyDisabled, f"{condition.key} is disabled")
        await self._change(condition, enabled=False)

    async def _acknowledge(self, condition: _Condition, event_id: bytes | None, comment: str) -> None:
        self._check_event_id(condition, event_id)
        if condition.state.acked:
            raise StatusError(ua.StatusCodes.BadConditionBranchAlreadyAcked, f"{condition.key} is acknowledged")
        await self._change(condition, acked=True, **self._commented(comment))

    async def _confirm(self, condition: _Condition, event_id: bytes | None, comment: str) -> None:
        self._check_event_id(condition, event_id)
        if condition.state.confirmed:
            raise StatusError(ua.StatusCodes.BadConditionBranchAlreadyConfirmed, f"{condition.key} is confirmed")
        await self._change(condition, confirmed=True, **self._commented(comment))

    async def _add_comment(self, condition: _Condition, event_id: bytes | None, comment: str) -> None:
        self._check_event_id(condition, event_id)
        await self._change(condition, **self._commented(comment))

    @staticmethod
    def _check_event_id(condition: _Condition, event_id: bytes | None) -> None:
        if not condition.state.enabled:
            raise StatusError(ua.StatusCodes.BadConditionDisabled, f"{condition.key} is disabled")
        # 10000-9 5.7.3: the EventId names the notification the operator saw; an older one is unknown.
        if not event_id or event_id.hex() != condition.state.event_id:
            raise StatusError(ua.StatusCodes.BadEventIdUnknown, f"{condition.key}: not its latest EventId")

    @staticmethod
    def _commented(comment: str) -> dict[str, str]:
        # ClientUserId names who acted (10000-9 5.5.2); an empty comment leaves the last one standing.
        user = {"user": getattr(current_user(), "name", None) or ""}
        return {"comment": comment, **user} if comment else user

    async def _serve_methods(self, condition: _Condition) -> None:
        actions = {ACKNOWLEDGE: self._acknowledge, CONFIRM: self._confirm, ADD_COMMENT: self._add_comment}
        handlers: dict[int, type_methods.Handler] = {}
        for number, action in actions.items():
            signature = await read_signature(self._server.get_node(node_id(number)))
            handlers[number] = _handler(condition, signature, action, self._lock)
        for number, toggle in ((ENABLE, self._enable), (DISABLE, self._disable)):
            signature = await read_signature(self._server.get_node(node_id(number)))
            handlers[number] = _toggle_handler(condition, signature, toggle, self._lock)
        condition.stop_serving.append(type_methods.serve(self._server, condition.node.nodeid, handlers))
        # The condition's own method nodes (instances of the type's declarations) answer the same way.
        own = {"Acknowledge": ACKNOWLEDGE, "Confirm": CONFIRM, "AddComment": ADD_COMMENT, "Enable": ENABLE}
        own["Disable"] = DISABLE
        for child in await condition.node.get_children(nodeclassmask=ua.NodeClass.Method):
            number = own.get((await child.read_browse_name()).Name or "", 0)
            handler = handlers.get(number, _not_supported)
            self._server.link_method(child, type_methods.bound_to(condition.node.nodeid, handler))

    # --- state, nodes and events ----------------------------------------------------------------------------

    def _condition(self, key: str) -> _Condition:
        try:
            return self._conditions[key]
        except KeyError:
            raise NotFound(f"no alarm {key!r}") from None

    async def _change(self, condition: _Condition, **change: Any) -> None:
        """Persist the new state, then show it in the address space and send its event notification."""
        now = self._clock()
        event_id = uuid.uuid4().bytes  # 10000-5 6.4.2: a new EventId for every notification
        state = condition.state.model_copy(update={**change, "time": now, "event_id": event_id.hex()})
        self._saved[condition.key] = state
        await self._store.save(self._saved)  # written before it is announced
        previous, condition.state = condition.state, state
        await self._show(condition, previous)
        assert condition.event is not None
        if not (previous.enabled or state.enabled):
            return  # 10000-9 5.5.4: a disabled condition sends nothing
        for notifier in condition.notifiers:
            condition.event.emitting_node = notifier
            await self._server.iserver.subscription_service.trigger_event(condition.event)
        if self._history is not None:
            await self._history.record(condition.notifiers, condition.event)
        _log.info(
            "alarm %s: enabled=%s active=%s acked=%s confirmed=%s severity=%d",
            condition.key,
            state.enabled,
            state.active,
            state.acked,
            state.confirmed,
            state.severity,
        )

    async def _show(self, condition: _Condition, previous: AlarmState | None = None) -> None:
        """Write the condition's state into its variables (10000-9 5.5.2, 5.7.2, 5.8.2) and take the
        event snapshot that notifications and ConditionRefresh send."""
        s = condition.state
        lt, b = ua.VariantType.LocalizedText, ua.VariantType.Boolean
        w = self._write
        await w(condition, "EventId", bytes.fromhex(s.event_id), ua.VariantType.ByteString)
        await w(condition, "Time", s.time, ua.VariantType.DateTime)
        await w(condition, "ReceiveTime", s.time, ua.VariantType.DateTime)
        await w(condition, "Message", ua.LocalizedText(s.message), lt)
        await w(condition, "Severity", s.severity, ua.VariantType.UInt16)
        await w(condition, "LastSeverity", s.last_severity, ua.VariantType.UInt16)
        await w(condition, "LastSeverity/SourceTimestamp", s.time, ua.VariantType.DateTime)
        await w(condition, "Quality/SourceTimestamp", s.time, ua.VariantType.DateTime)
        await w(condition, "Retain", s.retain, b)
        await w(condition, "EnabledState", ua.LocalizedText("Enabled" if s.enabled else "Disabled"), lt)
        await w(condition, "EnabledState/Id", s.enabled, b)
        await w(condition, "ActiveState", ua.LocalizedText("Active" if s.active else "Inactive"), lt)
        await w(condition, "ActiveState/Id", s.active, b)
        await w(condition, "AckedState", ua.LocalizedText("Acknowledged" if s.acked else "Unacknowledged"), lt)
        await w(condition, "AckedState/Id", s.acked, b)
        await w(condition, "ConfirmedState", ua.LocalizedText("Confirmed" if s.confirmed else "Unconfirmed"), lt)
        await w(condition, "ConfirmedState/Id", s.confirmed, b)
        await w(condition, "Comment", ua.LocalizedText(s.comment), lt)
        await w(condition, "Comment/SourceTimestamp", s.time, ua.VariantType.DateTime)
        await w(condition, "ClientUserId", s.user, ua.VariantType.String)
        for name, was, now in (("ActiveState", "active", s.active), ("AckedState", "acked", s.acked)):
            if previous is None or getattr(previous, was) != now:
                await w(condition, f"{name}/TransitionTime", s.time, ua.VariantType.DateTime)
        if previous is None or previous.confirmed != s.confirmed:
            await w(condition, "ConfirmedState/TransitionTime", s.time, ua.VariantType.DateTime)
        condition.event = await snapshot(condition.node.nodeid, condition.source, condition.variables)

    async def _write(self, condition: _Condition, path: str, value: Any, kind: ua.VariantType) -> None:
        node = condition.variables.get(path)
        if node is not None:
            await node.write_value(ua.Variant(value, kind))

    def _retained_events(self) -> list[tuple[Event, list[ua.NodeId]]]:
        return [(c.event, c.notifiers) for c in self._conditions.values() if c.event is not None and c.state.retain]


def _handler(
    condition: _Condition,
    signature: list[Any],
    action: Callable[[_Condition, bytes | None, str], Any],
    lock: asyncio.Lock,
) -> type_methods.Handler:
    @status_on_error
    @requires(Role.OPERATOR)
    async def call(parent: ua.NodeId, *args: Any) -> Any:
        async with lock:
            return await checked(*args)

    async def checked(*args: Any) -> Any:
        refusal = check_call(signature, args)
        if refusal is not None:
            return refusal
        comment = args[1].Value
        text = comment.Text if isinstance(comment, ua.LocalizedText) else None
        await action(condition, args[0].Value, text or "")
        return []

    call.__name__ = getattr(action, "__name__", "call").strip("_")
    return call


def _toggle_handler(
    condition: _Condition,
    signature: list[Any],
    action: Callable[[_Condition], Any],
    lock: asyncio.Lock,
) -> type_methods.Handler:
    @status_on_error
    @requires(Role.ENGINEER)
    async def call(parent: ua.NodeId, *args: Any) -> Any:
        refusal = check_call(signature, args)
        if refusal is not None:
            return refusal
        async with lock:
            await action(condition)
        return []

    return call


async def _not_supported(parent: ua.NodeId, *args: Any) -> ua.StatusCode:
    return status_code(ua.StatusCodes.BadNotSupported)
