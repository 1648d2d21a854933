"""Building NodeIds and QualifiedNames in one place (asyncua types their parts as NewTypes)."""

from __future__ import annotations

from datetime import datetime

from asyncua import Node, ua
from asyncua.common.manage_nodes import delete_nodes

from sdk.opcua.values import new_instance


def node_id(identifier: int | str, namespace: int = 0) -> ua.NodeId:
    """A numeric or string NodeId."""
    return ua.NodeId(identifier, namespace)  # type: ignore[arg-type]


def auto_id(namespace: int) -> ua.NodeId:
    """A null NodeId in ``namespace``: the server assigns the next free numeric id."""
    return ua.NodeId(NamespaceIndex=namespace)  # type: ignore[arg-type]


ESCAPE = "%"


def escape_part(name: str) -> str:
    """One part of a path NodeId: '%' and '.' written as %25 and %2E, so the part holds no separator.

    Parts are joined with '.', so without this ``("p", "1.0.0-x.1.2.3")`` and
    ``("p.1.0.0-x", "1.2.3")`` would give the same NodeId. Escaped parts never hold a
    '.', hence splitting a path at '.' gives back the parts: different name tuples can
    never give the same NodeId. Names without '.' or '%' stay as they are.
    """
    return name.replace(ESCAPE, "%25").replace(".", "%2E")


def path_id(parent: ua.NodeId, *names: str) -> ua.NodeId:
    """The string NodeId ``<parent>.<name>...`` in the parent's namespace, each name escaped (``escape_part``).

    asyncua gives instance children the id ``<parent>.<browse name>``; the browse
    names of type children hold no '.', so they cannot meet an escaped user name.
    """
    return node_id(".".join([text_of(parent), *(escape_part(n) for n in names)]), parent.NamespaceIndex)


def qname(name: str, namespace: int) -> ua.QualifiedName:
    """A browse name."""
    return ua.QualifiedName(name, namespace)


def status_code(code: int) -> ua.StatusCode:
    """A StatusCode from its numeric value."""
    return ua.StatusCode(code)  # type: ignore[arg-type]


def data_value(
    value: ua.Variant | None = None,
    status: int = 0,
    source_time: datetime | None = None,
    server_time: datetime | None = None,
) -> ua.DataValue:
    """A DataValue with its status and timestamps."""
    return ua.DataValue(
        value if value is not None else ua.Variant(),
        StatusCode=status_code(status),
        SourceTimestamp=source_time,  # type: ignore[arg-type]
        ServerTimestamp=server_time,  # type: ignore[arg-type]
    )


def text_of(node: ua.NodeId) -> str:
    """The identifier of a NodeId as text (for deriving child ids)."""
    identifier = node.Identifier
    return identifier.decode() if isinstance(identifier, bytes) else str(identifier)


async def delete_subtree(node: Node) -> None:
    """Delete ``node`` and everything below it, and the references that lead into them.

    asyncua's DeleteNodes with DeleteTargetReferences (OPC 10000-4 5.7.5) looks through every
    reference of every node in the server once per deleted node: tens of milliseconds per node
    on a ModelLine server, on the event loop, while predictions wait. The references into the
    subtree are the inverse halves stored on its own nodes, so those are removed with
    DeleteReferences (5.7.4) and the nodes deleted without the scan.
    """
    nodes: list[Node] = []
    pending = [node]
    while pending:
        current = pending.pop()
        nodes.append(current)
        pending.extend(await current.get_children())
    inside = {n.nodeid for n in nodes}
    leading_in = [
        ua.DeleteReferencesItem(
            SourceNodeId=ref.NodeId,
            ReferenceTypeId=ref.ReferenceTypeId,
            IsForward=True,
            TargetNodeId=n.nodeid,
            DeleteBidirectional=False,
        )
        for n in nodes
        for ref in await n.get_references(direction=ua.BrowseDirection.Inverse)
        if ref.NodeId not in inside
    ]
    if leading_in:
        await node.session.delete_references(leading_in)
    await delete_nodes(node.session, nodes, recursive=False, delete_target_references=False)


async def instantiate_in_place(node: Node, type_id: ua.NodeId, optional: bool = True) -> Node:
    """Replace an object created by instantiate() with a full instance of its type, same NodeId and name.

    asyncua instantiates a component's children from the instance declaration in
    the type, not from the component's own type definition; a declaration such as
    ``Upload: TemporaryFileTransferType`` therefore arrives without its methods.
    """
    parent = await node.get_parent()
    if parent is None:
        raise ValueError(f"{node} has no parent")
    nodeid, bname = node.nodeid, await node.read_browse_name()
    await delete_subtree(node)
    return await new_instance(parent, Node(node.session, type_id), nodeid=nodeid, bname=bname, optional=optional)
