"""Checks a client's Write must pass before asyncua applies it.

asyncua checks only the Variant type of a written value (and lets an array into
a scalar variable); it offers no hook that can refuse a Write: a value setter
cannot return a status, and PreWrite callbacks cannot change the result. So the
server's attribute service is wrapped once: a Write of the Value of a checked
node runs that node's check first, and a refused value is answered with the
check's StatusCode (e.g. Bad_OutOfRange, Bad_TypeMismatch; OPC 10000-4 5.10.4.4)
and never stored, so the node keeps its old value. Writes of other nodes and
attributes go through unchanged. A check only validates; whatever the write
changes is saved after asyncua accepted it (a PostWrite callback), so the
access checks asyncua runs still come first.

Least privilege: every ModelLine role is asyncua's User, which asyncua lets write
the Value of any variable whose AccessLevel has CurrentWrite. A client may write
only the nodes added here (e.g. ConfirmationTimeout, for an Engineer); any other
Value Write by a client session is refused with Bad_UserAccessDenied (OPC 10000-4
5.10.4.4), whatever AccessLevel the NodeSet gave the variable. sdk.opcua.access
answers UserAccessLevel from the same table, so clients see what they may write.
Each server has one instance (``WriteChecks.of``).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from asyncua import Server, ua
from asyncua.server.internal_server import InternalServer

from sdk import audit
from sdk.audit_log import on_disk
from sdk.errors import ModelLineError
from sdk.opcua import sessions
from sdk.opcua.ids import status_code
from sdk.opcua.status import status_of
from sdk.opcua.users import Role, RoleUser

_log = logging.getLogger(__name__)

Check = Callable[[ua.Variant], Awaitable[None]]
"""Raises a ModelLineError (whose StatusCode is the answer) when the value must not be written."""

_S = ua.StatusCodes


_ATTRIBUTE = "modelline_write_checks"  # on the asyncua InternalServer: goes with it, no process-wide table


class WriteChecks:
    """Per-node checks on client Writes of the Value attribute; the only nodes clients may write."""

    def __init__(self, server: Server) -> None:
        self._checks: dict[ua.NodeId, tuple[Check, Role]] = {}
        service = server.iserver.attribute_service
        self._write = service.write
        service.write = self._checked_write  # type: ignore[method-assign]
        setattr(server.iserver, _ATTRIBUTE, self)

    @classmethod
    def of(cls, server: Server) -> WriteChecks:
        """The server's WriteChecks, made on first use."""
        return WriteChecks.find(server.iserver) or cls(server)

    @staticmethod
    def find(iserver: InternalServer) -> WriteChecks | None:
        """The WriteChecks of an asyncua InternalServer, if it has one."""
        checks = getattr(iserver, _ATTRIBUTE, None)
        return checks if isinstance(checks, WriteChecks) else None

    def role_for(self, node: ua.NodeId) -> Role | None:
        """The role a client needs to write the node's Value, or None when no client may."""
        entry = self._checks.get(node)
        return entry[1] if entry is not None else None

    def may_write(self, node: ua.NodeId, role: Role) -> bool:
        """Whether a client session with ``role`` may write the node's Value."""
        entry = self._checks.get(node)
        return entry is not None and role >= entry[1]

    def add(self, node: ua.NodeId, check: Check, role: Role = Role.ENGINEER) -> None:
        """Let only clients with ``role`` write the Value of ``node``, whole (no IndexRange), and run ``check``.

        asyncua's own access check knows no roles: the node is writable for every session it lets write."""
        self._checks[node] = (check, role)

    async def _checked_write(self, params: ua.WriteParameters, *args: Any, **kwargs: Any) -> list[ua.StatusCode]:
        refused: dict[int, ua.StatusCode] = {}
        user = kwargs.get("user")
        # Every client session carries a RoleUser (sdk.opcua.users); a write without one is the server's own.
        client = isinstance(user, RoleUser)
        role = user.modelline_role if isinstance(user, RoleUser) else Role.SECURITY_ADMIN
        for index, item in enumerate(params.NodesToWrite):
            entry = self._checks.get(item.NodeId)
            if entry is None and client and item.AttributeId == ua.AttributeIds.Value:
                refused[index] = status_code(_S.BadUserAccessDenied)  # maintained by the server: nobody writes it
                _log.info("write of %s refused: no client may write it", item.NodeId.to_string())
                continue
            if entry is None or item.AttributeId != ua.AttributeIds.Value:
                continue
            check, needed = entry
            if role < needed:
                refused[index] = status_code(_S.BadUserAccessDenied)
                _log.info("write of %s refused: needs the %s role", item.NodeId.to_string(), needed.label)
                _audit_refused(item.NodeId, f"needs the {needed.label} role; the caller is {role.label}")
                continue
            if item.IndexRange:  # a part of a scalar setting means nothing (OPC 10000-4 7.27)
                refused[index] = status_code(_S.BadIndexRangeInvalid)
                continue
            try:
                await check(item.Value.Value if item.Value.Value is not None else ua.Variant())
            except ModelLineError as exc:
                refused[index] = status_code(status_of(exc))
                _log.info("write of %s refused: %s (%s)", item.NodeId.to_string(), exc, refused[index].name)
                _audit_refused(item.NodeId, f"{exc} ({refused[index].name})")
        if not refused:
            return await self._write(params, *args, **kwargs)
        await on_disk()  # the refusals' audit records
        passed = [item for i, item in enumerate(params.NodesToWrite) if i not in refused]
        results = iter(await self._write(ua.WriteParameters(NodesToWrite=passed), *args, **kwargs) if passed else [])
        return [refused[i] if i in refused else next(results) for i in range(len(params.NodesToWrite))]


def _audit_refused(node: ua.NodeId, reason: str) -> None:
    """A refused Write, in the audit trail (AuditWriteUpdateEventType, OPC 10000-4 6.5.8)."""
    audit.record(
        "write",
        "refused",
        who=sessions.current_who(),
        address=sessions.current_address(),
        target=node.to_string(),
        detail=reason,
    )
