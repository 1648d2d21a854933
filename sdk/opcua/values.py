"""Every variable holds a value its DataType can encode, from the moment it exists.

asyncua gives a variable instantiated from a type declaration without a Value a
null Variant, and a DateTime Variant holding None cannot be encoded at all: a Read
that includes it fails as a whole with a ServiceFault BadInternalError
(INTEROP.md, "Found from outside"). ``new_instance`` is therefore the one way
ModelLine instantiates a type: it fills every null value in the new subtree with
the default of the variable's DataType. ``NO_DATE`` is the "no date" DateTime:
OPC 10000-6 5.2.2.5 encodes 1601-01-01 00:00 UTC (and anything earlier) as 0,
which clients show as no value.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from asyncua import Node, Server, ua
from asyncua.common.instantiate_util import instantiate
from asyncua.common.ua_utils import data_type_to_variant_type

from sdk.opcua.templates import from_template

NO_DATE: datetime = ua.get_win_epoch()
"""DateTime 1601-01-01 00:00 UTC, encoded as 0: the defined "no date" value."""

_DEFAULTS: dict[ua.VariantType, Any] = {
    ua.VariantType.Boolean: False,
    ua.VariantType.String: "",
    ua.VariantType.DateTime: NO_DATE,
    ua.VariantType.Guid: uuid.UUID(int=0),
    ua.VariantType.ByteString: b"",
    ua.VariantType.XmlElement: ua.XmlElement(""),  # type: ignore[arg-type]
    ua.VariantType.NodeId: ua.NodeId(),
    ua.VariantType.ExpandedNodeId: ua.ExpandedNodeId(),
    ua.VariantType.StatusCode: ua.StatusCode(),
    ua.VariantType.QualifiedName: ua.QualifiedName(""),
    ua.VariantType.LocalizedText: ua.LocalizedText(""),
}
_NUMBERS = {
    ua.VariantType.SByte,
    ua.VariantType.Byte,
    ua.VariantType.Int16,
    ua.VariantType.UInt16,
    ua.VariantType.Int32,
    ua.VariantType.UInt32,
    ua.VariantType.Int64,
    ua.VariantType.UInt64,
}


def default_variant(kind: ua.VariantType, array: bool = False) -> ua.Variant | None:
    """The empty value of a built-in type (an empty array when ``array``); None where there is none."""
    if array:
        return ua.Variant([], kind)
    if kind in _NUMBERS:
        return ua.Variant(0, kind)
    if kind in (ua.VariantType.Float, ua.VariantType.Double):
        return ua.Variant(0.0, kind)
    if kind in _DEFAULTS:
        return ua.Variant(_DEFAULTS[kind], kind)
    return None  # Variant (abstract types), ExtensionObject, DataValue...: no value to make up here


async def _structure_class(data_type: Node) -> type | None:
    """asyncua's class for a structured DataType: registered ones, else the standard class of that name."""
    registered = ua.extension_objects_by_datatype.get(data_type.nodeid)
    if registered is not None:
        return registered
    standard = getattr(ua, (await data_type.read_browse_name()).Name or "", None)
    return standard if isinstance(standard, type) and getattr(standard, "data_type", None) == data_type.nodeid else None


async def fill_null_values(node: Node) -> int:
    """Give every variable at or below ``node`` whose value is null its DataType's default; returns how many."""
    filled = 0
    pending = [node]
    seen = {node.nodeid}
    while pending:
        current = pending.pop()
        for child in await current.get_children():
            if child.nodeid not in seen:
                seen.add(child.nodeid)
                pending.append(child)
        if await current.read_node_class() != ua.NodeClass.Variable:
            continue
        dv = await current.read_data_value(raise_on_bad_status=False)
        if dv.Value is not None and dv.Value.Value is not None:
            continue
        data_type = await current.read_data_type()
        kind = await data_type_to_variant_type(Node(current.session, data_type))
        rank = await current.read_value_rank()
        default = default_variant(kind, array=rank >= 0)
        if default is None and kind is ua.VariantType.ExtensionObject and rank < 0:
            structure = await _structure_class(Node(current.session, data_type))
            if structure is not None:  # a structure: its fields' defaults
                default = ua.Variant(structure(), ua.VariantType.ExtensionObject)
        if default is not None:
            await current.write_value(default)
            filled += 1
    return filled


async def write_own(server: Server, nodeid: ua.NodeId, value: ua.Variant) -> None:
    """Write a variable's Value as the server itself: what ``Node.write_value`` on the server's own session does
    (SourceTimestamp now, ServerTimestamp now where the server forces it, the DataType checked), without the
    Write service's round through the session: thousands of writes while a gateway starts. Not for a setting
    clients may write (sdk.opcua.writes): its check would be skipped."""
    aspace = server.iserver.aspace
    now = datetime.now(UTC)
    server_time = now if aspace.force_server_timestamp else None
    dv = ua.DataValue(value, SourceTimestamp=now, ServerTimestamp=server_time)  # type: ignore[arg-type]
    (await aspace.write_attribute_value(nodeid, ua.AttributeIds.Value, dv)).check()


async def new_instance(
    parent: Node, type_node: Node, nodeid: ua.NodeId, bname: ua.QualifiedName, optional: bool = True
) -> Node:
    """``type_node`` instantiated under ``parent`` (with its optional children when ``optional``), no value null.

    The first instance of a type on a server is instantiated; the next ones are copies of it (``templates``)."""

    async def build() -> list[ua.NodeId]:
        return await instantiate_filled(parent, type_node, nodeid, bname, optional)

    return await from_template(parent, nodeid, bname, ("instance", type_node.nodeid, optional), build)


async def instantiate_filled(
    parent: Node, type_node: Node, nodeid: ua.NodeId, bname: ua.QualifiedName, optional: bool = True
) -> list[ua.NodeId]:
    """asyncua's instantiation (browsing the type) with every null value filled; the NodeIds it made."""
    made = await instantiate(parent, type_node, nodeid=nodeid, bname=bname, instantiate_optional=optional)
    await fill_null_values(made[0])
    return [n.nodeid for n in made]
