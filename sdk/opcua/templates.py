"""Instances of a type made once by browsing the type, then copied: the same nodes without the browsing.

asyncua's ``instantiate`` walks the type's hierarchy for every child of every instance (Browse of
the type and of each supertype, a modelling-rule lookup per declaration, ``is_child_present`` per
child, each a service call on the server's own session): tens of milliseconds for an alarm
condition, most of a gateway's Deploy and start. The result depends only on the type, the
instantiation options and the new node's place, so the first instance of a kind is made the slow
way and remembered (its nodes' attributes and references, a snapshot); every further one is that
snapshot written into the address space with the new NodeIds, in one step.

What a client sees is the same as after ``instantiate`` (OPC 10000-3 6.4.4 instance declarations,
the children's BrowseNames, NodeClasses, attributes, HasTypeDefinition and hierarchical references,
and the NodeIds ``<new id>.<child browse name>`` asyncua gives a string-id instance's children):
``tests/unit/opcua/test_templates.py`` compares a copy with an instantiated twin node by node.
A snapshot is taken only of a subtree whose NodeIds all derive from its root's string id, as
asyncua's instantiation of a string id makes them; anything else (numeric ids, a client session)
is instantiated every time.
"""

from __future__ import annotations

import copy
import dataclasses
import weakref
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from asyncua import Node, ua
from asyncua.server.address_space import AddressSpace, AttributeValue, NodeData
from asyncua.server.internal_session import InternalSession
from asyncua.ua.uaerrors import BadNodeIdExists, BadParentNodeIdInvalid

_HAS_TYPE_DEFINITION = ua.NodeId(ua.ObjectIds.HasTypeDefinition)  # type: ignore[arg-type]
_FOLDER_TYPE = ua.NodeId(ua.ObjectIds.FolderType)  # type: ignore[arg-type]
_ORGANIZES = ua.NodeId(ua.ObjectIds.Organizes)  # type: ignore[arg-type]
_HAS_COMPONENT = ua.NodeId(ua.ObjectIds.HasComponent)  # type: ignore[arg-type]


@dataclass(frozen=True)
class _Snapshot:
    """One instance's subtree with NodeIds relative to its root (``""`` is the root)."""

    namespace: int
    root: ua.NodeId  # the NodeId of the instance the snapshot was taken of
    parent: ua.NodeId  # and of its parent
    nodes: list[tuple[str, dict[ua.AttributeIds, ua.DataValue], list[ua.ReferenceDescription]]]
    from_parent: ua.ReferenceDescription  # the parent's forward reference to the root
    root_name: str  # the root's BrowseName when the snapshot was taken (its DisplayName may repeat it)


Build = Callable[[], Awaitable[Sequence[ua.NodeId] | None]]
"""Makes the instance the slow way and returns the NodeIds of every node it made (the root first), or None:
then the nodes below the root whose NodeIds derive from its own are taken."""

_snapshots: weakref.WeakKeyDictionary[AddressSpace, dict[Hashable, _Snapshot]] = weakref.WeakKeyDictionary()


async def from_template(parent: Node, nodeid: ua.NodeId, bname: ua.QualifiedName, kind: Hashable, build: Build) -> Node:
    """The instance of ``kind`` at ``nodeid`` under ``parent``: copied when one was made before on this
    server, else made by ``build`` (which must put it at ``nodeid`` under ``parent``) and remembered."""
    aspace = _address_space(parent)
    if aspace is None or nodeid.NodeIdType != ua.NodeIdType.String:
        await build()
        return Node(parent.session, nodeid)
    known = _snapshots.setdefault(aspace, {})
    snapshot = known.get(kind)
    if snapshot is not None and snapshot.namespace == nodeid.NamespaceIndex:
        _copy(aspace, snapshot, parent.nodeid, nodeid, bname)
        return Node(parent.session, nodeid)
    made = await build()
    taken = _take(aspace, parent.nodeid, nodeid, made if made is not None else _derived(aspace, nodeid))
    if taken is not None:
        known[kind] = taken
    return Node(parent.session, nodeid)


async def children_by_name(node: Node) -> dict[str, Node]:
    """The node's children (hierarchical references) by browse name, in one Browse."""
    return {str(d.BrowseName.Name): Node(node.session, d.NodeId) for d in await node.get_children_descriptions()}


def _address_space(node: Node) -> AddressSpace | None:
    session = node.session
    return session.aspace if isinstance(session, InternalSession) else None


def _relative(root: ua.NodeId, nodeid: ua.NodeId) -> str | None:
    """``nodeid``'s identifier after its root's (``""`` for the root, ``".Child..."`` below), None if it is not
    derived from the root's id."""
    if nodeid.NamespaceIndex != root.NamespaceIndex or nodeid.NodeIdType != ua.NodeIdType.String:
        return None
    prefix, text = str(root.Identifier), str(nodeid.Identifier)
    if text == prefix:
        return ""
    return text[len(prefix) :] if text.startswith(prefix + ".") else None


def _derived(aspace: AddressSpace, root: ua.NodeId) -> list[ua.NodeId]:
    """``root`` and the nodes its forward references reach, directly or not, whose NodeIds derive from its own."""
    found = [root]
    seen = {root}
    for nodeid in found:
        data = aspace.get(nodeid)
        for ref in data.references if data is not None else ():
            if ref.IsForward and ref.NodeId not in seen and _relative(root, ref.NodeId):
                seen.add(ref.NodeId)
                found.append(ref.NodeId)
    return found


def _take(aspace: AddressSpace, parent: ua.NodeId, root: ua.NodeId, made: Sequence[ua.NodeId]) -> _Snapshot | None:
    """The snapshot of the subtree just made, or None when it cannot be copied faithfully."""
    inside = set(made)
    nodes = []
    for nodeid in made:
        relative = _relative(root, nodeid)
        data = aspace.get(nodeid)
        if relative is None or data is None or data.call is not None:
            return None
        attributes = {}
        for attribute, held in data.attributes.items():
            if held.value_callback is not None or held.value is None:
                return None
            attributes[attribute] = held.value
        references = []
        for ref in data.references:
            if (ref.NodeId in inside) != (_relative(root, ref.NodeId) is not None):
                return None  # a reference the copy could not rewrite
            references.append(copy.copy(ref))
        nodes.append((relative, attributes, references))
    parent_data = aspace.get(parent)
    from_parent = (
        next((r for r in parent_data.references if r.IsForward and r.NodeId == root), None) if parent_data else None
    )
    root_data = aspace.get(root)
    if from_parent is None or root_data is None:
        return None
    name = root_data.attributes[ua.AttributeIds.BrowseName].value
    root_name = name.Value.Value.Name if name and name.Value and name.Value.Value else ""
    return _Snapshot(root.NamespaceIndex, root, parent, nodes, copy.copy(from_parent), root_name or "")


def _copy(
    aspace: AddressSpace, snapshot: _Snapshot, parent: ua.NodeId, root: ua.NodeId, bname: ua.QualifiedName
) -> None:
    """Write the snapshot's nodes with ids under ``root``, the root named ``bname`` under ``parent``."""
    if root in aspace:
        raise BadNodeIdExists(f"{root} exists already")  # type: ignore[no-untyped-call]
    parent_data = aspace.get(parent)
    if parent_data is None:
        raise BadParentNodeIdInvalid(f"no parent {parent}")  # type: ignore[no-untyped-call]
    prefix = str(root.Identifier)
    now = datetime.now(UTC)
    kind = _child_reference(parent_data)
    root_attributes = snapshot.nodes[0][1]
    shown = root_attributes.get(ua.AttributeIds.DisplayName)
    display = None  # the root's new DisplayName where the instance showed its BrowseName
    if shown is not None and shown.Value is not None and shown.Value.Value == ua.LocalizedText(snapshot.root_name):
        display = ua.LocalizedText(bname.Name)
    for relative, attributes, references in snapshot.nodes:
        nodeid = ua.NodeId(prefix + relative, root.NamespaceIndex)  # type: ignore[arg-type]
        data = NodeData(nodeid)
        for attribute, value in attributes.items():
            data.attributes[attribute] = AttributeValue(_fresh(attribute, value, nodeid, now))
        if not relative:  # the root: its own name
            data.attributes[ua.AttributeIds.BrowseName] = AttributeValue(
                ua.DataValue(ua.Variant(bname, ua.VariantType.QualifiedName))
            )
            if display is not None:
                data.attributes[ua.AttributeIds.DisplayName] = AttributeValue(
                    ua.DataValue(ua.Variant(display, ua.VariantType.LocalizedText))
                )
        for ref in references:  # those to nodes outside the subtree (types, modelling rules) are shared
            target = _relative(snapshot.root, ref.NodeId)
            if target is not None:
                new_ref = _reference(ref, ua.NodeId(prefix + target, root.NamespaceIndex))  # type: ignore[arg-type]
                if not target:  # a reference to the root describes it by its name
                    new_ref.BrowseName = bname
                    new_ref.DisplayName = display if display is not None else new_ref.DisplayName
            elif not relative and not ref.IsForward and ref.NodeId == snapshot.parent:
                new_ref = _reference(ref, parent)
                new_ref.ReferenceTypeId = kind
            else:
                new_ref = ref
            data.references.append(new_ref)
        aspace[nodeid] = data
    from_parent = dataclasses.replace(snapshot.from_parent, NodeId=root, BrowseName=bname, ReferenceTypeId=kind)
    if display is not None:
        from_parent.DisplayName = display
    parent_data.references.append(from_parent)


def _fresh(attribute: ua.AttributeIds, value: ua.DataValue, nodeid: ua.NodeId, now: datetime) -> ua.DataValue:
    """The copy's own DataValue: its NodeId, and its Value stamped with the time it was made.

    The values themselves are shared, as asyncua's instantiate shares the declarations' values (it copies the
    attributes it reads): a write replaces an attribute's DataValue, it never changes one in place."""
    if attribute == ua.AttributeIds.NodeId:
        return _data_value(_variant(nodeid, ua.VariantType.NodeId, None, False), value)
    if attribute != ua.AttributeIds.Value or (value.SourceTimestamp is None and value.ServerTimestamp is None):
        return value
    made = _data_value(value.Value, value)
    made.SourceTimestamp = now if value.SourceTimestamp is not None else None  # type: ignore[assignment]
    made.ServerTimestamp = now if value.ServerTimestamp is not None else None  # type: ignore[assignment]
    return made


# Thousands of DataValues and Variants per second while a gateway starts: made field by field, without the
# checks and type guessing of their __init__ (the fields are those of the snapshot's values, already checked).
def _variant(value: object, kind: ua.VariantType, dimensions: list[int] | None, is_array: bool | None) -> ua.Variant:
    made = ua.Variant.__new__(ua.Variant)
    made.Value, made.VariantType, made.Dimensions, made.is_array = value, kind, dimensions, is_array  # type: ignore[assignment]
    return made


def _child_reference(parent: NodeData) -> ua.NodeId:
    """The reference asyncua's instantiate makes from ``parent`` to a new instance: Organizes from a
    FolderType object, else HasComponent (``_rdesc_from_node`` in asyncua/common/copy_node_util.py)."""
    folder = any(
        r.IsForward and r.ReferenceTypeId == _HAS_TYPE_DEFINITION and r.NodeId == _FOLDER_TYPE
        for r in parent.references
    )
    return _ORGANIZES if folder else _HAS_COMPONENT


def _reference(like: ua.ReferenceDescription, target: ua.NodeId) -> ua.ReferenceDescription:
    made = ua.ReferenceDescription.__new__(ua.ReferenceDescription)
    made.ReferenceTypeId, made.IsForward, made.NodeId = like.ReferenceTypeId, like.IsForward, target
    made.BrowseName, made.DisplayName = like.BrowseName, like.DisplayName
    made.NodeClass, made.TypeDefinition = like.NodeClass, like.TypeDefinition
    return made


def _data_value(variant: ua.Variant | None, like: ua.DataValue) -> ua.DataValue:
    made = ua.DataValue.__new__(ua.DataValue)
    made.Encoding = like.Encoding
    made.Value = variant
    made.StatusCode = like.StatusCode
    made.SourceTimestamp, made.ServerTimestamp = like.SourceTimestamp, like.ServerTimestamp
    made.SourcePicoseconds, made.ServerPicoseconds = like.SourcePicoseconds, like.ServerPicoseconds
    return made
