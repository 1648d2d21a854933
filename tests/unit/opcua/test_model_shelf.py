"""The address space with the NodeSets imported, cached: a warm start is the imported one, without the import."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from asyncua import Server, ua

import nodesets
from sdk.opcua import model_shelf
from sdk.opcua.ids import node_id
from sdk.opcua.model_shelf import init_with_models, is_cached
from sdk.opcua.shelf import CACHE_ENV, init_server
from sdk.opcua.values import fill_null_values


def _crawl(server: Server) -> dict[str, Any]:
    """Every node reachable from Root by forward references, with its attributes and references (values holding
    a time left out: start, current and build times differ between any two servers)."""
    aspace = server.iserver.aspace
    found: dict[str, Any] = {}
    pending = [node_id(ua.ObjectIds.RootFolder)]
    while pending:
        nodeid = pending.pop()
        if nodeid.to_string() in found:
            continue
        data = aspace[nodeid]
        attributes = {}
        for attribute, held in data.attributes.items():
            value = held.value.Value.Value if held.value is not None and held.value.Value is not None else None
            timed = isinstance(value, datetime | ua.ServerStatusDataType | ua.BuildInfo)
            if not timed and held.value_callback is None:
                attributes[int(attribute)] = repr(value)
        refs = sorted((r.ReferenceTypeId.to_string(), r.IsForward, r.NodeId.to_string()) for r in data.references)
        found[nodeid.to_string()] = (attributes, refs)
        pending.extend(r.NodeId for r in data.references if r.IsForward and r.NodeId in aspace)
    return found


async def _imported() -> tuple[Server, nodesets.Namespaces]:
    server = Server()
    await init_server(server)
    ns = await nodesets.load(server)
    await fill_null_values(server.nodes.objects)
    return server, ns


async def test_a_warm_start_has_the_imported_address_space(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    assert not is_cached()
    cold = Server()
    assert await init_with_models(cold) is not None  # builds the cache, then starts from it
    assert is_cached()
    warm = Server()
    ns = await init_with_models(warm)
    assert type(warm.iserver.aspace._nodes).__name__ == "LazyLoadingDict"  # nodes come from the shelf
    reference, reference_ns = await _imported()
    assert ns == reference_ns
    assert (
        await warm.get_node(ua.ObjectIds.Server_NamespaceArray).read_value()
        == await reference.get_node(ua.ObjectIds.Server_NamespaceArray).read_value()
    )
    crawled = _crawl(warm)
    assert len(crawled) > 5000
    assert crawled == _crawl(reference)
    assert await fill_null_values(warm.nodes.objects) == 0  # filled before it was cached
    # The NodeSets' enumerations and structures have their classes (DI's FetchResultDataType encodes).
    for entry in [e for e in (await _manifest())["datatypes"] if e["kind"] != "alias"]:
        nodeid = ua.NodeId.from_string(entry["nodeid"])
        assert nodeid in ua.extension_objects_by_datatype or nodeid in ua.enums_by_datatype, entry


async def _manifest() -> dict[str, Any]:
    import json  # noqa: PLC0415

    return dict(json.loads((model_shelf._folder() / model_shelf.MANIFEST).read_text(encoding="utf-8")))


async def test_a_damaged_cache_is_removed_and_the_server_imports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    folder = model_shelf._folder()
    folder.mkdir(parents=True)
    (folder / model_shelf.NAME).touch()
    (folder / f"{model_shelf.NAME}.dir").write_text("not an index\n")
    (folder / f"{model_shelf.NAME}.dat").write_bytes(b"\x00" * 100)
    (folder / model_shelf.MANIFEST).write_text(f'{{"format": {model_shelf.FORMAT}, "namespaces": [], "datatypes": []}}')
    server = Server()
    assert await init_with_models(server) is None  # the caller imports
    assert not folder.exists()
    ns = await nodesets.load(server)
    assert ns.modelline > 0


async def test_an_unwritable_cache_only_costs_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "file").write_text("a file where the cache folder would be")
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "file" / "cache"))
    server = Server()
    assert await init_with_models(server) is None
    assert (await nodesets.load(server)).di > 0
