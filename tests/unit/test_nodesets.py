"""The information models: DI imports into asyncua, ModelLine's NodeSet is generated and in sync."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from asyncua import Server, ua

import nodesets
from nodesets import generate, ids
from nodesets.model import PIPELINE_STATE
from sdk.opcua.shelf import init_server


def test_committed_nodeset_matches_its_declarations() -> None:
    assert generate.TARGET.read_text(encoding="utf-8") == generate.render(), "run: python -m nodesets.generate"


def test_committed_identifiers_match_the_nodesets() -> None:
    assert generate.IDS_TARGET.read_text(encoding="utf-8") == generate.render_ids(), "run: python -m nodesets.generate"


def test_generated_identifiers_name_what_the_nodesets_say() -> None:
    assert [(m.label, int(m)) for m in ids.PipelineState] == [(n, i) for i, (n, _) in enumerate(PIPELINE_STATE.values)]
    assert [m.label for m in ids.DeviceHealth] == [
        "NORMAL",
        "FAILURE",
        "CHECK_FUNCTION",
        "OFF_SPEC",
        "MAINTENANCE_REQUIRED",
    ]
    assert [(m.label, int(m), m.node) for m in ids.InstallationState] == [
        ("Idle", 1, 271),
        ("Installing", 2, 273),
        ("Error", 3, 275),
    ]
    assert ids.DeploymentState.from_label("RolledBack") is ids.DeploymentState.ROLLED_BACK
    with pytest.raises(ValueError, match="not a DeploymentState"):
        ids.DeploymentState.from_label("Done")


def test_exactly_the_nine_design_tool_nodes_are_dropped() -> None:
    text, dropped = nodesets.without_design_tool_only(nodesets.DI_NODESET)
    assert dropped == 9
    root = ET.fromstring(text)
    ids = {el.get("NodeId") for el in root}
    assert not ids & {f"ns=1;i={n}" for n in (73, 74, 75, 90, 91, 92, 93, 94, 95)}  # the FunctionalGroup templates
    names = {el.get("BrowseName") for el in root}
    assert "1:SoftwareUpdateType" in names and "1:CachedLoadingType" in names
    assert "DesignToolOnly" not in text


@pytest.mark.e2e
async def test_both_models_load_into_asyncua() -> None:
    server = Server()
    await init_server(server)
    ns = await nodesets.load(server)
    assert ns.di != ns.modelline
    for number, name in ((1, "SoftwareUpdateType"), (171, "CachedLoadingType"), (249, "InstallationStateMachineType")):
        assert (await server.get_node(ua.NodeId(number, ns.di)).read_browse_name()).Name == name
    pipeline = server.get_node(ua.NodeId(1002, ns.modelline))
    children = {(await c.read_browse_name()).Name for c in await pipeline.get_children()}
    assert {"Model", "Version", "State", "InferenceCount", "SkippedCount", "Outputs", "SetBinding"} <= children
    device_type = server.get_node(ua.NodeId(1003, ns.modelline))
    supertypes = await device_type.get_referenced_nodes(
        refs=ua.ObjectIds.HasSubtype, direction=ua.BrowseDirection.Inverse
    )
    assert [t.nodeid for t in supertypes] == [ua.NodeId(1002, ns.di)]  # a concrete DI DeviceType
    strings = await (
        await server.get_node(ua.NodeId(PIPELINE_STATE.number, ns.modelline)).get_child("0:EnumStrings")
    ).read_value()
    assert [s.Text for s in strings] == [name for name, _ in PIPELINE_STATE.values]
