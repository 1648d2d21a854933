"""The address-space side of alarm conditions (OPC 10000-9): condition objects with the children a client
expects, the references that make events browsable, and the event a condition's variables describe."""

from __future__ import annotations

from asyncua import Node, Server, ua
from asyncua.common.events import Event
from asyncua.common.instantiate_util import _instantiate_node

from sdk.opcua.ids import node_id, path_id
from sdk.opcua.templates import from_template
from sdk.opcua.values import fill_null_values, instantiate_filled

KEPT_OPTIONAL = frozenset({"ConfirmedState", "Confirm"})
"""The optional InstanceDeclarations every condition gets besides the mandatory ones (10000-9 5.7.2)."""


class ConditionNodes:
    """Creates condition objects and references on one server (the type lookups once per type)."""

    def __init__(self, server: Server) -> None:
        self._server = server
        self._optionals: dict[ua.NodeId, list[ua.ReferenceDescription]] = {}

    async def instantiate(self, source: Node, type_node: Node, nodeid: ua.NodeId, bname: ua.QualifiedName) -> Node:
        """The mandatory InstanceDeclarations (10000-3 6.4.4) plus ConfirmedState and Confirm. The other optional
        ones (shelving, suppression, silencing, out of service, alarm groups...) are features not served here;
        instantiating them too would cost ten times as long."""

        async def build() -> list[ua.NodeId]:
            made = await instantiate_filled(source, type_node, nodeid, bname, optional=False)
            if type_node.nodeid not in self._optionals:
                self._optionals[type_node.nodeid] = await declarations(type_node, KEPT_OPTIONAL)
            for rdesc in self._optionals[type_node.nodeid]:
                child_id = path_id(nodeid, rdesc.BrowseName.Name or "")
                declaration = self._server.get_node(rdesc.NodeId)
                # asyncua's instantiate() would give the child the declaration as its type; this is the step it
                # uses for each child, with the declaration's own reference and type.
                made += await _instantiate_node(source.session, declaration, nodeid, rdesc, child_id, rdesc.BrowseName)
                await fill_null_values(self._server.get_node(child_id))
            return made

        # Made once per condition type and server, then copied (sdk/opcua/templates.py).
        return await from_template(source, nodeid, bname, ("condition", type_node.nodeid, KEPT_OPTIONAL), build)

    async def reference(self, source: ua.NodeId, reference: int, target: ua.NodeId) -> None:
        """Add ``source -reference-> target`` (and its inverse) unless it is there."""
        existing = await self._server.get_node(source).get_references(refs=reference)
        if not any(r.NodeId == target and r.IsForward for r in existing):
            await self._server.get_node(source).add_reference(target, reference, forward=True, bidirectional=True)


async def snapshot(condition_id: ua.NodeId, source: ua.NodeId, variables: dict[str, Node]) -> Event:
    """The event notification the condition's variables describe, with its ConditionId."""
    event = Event(source)
    for path, node in variables.items():
        value = (await node.read_data_value(raise_on_bad_status=False)).Value
        if value is not None:
            event.add_property(path, value.Value, value.VariantType)
    # 10000-9 5.5.2: ConditionId is the NodeId attribute of the condition (empty BrowsePath).
    event.add_property("NodeId", condition_id, ua.VariantType.NodeId)
    return event


async def subscribable(node: Node) -> None:
    """Give ``node`` EventNotifier SubscribeToEvents (10000-3 5.4)."""
    notifier = await node.read_event_notifier()
    if ua.EventNotifier.SubscribeToEvents not in notifier:
        await node.set_event_notifier({*notifier, ua.EventNotifier.SubscribeToEvents})


async def declarations(type_node: Node, names: frozenset[str]) -> list[ua.ReferenceDescription]:
    """The InstanceDeclarations called ``names`` of a type or its nearest supertype that has them."""
    found: dict[str, ua.ReferenceDescription] = {}
    current: Node | None = type_node
    while current is not None and current.nodeid != node_id(ua.ObjectIds.BaseObjectType):
        for rdesc in await current.get_children_descriptions():
            name = rdesc.BrowseName.Name or ""
            if name in names and name not in found:
                found[name] = rdesc
        parents = await current.get_referenced_nodes(ua.ObjectIds.HasSubtype, ua.BrowseDirection.Inverse)
        current = parents[0] if parents else None
    return list(found.values())


async def field_nodes(node: Node) -> dict[str, Node]:
    """The condition's variables and their properties by field name ('Retain', 'ActiveState/Id')."""
    found: dict[str, Node] = {}
    variables = ua.NodeClass.Variable
    for child in await node.get_children_descriptions(nodeclassmask=variables):  # names from the Browse itself
        name = child.BrowseName.Name or ""
        found[name] = Node(node.session, child.NodeId)
        for sub in await found[name].get_children_descriptions(nodeclassmask=variables):
            found[f"{name}/{sub.BrowseName.Name}"] = Node(node.session, sub.NodeId)
    return found
