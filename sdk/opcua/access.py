"""The User* attributes, answered for the session that reads them.

OPC 10000-3 5.6.2 (UserAccessLevel: "the access capabilities of the Variable taking user access
rights into account"), 5.7 (UserExecutable: "whether the Method can be executed taking user access
rights into account") and 5.2.10 (UserRolePermissions: the permissions of the Session's roles)
describe attributes whose value depends on who reads them; OPC 10000-4 5.10.2 Read returns them
for the calling Session. asyncua stores one value per node for everybody, so a generic client
(UaExpert, a SCADA) would offer every user every method and every writable variable.

``install()`` wraps ``InternalSession.read`` once per process (as sdk.opcua.sessions wraps other
InternalSession methods) and, for a client session, rewrites these attributes from what the
server enforces:

- UserExecutable of a method: False when its handler was made with ``users.requires(role)`` and
  the session's role is lower; otherwise the stored Executable value;
- UserAccessLevel of a variable: without CurrentWrite (and the other write bits) unless the
  server's WriteChecks (sdk.opcua.writes) lets the session's role write it, since no client may
  write anything else;
- UserWriteMask: 0, since no role may write attributes other than Value (OPC 10000-3 5.2.8);
- RolePermissions / UserRolePermissions of the nodes whose permissions the server knows (a
  role-checked method, a writable variable): the well-known roles (OPC 10000-3 4.9.2) with the
  permissions each has, and those of the session's own role.

The server's own reads (its internal session) get the stored values.
"""

from __future__ import annotations

import functools
from typing import Any

from asyncua import ua
from asyncua.server.internal_session import InternalSession

from sdk.opcua.ids import node_id
from sdk.opcua.users import Role, RoleUser, required_role
from sdk.opcua.writes import WriteChecks

_A = ua.AttributeIds
_P = ua.PermissionType
_WRITE_BITS = ~(
    ua.AccessLevel.CurrentWrite.mask
    | ua.AccessLevel.HistoryWrite.mask
    | ua.AccessLevel.SemanticChange.mask
    | ua.AccessLevel.StatusWrite.mask
    | ua.AccessLevel.TimestampWrite.mask
)
_ROLE_IDS = {
    Role.OBSERVER: ua.ObjectIds.WellKnownRole_Observer,
    Role.OPERATOR: ua.ObjectIds.WellKnownRole_Operator,
    Role.ENGINEER: ua.ObjectIds.WellKnownRole_Engineer,
    Role.SECURITY_ADMIN: ua.ObjectIds.WellKnownRole_SecurityAdmin,
}
_SEE = _P.Browse | _P.Read | _P.ReadRolePermissions | _P.ReceiveEvents
_PER_SESSION = {_A.UserAccessLevel, _A.UserExecutable, _A.UserWriteMask, _A.RolePermissions, _A.UserRolePermissions}
_installed = False


def _value(value: Any, kind: ua.VariantType, original: ua.DataValue) -> ua.DataValue:
    return ua.DataValue(ua.Variant(value, kind), SourceTimestamp=original.SourceTimestamp)


def _permissions(needed: Role, grant: ua.PermissionType) -> list[ua.RolePermissionType]:
    return [
        ua.RolePermissionType(RoleId=node_id(node), Permissions=_SEE | grant if role >= needed else _SEE)
        for role, node in _ROLE_IDS.items()
    ]


def _answer(session: InternalSession, role: Role, item: ua.ReadValueId, result: ua.DataValue) -> ua.DataValue:
    """The per-session value of one read attribute (``result`` is the stored one)."""
    attribute = item.AttributeId
    node = session.iserver.aspace.get(item.NodeId)
    if node is None:
        return result
    checks = WriteChecks.find(session.iserver)
    needed: Role | None = None
    grant = _P(0)
    if node.call is not None:
        needed, grant = required_role(node.call), _P.Call
    elif checks is not None and checks.role_for(item.NodeId) is not None:
        needed, grant = checks.role_for(item.NodeId), _P.Write
    if attribute == _A.UserWriteMask:
        return _value(0, ua.VariantType.UInt32, result)
    if attribute in (_A.RolePermissions, _A.UserRolePermissions):
        if needed is None:
            return result
        permissions = _permissions(needed, grant)
        if attribute == _A.UserRolePermissions:
            permissions = [p for p in permissions if p.RoleId == node_id(_ROLE_IDS[role])]
        return _value(permissions, ua.VariantType.ExtensionObject, result)
    if result.StatusCode is not None and not result.StatusCode.is_good():
        return result
    stored = result.Value.Value if result.Value is not None else None
    if attribute == _A.UserExecutable:
        return _value(bool(stored) and (needed is None or role >= needed), ua.VariantType.Boolean, result)
    if attribute == _A.UserAccessLevel and isinstance(stored, int):
        allowed = checks is not None and checks.may_write(item.NodeId, role)
        return _value(stored if allowed else stored & _WRITE_BITS, ua.VariantType.Byte, result)
    return result


def install() -> None:
    """Wrap InternalSession.read (idempotent)."""
    global _installed
    if _installed:
        return
    original = InternalSession.read

    @functools.wraps(original)
    async def read(self: InternalSession, params: ua.ReadParameters) -> list[ua.DataValue]:
        results = await original(self, params)
        user = self.user
        if not isinstance(user, RoleUser) or not any(i.AttributeId in _PER_SESSION for i in params.NodesToRead):
            return results
        return [
            _answer(self, user.modelline_role, item, result) if item.AttributeId in _PER_SESSION else result
            for item, result in zip(params.NodesToRead, results, strict=True)
        ]

    InternalSession.read = read  # type: ignore[method-assign]
    _installed = True
