"""Copied instances (sdk/opcua/templates.py) are node for node what asyncua's instantiation makes."""

from __future__ import annotations

from typing import Any

import pytest
from asyncua import Server, ua

import nodesets
from nodesets.ids import ModelLine
from sdk.opcua.condition_nodes import ConditionNodes
from sdk.opcua.ids import node_id, qname
from sdk.opcua.shelf import init_server
from sdk.opcua.templates import children_by_name
from sdk.opcua.values import instantiate_filled, new_instance

_SKIPPED = {ua.AttributeIds.NodeId, ua.AttributeIds.BrowseName}


async def _describe(server: Server, root: ua.NodeId) -> dict[str, Any]:
    """Every node under ``root`` by its NodeId relative to the root: its attributes (values without their
    timestamps) and references (targets inside the subtree relative too)."""
    prefix = str(root.Identifier)
    aspace = server.iserver.aspace

    def rel(nodeid: ua.NodeId) -> object:
        text = str(nodeid.Identifier)
        inside = nodeid.NamespaceIndex == root.NamespaceIndex and (text == prefix or text.startswith(prefix + "."))
        return ("inside", text[len(prefix) :]) if inside else nodeid

    found: dict[str, Any] = {}
    pending = [root]
    while pending:
        current = pending.pop()
        data = aspace[current]
        attributes = {}
        for attribute, held in data.attributes.items():
            if attribute in _SKIPPED and current == root:
                continue
            value = held.value
            assert value is not None
            attributes[attribute] = (value.Value, value.StatusCode) if attribute != ua.AttributeIds.NodeId else None
        references = sorted(
            (
                str(r.ReferenceTypeId),
                r.IsForward,
                str(rel(r.NodeId)),
                str(r.BrowseName),
                r.NodeClass,
                str(r.TypeDefinition),
            )
            for r in data.references
            if not (
                current == root and not r.IsForward and r.ReferenceTypeId != node_id(ua.ObjectIds.HasTypeDefinition)
            )
        )
        found[str(rel(current))] = (attributes, references)
        for ref in data.references:
            if ref.IsForward and rel(ref.NodeId) != ref.NodeId and ref.NodeId not in {root}:
                if str(rel(ref.NodeId)) not in found:
                    pending.append(ref.NodeId)
    return found


async def _server() -> tuple[Server, nodesets.Namespaces, int]:
    server = Server()
    await init_server(server)
    ns = await nodesets.load(server)
    return server, ns, await server.register_namespace("urn:test:templates")


async def test_a_copied_instance_is_the_instantiated_one_with_its_own_ids() -> None:
    server, ns, mine = await _server()
    objects = server.nodes.objects
    monitored = server.get_node(node_id(ModelLine.MONITORED_DEVICE_TYPE, ns.modelline))
    first = await new_instance(objects, monitored, node_id("A", mine), qname("A", mine))  # made, remembered
    second = await new_instance(objects, monitored, node_id("B", mine), qname("B", mine))  # copied
    folder = await objects.add_folder(node_id("Elsewhere", mine), qname("Elsewhere", mine))
    twin_ids = await instantiate_filled(folder, monitored, node_id("C", mine), qname("B", mine))  # not copied
    twin = server.get_node(twin_ids[0])
    copied, made = await _describe(server, second.nodeid), await _describe(server, twin.nodeid)
    assert copied == made
    assert len(copied) > 10
    # The copy is browsable from its parent, under its own name, and its children are its own.
    assert (await objects.get_child(f"{mine}:B")).nodeid == second.nodeid
    assert await second.read_browse_name() == qname("B", mine)
    child = (await second.get_children())[0]
    assert str(child.nodeid.Identifier).startswith("B.")
    assert (await child.get_parent()) == second
    assert (await second.read_type_definition()) == monitored.nodeid
    # Writing the copy leaves the first instance (and so the snapshot) alone.
    count = await second.get_child(f"{ns.modelline}:InferenceCount")
    await count.write_value(ua.Variant(7, ua.VariantType.UInt64))
    assert await (await first.get_child(f"{ns.modelline}:InferenceCount")).read_value() == 0
    third = await new_instance(objects, monitored, node_id("D", mine), qname("D", mine))
    assert await (await third.get_child(f"{ns.modelline}:InferenceCount")).read_value() == 0
    # The reference from the parent is the one instantiate makes: Organizes from a folder, else HasComponent.
    owner = await objects.add_object(node_id("Owner", mine), qname("Owner", mine))
    inside = await new_instance(owner, monitored, node_id("Owner.E", mine), qname("E", mine))
    twin_ids = await instantiate_filled(owner, monitored, node_id("Owner.F", mine), qname("E", mine))
    refs = {r.NodeId: r.ReferenceTypeId for r in await owner.get_references(direction=ua.BrowseDirection.Forward)}
    assert refs[inside.nodeid] == refs[twin_ids[0]] == node_id(ua.ObjectIds.HasComponent)
    assert await _describe(server, inside.nodeid) == await _describe(server, twin_ids[0])
    refs = {r.NodeId: r.ReferenceTypeId for r in await objects.get_references(direction=ua.BrowseDirection.Forward)}
    assert refs[second.nodeid] == node_id(ua.ObjectIds.Organizes)


async def test_a_copied_condition_is_the_instantiated_one() -> None:
    server, _, mine = await _server()
    objects = server.nodes.objects
    conditions = ConditionNodes(server)
    alarm = server.get_node(ua.ObjectIds.OffNormalAlarmType)
    sources = [await objects.add_object(node_id(n, mine), qname(n, mine)) for n in ("S1", "S2")]
    await conditions.instantiate(sources[0], alarm, node_id("S1.Alarm", mine), qname("Alarm", mine))
    copied = await conditions.instantiate(sources[1], alarm, node_id("S2.Alarm", mine), qname("Alarm", mine))
    fresh = ConditionNodes(server)  # same server: the snapshot is per server, so this copies too
    assert (await fresh.instantiate(sources[1], alarm, node_id("S2.Other", mine), qname("Other", mine))) is not None
    first = await _describe(server, node_id("S1.Alarm", mine))
    assert await _describe(server, copied.nodeid) == first
    assert {str(("inside", f".{n}")) for n in ("ConfirmedState", "Confirm", "AckedState", "Message")} <= set(first)
    assert (await copied.get_child("0:ConfirmedState")).nodeid == node_id("S2.Alarm.ConfirmedState", mine)


async def test_an_existing_node_id_is_refused() -> None:
    server, _, mine = await _server()
    objects = server.nodes.objects
    file_type = server.get_node(ua.ObjectIds.FileType)
    await new_instance(objects, file_type, node_id("F1", mine), qname("F1", mine))
    await new_instance(objects, file_type, node_id("F2", mine), qname("F2", mine))
    with pytest.raises(ua.UaStatusCodeError) as refused:
        await new_instance(objects, file_type, node_id("F2", mine), qname("F2", mine))
    assert refused.value.code == ua.StatusCodes.BadNodeIdExists


async def test_children_by_name_is_what_a_browse_of_the_node_answers() -> None:
    server, ns, mine = await _server()
    objects = server.nodes.objects
    file_type = server.get_node(ua.ObjectIds.FileType)
    await new_instance(objects, file_type, node_id("F1", mine), qname("F1", mine))
    copied = await new_instance(objects, file_type, node_id("F2", mine), qname("F2", mine))
    await copied.add_variable(node_id("F2.Extra", mine), qname("Extra", mine), 1.0)  # HasComponent
    await copied.add_property(node_id("F2.Note", mine), qname("Note", mine), "")  # HasProperty
    folder = await objects.add_folder(node_id("Folder", mine), qname("Folder", mine))
    await folder.add_object(node_id("Folder.Inside", mine), qname("Inside", mine))  # Organizes
    monitored = server.get_node(node_id(ModelLine.MONITORED_DEVICE_TYPE, ns.modelline))
    device = await new_instance(folder, monitored, node_id("Folder.Device", mine), qname("Device", mine))
    for node in (objects, server.nodes.server, copied, folder, device):
        browsed = {str(d.BrowseName.Name): d.NodeId for d in await node.get_children_descriptions()}
        found = {name: child.nodeid for name, child in (await children_by_name(node)).items()}
        assert found == browsed
        assert found  # and none is empty: the comparison says something
    assert {"Open", "Size", "Extra", "Note"} <= set(await children_by_name(copied))
    assert "HasTypeDefinition" not in str(await children_by_name(copied))
    nowhere = server.get_node(node_id("Nowhere", mine))  # a node that does not exist: as its Browse answers
    assert await children_by_name(nowhere) == {d.BrowseName.Name: d for d in await nowhere.get_children_descriptions()}
