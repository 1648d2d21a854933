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
from typing import Any

from asyncua import Node, ua
from asyncua.server.address_space import AddressSpace, AttributeValue, NodeData
from asyncua.server.internal_session import InternalSession
from asyncua.ua.uaerrors import BadNodeIdExists, BadParentNodeIdInvalid

_HAS_TYPE_DEFINITION = ua.NodeId(ua.ObjectIds.HasTypeDefinition)  # type: ignore[arg-type]
_FOLDER_TYPE = ua.NodeId(ua.ObjectIds.FolderType)  # type: ignore[arg-type]
_ORGANIZES = ua.NodeId(ua.ObjectIds.Organizes)  # type: ignore[arg-type]
_HAS_COMPONENT = ua.NodeId(ua.ObjectIds.HasComponent)  # type: ignore[arg-type]
_HAS_SUBTYPE = ua.NodeId(ua.ObjectIds.HasSubtype)  # type: ignore[arg-type]
_HIERARCHICAL = ua.NodeId(ua.ObjectIds.HierarchicalReferences)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class _Node:
    """One node of a snapshot, sorted out once so that each copy only fills in its NodeIds."""

    relative: str  # its NodeId's identifier after the root's (``""`` for the root)
    attributes: dict[ua.AttributeIds, ua.DataValue]  # all of them, in order: a copy shares their DataValues
    node_id: ua.DataValue | None  # its NodeId attribute, which a copy replaces with its own
    stamped: ua.DataValue | None  # its Value, if it has timestamps: a copy's is stamped with the time it was made
    # Its references, each with the target's relative id (None: outside the subtree) and whether it is the
    # root's reference back to the snapshot's parent.
    references: list[tuple[ua.ReferenceDescription, str | None, bool]]


@dataclass(frozen=True)
class _Snapshot:
    """One instance's subtree with NodeIds relative to its root (``""`` is the root)."""

    namespace: int
    root: ua.NodeId  # the NodeId of the instance the snapshot was taken of
    parent: ua.NodeId  # and of its parent
    nodes: list[_Node]  # the root first
    from_parent: ua.ReferenceDescription  # the parent's forward reference to the root
    root_name: str  # the root's BrowseName when the snapshot was taken (its DisplayName may repeat it)
    display_is_name: bool  # whether the root's DisplayName was its BrowseName's name (a copy shows its own)


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
    """The node's children (hierarchical references) by browse name, in one Browse.

    On the server's own session the node's references are read from the address space as its Browse would
    (OPC 10000-4 5.8.2: forward references of HierarchicalReferences or a subtype), without asyncua's
    walk of the reference type hierarchy for each reference of each node (a gateway start does this for
    every stored version and device)."""
    aspace = _address_space(node)
    data = aspace.get(node.nodeid) if aspace is not None else None
    if data is None:
        return {str(d.BrowseName.Name): Node(node.session, d.NodeId) for d in await node.get_children_descriptions()}
    known = _hierarchical.setdefault(aspace, {})  # type: ignore[arg-type]
    return {
        str(r.BrowseName.Name): Node(node.session, r.NodeId)
        for r in data.references
        if r.IsForward and _is_hierarchical(aspace, known, r.ReferenceTypeId)  # type: ignore[arg-type]
    }


# Per address space: whether a reference type is HierarchicalReferences or a subtype of it (a type's place in
# the hierarchy never changes once it is in the address space).
_hierarchical: weakref.WeakKeyDictionary[AddressSpace, dict[ua.NodeId, bool]] = weakref.WeakKeyDictionary()


def _is_hierarchical(aspace: AddressSpace, known: dict[ua.NodeId, bool], reference_type: ua.NodeId) -> bool:
    found = known.get(reference_type)
    if found is None:
        found, current, seen = False, reference_type, set()
        while current not in seen:  # up the inverse HasSubtype references
            if current == _HIERARCHICAL:
                found = True
                break
            seen.add(current)
            data = aspace.get(current)
            supertype = (
                next((r.NodeId for r in data.references if not r.IsForward and r.ReferenceTypeId == _HAS_SUBTYPE), None)
                if data is not None
                else None
            )
            if supertype is None:
                break
            current = supertype
        if reference_type in aspace:
            known[reference_type] = found
    return found


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
        attributes: dict[ua.AttributeIds, ua.DataValue] = {}
        for attribute, held in data.attributes.items():
            if held.value_callback is not None or held.value is None:
                return None
            attributes[attribute] = held.value
        value = attributes.get(ua.AttributeIds.Value)
        timed = value is not None and (value.SourceTimestamp is not None or value.ServerTimestamp is not None)
        stamped = value if timed else None
        references = []
        for ref in data.references:
            target = _relative(root, ref.NodeId)
            if (ref.NodeId in inside) != (target is not None):
                return None  # a reference the copy could not rewrite
            to_parent = not relative and target is None and not ref.IsForward and ref.NodeId == parent
            references.append((copy.copy(ref), target, to_parent))
        nodes.append(_Node(relative, attributes, attributes.get(ua.AttributeIds.NodeId), stamped, references))
    parent_data = aspace.get(parent)
    from_parent = (
        next((r for r in parent_data.references if r.IsForward and r.NodeId == root), None) if parent_data else None
    )
    root_data = aspace.get(root)
    if from_parent is None or root_data is None or not nodes or nodes[0].relative:
        return None
    name = root_data.attributes[ua.AttributeIds.BrowseName].value
    root_name = (name.Value.Value.Name if name and name.Value and name.Value.Value else "") or ""
    shown = root_data.attributes.get(ua.AttributeIds.DisplayName)
    display_is_name = (
        shown is not None
        and shown.value is not None
        and shown.value.Value is not None
        and shown.value.Value.Value == ua.LocalizedText(root_name)
    )
    return _Snapshot(root.NamespaceIndex, root, parent, nodes, copy.copy(from_parent), root_name, display_is_name)


class _Attribute(AttributeValue):
    """A copy's attribute: an asyncua AttributeValue whose table of data-change callbacks is made when first
    used. asyncua gives every attribute of every node a dict of its own for them, yet only attributes that are
    written or monitored (values, mostly) ever use it: a copy's ~14 attributes per node would hold one empty
    dict each (64 bytes; ~185 KB for one device's Model Monitor figures and conditions)."""

    value_callback = None  # asyncua sets these per attribute where it needs them
    value_setter = None

    def __init__(self, value: ua.DataValue) -> None:  # no super().__init__: it makes the dict
        self.value = value

    @property
    def datachange_callbacks(self) -> dict[int, Callable[..., Any]]:  # type: ignore[override]
        try:
            return self.__dict__["_callbacks"]  # type: ignore[no-any-return]
        except KeyError:
            made: dict[int, Callable[..., Any]] = {}
            self.__dict__["_callbacks"] = made
            return made


def _copy(
    aspace: AddressSpace, snapshot: _Snapshot, parent: ua.NodeId, root: ua.NodeId, bname: ua.QualifiedName
) -> None:
    """Write the snapshot's nodes with ids under ``root``, the root named ``bname`` under ``parent``.

    A gateway starts by copying ~40 nodes per stored version and device, thousands of times: everything that
    depends only on the snapshot was sorted out when it was taken (_take), and the NodeIds, DataValues and
    references are made field by field."""
    if root in aspace:
        raise BadNodeIdExists(f"{root} exists already")  # type: ignore[no-untyped-call]
    parent_data = aspace.get(parent)
    if parent_data is None:
        raise BadParentNodeIdInvalid(f"no parent {parent}")  # type: ignore[no-untyped-call]
    prefix, namespace = str(root.Identifier), root.NamespaceIndex
    now = datetime.now(UTC)
    kind = _child_reference(parent_data)
    display = ua.LocalizedText(bname.Name) if snapshot.display_is_name else None  # where it showed its BrowseName
    ids = {node.relative: _string_id(prefix + node.relative, namespace) for node in snapshot.nodes}
    made: list[NodeData] = []
    for node in snapshot.nodes:
        nodeid = ids[node.relative]
        data = NodeData(nodeid)
        attributes: dict[ua.AttributeIds, AttributeValue] = {
            attribute: _Attribute(value) for attribute, value in node.attributes.items()
        }
        data.attributes = attributes
        if node.node_id is not None:  # replacing a key keeps its place
            own = _data_value(_variant(nodeid, ua.VariantType.NodeId, None, False), node.node_id)
            attributes[ua.AttributeIds.NodeId] = _Attribute(own)
        if node.stamped is not None:
            attributes[ua.AttributeIds.Value] = _Attribute(_stamped(node.stamped, now))
        references = data.references
        for ref, target, to_parent in node.references:  # those to nodes outside the subtree are shared
            if target is not None:
                new_ref = _reference(ref, ids[target])
                if not target:  # a reference to the root describes it by its name
                    new_ref.BrowseName = bname
                    new_ref.DisplayName = display if display is not None else new_ref.DisplayName
            elif to_parent:
                new_ref = _reference(ref, parent)
                new_ref.ReferenceTypeId = kind
            else:
                new_ref = ref
            references.append(new_ref)
        made.append(data)
    top = made[0].attributes  # the root: its own name
    top[ua.AttributeIds.BrowseName] = _Attribute(ua.DataValue(ua.Variant(bname, ua.VariantType.QualifiedName)))
    if display is not None:
        top[ua.AttributeIds.DisplayName] = _Attribute(ua.DataValue(ua.Variant(display, ua.VariantType.LocalizedText)))
    for data in made:
        aspace[data.nodeid] = data
    from_parent = dataclasses.replace(snapshot.from_parent, NodeId=root, BrowseName=bname, ReferenceTypeId=kind)
    if display is not None:
        from_parent.DisplayName = display
    parent_data.references.append(from_parent)


def _stamped(value: ua.DataValue, now: datetime) -> ua.DataValue:
    """The copy's own Value: the snapshot's, stamped with the time it was made.

    The values themselves are shared, as asyncua's instantiate shares the declarations' values (it copies the
    attributes it reads): a write replaces an attribute's DataValue, it never changes one in place."""
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
    FolderType object, else HasComponent (``_rdesc_from_node`` in asyncua/common/copy_node_util.py).

    A node has one type definition, among its first references: the search stops there (a folder or model
    with a thousand children is not scanned for each new one)."""
    for ref in parent.references:
        if ref.IsForward and ref.ReferenceTypeId == _HAS_TYPE_DEFINITION:
            return _ORGANIZES if ref.NodeId == _FOLDER_TYPE else _HAS_COMPONENT
    return _HAS_COMPONENT


def _string_id(identifier: str, namespace: int) -> ua.NodeId:
    made = ua.NodeId.__new__(ua.NodeId)
    made.Identifier, made.NamespaceIndex, made.NodeIdType = identifier, namespace, ua.NodeIdType.String  # type: ignore[assignment]
    return made


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
