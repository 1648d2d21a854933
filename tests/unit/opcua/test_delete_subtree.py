"""Deleting a subtree leaves no reference to a deleted node anywhere in the server."""

from __future__ import annotations

from asyncua import Server, ua

from sdk.opcua.ids import delete_subtree
from sdk.opcua.shelf import init_server


async def test_subtree_and_every_reference_into_it_are_gone() -> None:
    server = Server()
    await init_server(server)
    ns = await server.register_namespace("urn:test:delete")
    objects = server.nodes.objects
    keep = await objects.add_object(ua.NodeId("Keep", ns), f"{ns}:Keep")
    doomed = await objects.add_object(ua.NodeId("Doomed", ns), f"{ns}:Doomed")
    value = await doomed.add_variable(ua.NodeId("Doomed.Value", ns), f"{ns}:Value", 1.0)
    await value.add_property(ua.NodeId("Doomed.Value.Units", ns), f"{ns}:Units", "bar")
    await doomed.add_method(ua.NodeId("Doomed.Reset", ns), f"{ns}:Reset", lambda parent: [], [], [])
    await keep.add_reference(value, ua.ObjectIds.Organizes, forward=True, bidirectional=True)  # from outside
    gone = {
        doomed.nodeid,
        value.nodeid,
        ua.NodeId("Doomed.Value.Units", ns),
        ua.NodeId("Doomed.Reset", ns),
    }

    await delete_subtree(doomed)

    aspace = server.iserver.aspace
    assert not gone & set(aspace.keys())
    dangling = [
        (source, ref.NodeId) for source in aspace.keys() for ref in aspace[source].references if ref.NodeId in gone
    ]
    assert dangling == []
    assert [c.nodeid for c in await keep.get_children(refs=ua.ObjectIds.Organizes)] == []
    assert doomed.nodeid not in [c.nodeid for c in await objects.get_children()]
    assert (await keep.read_browse_name()).Name == "Keep"  # the rest untouched
