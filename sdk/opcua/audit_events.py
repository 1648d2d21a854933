"""Each audit record raised as an OPC UA AuditEvent from the Server object (OPC 10000-4 6.5, OPC 10000-5 6.4.3ff).

The standard subtype that fits the action carries the record (the spec's SourceName with it):

    login                        AuditActivateSessionEventType (10000-5 6.4.10)   "Session/ActivateSession"
    certificate refused          AuditCertificateUntrustedEventType (6.4.17)      "Security/Certificate"
    certificate, trust           AuditCertificateEventType (6.4.12)               "Security/Certificate"
    confirmation timeout (Write) AuditWriteUpdateEventType (6.4.25)               "Attribute/Write"
    any other client action      AuditUpdateMethodEventType (6.4.27)              "Attribute/Call"
    the server's own (a revert)  AuditEventType (6.4.3)                           "ModelLine/<action>"

with the AuditEventType fields: ActionTimeStamp (when it happened), Status (TRUE only when it was
done), ServerId (the server's ApplicationUri), ClientAuditEntryId (the record's sequence in the
audit log, "audit:<seq>", so a client can find the full record), ClientUserId (who) and a Message
that says the whole record (action, outcome, target, address, reason). The Server object's
EventNotifier keeps SubscribeToEvents and whatever else it had (HistoryRead, sdk/opcua/history.py).
"""

from __future__ import annotations

import logging
from typing import Any

from asyncua import Server, ua

from sdk.audit import AuditRecord

_log = logging.getLogger(__name__)

_O = ua.ObjectIds
_TYPES: dict[str, tuple[int, str]] = {
    "login": (_O.AuditActivateSessionEventType, "Session/ActivateSession"),
    "certificate refused": (_O.AuditCertificateUntrustedEventType, "Security/Certificate"),
    "certificate": (_O.AuditCertificateEventType, "Security/Certificate"),
    "trust": (_O.AuditCertificateEventType, "Security/Certificate"),
    "write": (_O.AuditWriteUpdateEventType, "Attribute/Write"),
    "method": (_O.AuditUpdateMethodEventType, "Attribute/Call"),
    "server": (_O.AuditEventType, ""),
}
WRITE_ACTIONS = {"confirmation timeout", "write"}  # audited actions that are a client's Write, not a method call


def event_kind(entry: AuditRecord) -> str:
    """Which entry of the table above a record is raised as."""
    if entry.action == "login":
        return "login"
    if entry.action == "certificate":
        return "certificate refused" if entry.outcome == "refused" else "certificate"
    if entry.action == "trust":
        return "trust"
    if entry.action in WRITE_ACTIONS:
        return "write"
    return "method" if (entry.who or entry.address) else "server"


def message_of(entry: AuditRecord) -> str:
    """The record as one line."""
    text = f"{entry.action} {entry.outcome}"
    if entry.target:
        text += f" on {entry.target}"
    text += f" by {entry.who or 'the server'}"
    if entry.address:
        text += f" from {entry.address}"
    if entry.device:
        text += f" (device {entry.device})"
    return text + (f": {entry.detail}" if entry.detail else "")


class AuditEvents:
    """Raises AuditEvents on the Server object; a listener of the process's AuditWriter."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self._generators: dict[str, Any] = {}
        self._server_id = ""

    async def start(self) -> AuditEvents:
        """Make one event generator per type on the Server object."""
        node = self.server.nodes.server
        before = await node.read_event_notifier()
        for kind, (type_id, _name) in _TYPES.items():
            self._generators[kind] = await self.server.get_event_generator(type_id, node.nodeid)
        # get_event_generator sets the notifier to SubscribeToEvents alone: keep what it had too.
        await node.set_event_notifier({*before, ua.EventNotifier.SubscribeToEvents})
        uri = await self.server.get_node(ua.NodeId(ua.Int32(_O.Server_ServerArray))).read_value()
        self._server_id = str(uri[0]) if uri else ""
        return self

    async def raise_events(self, records: list[AuditRecord]) -> None:
        """Raise one AuditEvent per record (written records, so each has its sequence)."""
        for entry in records:
            try:
                await self._raise(entry)
            except Exception:  # an event that cannot be raised must not stop the audit log
                _log.exception("audit: raising the event of record %d failed", entry.seq)

    async def _raise(self, entry: AuditRecord) -> None:
        kind = event_kind(entry)
        generator = self._generators[kind]
        event = generator.event
        _type_id, source_name = _TYPES[kind]
        fields: dict[str, tuple[Any, ua.VariantType]] = {
            "ActionTimeStamp": (entry.at, ua.VariantType.DateTime),
            "Status": (entry.outcome == "ok", ua.VariantType.Boolean),
            "ServerId": (self._server_id, ua.VariantType.String),
            "ClientAuditEntryId": (f"audit:{entry.seq}", ua.VariantType.String),
            "ClientUserId": (entry.who, ua.VariantType.String),
            "SourceName": (source_name or f"ModelLine/{entry.action}", ua.VariantType.String),
            "Severity": (500 if entry.outcome != "ok" else 100, ua.VariantType.UInt16),
        }
        if kind == "login":
            fields["SecureChannelId"] = (entry.address, ua.VariantType.String)
        if kind == "method":
            status = ua.StatusCodes.Good if entry.outcome == "ok" else ua.StatusCodes.BadUserAccessDenied
            if entry.outcome == "failed" or (entry.outcome == "refused" and "role" not in entry.detail):
                status = ua.StatusCodes.BadRequestNotAllowed
            fields["StatusCodeId"] = (ua.StatusCode(ua.UInt32(status)), ua.VariantType.StatusCode)
        for name, (value, variant_type) in fields.items():
            event.add_property(name, value, variant_type)
        await generator.trigger(message=message_of(entry))
