"""The standard address space cache: built once, used after, and never in the way of a start."""

from __future__ import annotations

from pathlib import Path

import pytest
from asyncua import Server, ua

from sdk.opcua import shelf
from sdk.opcua.shelf import CACHE_ENV, NAME, init_server, is_cached


async def _server_works(server: Server) -> None:
    namespaces = await server.get_node(ua.ObjectIds.Server_NamespaceArray).read_value()
    assert namespaces[0] == "http://opcfoundation.org/UA/"
    names = {(await n.read_browse_name()).Name for n in await server.nodes.root.get_children()}
    assert {"Objects", "Types", "Views"} <= names
    ns = await server.register_namespace("urn:test:shelf")
    node = await server.nodes.objects.add_variable(ua.NodeId("X", ns), f"{ns}:X", 1.5)
    assert await node.read_value() == 1.5


async def test_built_once_then_loaded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    assert not is_cached()  # the demo says the first start takes longer
    first = Server()
    await init_server(first)
    await _server_works(first)
    assert is_cached()
    (folder,) = (tmp_path / "cache").iterdir()
    assert (folder / NAME).is_file() and folder.stat().st_mode & 0o077 == 0
    second = Server()
    await init_server(second)
    assert type(second.iserver.aspace._nodes).__name__ == "LazyLoadingDict"  # nodes come from the shelf
    await _server_works(second)


async def test_a_damaged_cache_is_removed_and_the_server_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    folder = shelf._folder()
    folder.mkdir(parents=True)
    (folder / NAME).touch()
    (folder / f"{NAME}.dir").write_text("not an index\n")
    (folder / f"{NAME}.dat").write_bytes(b"\x00" * 100)
    server = Server()
    await init_server(server)
    await _server_works(server)
    assert not folder.exists()


async def test_an_unwritable_cache_only_costs_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "file").write_text("a file where the cache folder would be")
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "file" / "cache"))
    server = Server()
    await init_server(server)
    await _server_works(server)
