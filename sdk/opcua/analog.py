"""Prediction variables as SCADA expects them: typed, shaped, and for numbers an AnalogItem with units.

One layout describes a prediction variable (data type, array dimensions, label, and for numeric
outputs EngineeringUnits and EURange, OPC 10000-8 5.3.2 AnalogItemType). The edge node builds it
from the package's manifest; the gateway reads it from the edge node's variable and mirrors the
prediction with the same layout, so a central HMI shows the same units as the line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from asyncua import Node, ua

from sdk.opcua.ids import node_id, path_id

_NOT_ANALOG = (ua.VariantType.Boolean, ua.VariantType.String)
_ZERO: dict[ua.VariantType, Any] = {ua.VariantType.Boolean: False, ua.VariantType.String: ""}


@dataclass(frozen=True)
class VariableLayout:
    """How a prediction variable looks to a client."""

    kind: ua.VariantType
    dims: tuple[int, ...] = ()
    label: str = ""
    units: ua.EUInformation | None = None
    eu_range: ua.Range | None = None

    @property
    def analog(self) -> bool:
        """Numbers are AnalogItems (with EURange, and EngineeringUnits when known)."""
        return self.kind not in _NOT_ANALOG

    def variant(self, value: Any) -> ua.Variant:
        """``value`` as this variable's Variant; None (no value: a Bad status) as the null Variant."""
        return ua.Variant() if value is None else ua.Variant(value, self.kind)

    def zero(self) -> ua.Variant:
        """The value a new variable starts with."""
        zero = _ZERO.get(self.kind, 0)
        return ua.Variant([zero] * math.prod(self.dims) if self.dims else zero, self.kind)


async def add_prediction_variable(
    parent: Node, nodeid: ua.NodeId, bname: ua.QualifiedName, layout: VariableLayout
) -> Node:
    """A variable under ``parent`` with ``layout`` (its value: ``layout.zero()``).

    Created by one AddNodes item that carries its TypeDefinition (OPC 10000-4 5.7.2): asyncua
    stores the TypeDefinition a Browse reports on the parent's reference when the node is added,
    so a type definition changed afterwards would browse as BaseDataVariableType.
    """
    kind = layout.kind
    type_definition = ua.ObjectIds.AnalogItemType if layout.analog else ua.ObjectIds.BaseDataVariableType
    attrs = ua.VariableAttributes(
        DisplayName=ua.LocalizedText(bname.Name),
        Description=ua.LocalizedText(layout.label or bname.Name),
        Value=layout.zero(),
        DataType=node_id(kind.value),
        ValueRank=1 if layout.dims else -1,
        ArrayDimensions=list(layout.dims) if layout.dims else None,  # type: ignore[arg-type]
        AccessLevel=ua.AccessLevel.CurrentRead.mask,
        UserAccessLevel=ua.AccessLevel.CurrentRead.mask,
        WriteMask=0,
        UserWriteMask=0,
        Historizing=False,
    )
    item = ua.AddNodesItem(
        ParentNodeId=parent.nodeid,
        ReferenceTypeId=node_id(ua.ObjectIds.HasComponent),
        RequestedNewNodeId=nodeid,
        BrowseName=bname,
        NodeClass=ua.NodeClass.Variable,
        NodeAttributes=attrs,
        TypeDefinition=node_id(type_definition),
    )
    [result] = await parent.session.add_nodes([item])
    result.StatusCode.check()
    node = Node(parent.session, result.AddedNodeId)
    if layout.analog:
        eu_range = layout.eu_range or ua.Range(Low=-1e38, High=1e38)
        await node.add_property(
            path_id(node.nodeid, "EURange"), "0:EURange", ua.Variant(eu_range, ua.VariantType.ExtensionObject)
        )
        if layout.units is not None:
            await node.add_property(
                path_id(node.nodeid, "EngineeringUnits"),
                "0:EngineeringUnits",
                ua.Variant(layout.units, ua.VariantType.ExtensionObject),
            )
    return node


async def read_layout(node: Node) -> VariableLayout:
    """The layout of a prediction variable on another server (e.g. an edge node's output)."""
    kind = await node.read_data_type_as_variant_type()
    dims = (await node.read_attribute(ua.AttributeIds.ArrayDimensions, raise_on_bad_status=False)).Value
    description = (await node.read_attribute(ua.AttributeIds.Description)).Value
    properties = {
        str((await child.read_browse_name()).Name): child
        for child in await node.get_children(refs=ua.ObjectIds.HasProperty)
    }
    units = await properties["EngineeringUnits"].read_value() if "EngineeringUnits" in properties else None
    eu_range = await properties["EURange"].read_value() if "EURange" in properties else None
    return VariableLayout(
        kind=kind,
        dims=tuple(dims.Value or ()) if dims is not None else (),
        label=description.Value.Text if description is not None and description.Value is not None else "",
        units=units if isinstance(units, ua.EUInformation) else None,
        eu_range=eu_range if isinstance(eu_range, ua.Range) else None,
    )
