"""A cache of the address space with the DI and ModelLine NodeSets imported, so a warm start skips the XML.

Importing the two NodeSets (``nodesets.load``) and filling the null values of the standard
instances took ~0.65 s + ~0.3 s of every server start, after the standard address space had come
from its own cache (``shelf``). Here both are done once, on a scratch server, and its whole address
space is written to a second shelf keyed by the NodeSet files' SHA-256, the asyncua and the Python
version; a server whose cache is warm starts from that shelf instead (asyncua loads its nodes lazily).

Two things an import does live outside the address space and are redone from a small manifest
kept beside the shelf: the server's NamespaceArray (asyncua's ``init`` writes it back to the standard
namespace alone, OPC 10000-5 6.3.3 Server object), and the Python classes asyncua generates for the
NodeSets' structures, enumerations, OptionSets and aliases of built-in types (registered in the
order the import made them, so that a structure finds the types of its fields).

Like the standard cache, it is built in a private folder and renamed into place in one step, and a
cache that cannot be written or read only costs the slow start.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import pickle
import shelve
import shutil
import sys
from pathlib import Path
from typing import Any

import asyncua
from asyncua import Server, ua
from asyncua.common.structures104 import (
    load_basetype_alias_xml_import,
    load_custom_struct_xml_import,
    load_enum_xml_import,
)
from asyncua.server.address_space import NodeData

import nodesets
from nodesets import DI_NODESET, MODELLINE_NODESET
from nodesets.ids import DI_URI, MODELLINE_URI
from sdk.opcua.ids import node_id
from sdk.opcua.shelf import cache_dir, init_server, new_build_folder, publish
from sdk.opcua.values import fill_null_values

NAME = "models-address-space"
MANIFEST = "manifest.json"
FORMAT = 2  # raise when what is cached, or how, changes

_log = logging.getLogger(__name__)


def _folder() -> Path:
    digest = hashlib.sha256(f"{FORMAT}".encode())
    for path in (DI_NODESET, MODELLINE_NODESET):
        digest.update(path.read_bytes())
    python = f"{sys.version_info[0]}.{sys.version_info[1]}"
    return cache_dir() / f"asyncua-{asyncua.__version__}-py{python}-models-{digest.hexdigest()[:16]}"


def is_cached() -> bool:
    """Whether the address space with the NodeSets imported is cached (else the next server start builds it)."""
    folder = _folder()
    return (folder / NAME).is_file() and (folder / MANIFEST).is_file()


async def init_with_models(server: Server) -> nodesets.Namespaces | None:
    """``server.init()`` with DI and ModelLine imported and every standard instance's null value filled,
    from the cache (built first when missing); None when there is no cache to use: the caller then
    imports the NodeSets itself (``nodesets.load``) on a server initialised from the standard cache."""
    folder = await asyncio.to_thread(_folder)
    if not is_cached():
        await _build(folder)
    manifest_path, shelf = folder / MANIFEST, folder / NAME
    try:
        manifest = json.loads(await asyncio.to_thread(manifest_path.read_text, encoding="utf-8"))
    except (OSError, ValueError) as exc:
        manifest = {"format": f"unreadable ({exc})"}
    if manifest.get("format") != FORMAT:
        _log.info("no NodeSet address space cache (%s): importing the NodeSets", manifest.get("format"))
        await init_server(server)
        return None
    try:
        await server.init(shelf_file=shelf)
        return await _restore(server, manifest)
    except Exception as exc:  # a damaged cache must never keep a server from starting
        _log.warning("NodeSet address space cache %s unusable (%s); removed, importing the NodeSets", folder, exc)
        await asyncio.to_thread(shutil.rmtree, folder, True)
        await server.init()
        return None


async def _restore(server: Server, manifest: dict[str, Any]) -> nodesets.Namespaces:
    """The NamespaceArray and the generated DataType classes of the import the shelf holds."""
    array = server.get_node(node_id(ua.ObjectIds.Server_NamespaceArray))
    current = await array.read_value()
    uris = [manifest["namespaces"][0], *current[1:2], *manifest["namespaces"][2:]]
    await array.write_value(ua.Variant(uris, ua.VariantType.String))
    for entry in manifest["datatypes"]:
        nodeid = ua.NodeId.from_string(entry["nodeid"])
        node = server.get_node(nodeid)
        attrs = ua.DataTypeAttributes()
        attrs.DisplayName = await node.read_display_name()
        if entry["kind"] == "alias":
            await load_basetype_alias_xml_import(
                server, attrs.DisplayName.Text or "", nodeid, ua.NodeId.from_string(entry["parent"])
            )
            continue
        attrs.DataTypeDefinition = await node.read_data_type_definition()  # type: ignore[attr-defined]
        if entry["kind"] == "struct":
            await load_custom_struct_xml_import(nodeid, attrs)
        else:
            await load_enum_xml_import(nodeid, attrs, entry["kind"] == "optionset")
    return nodesets.Namespaces(
        di=await server.get_namespace_index(DI_URI),
        modelline=await server.get_namespace_index(MODELLINE_URI),
    )


async def _build(folder: Path) -> None:
    """Import the NodeSets into a scratch server and write its address space and manifest to ``folder``."""
    build = await asyncio.to_thread(new_build_folder, folder)
    if build is None:
        return
    scratch = Server()
    await init_server(scratch)
    added: list[ua.NodeId] = []
    await nodesets.load(scratch, added)
    await fill_null_values(scratch.nodes.objects)
    manifest = {
        "format": FORMAT,
        "namespaces": await scratch.get_node(node_id(ua.ObjectIds.Server_NamespaceArray)).read_value(),
        "datatypes": await _datatypes(scratch, added),
    }
    try:
        await asyncio.to_thread(_write, scratch, build, manifest)
    except Exception as exc:  # e.g. a full disk: start without the cache
        _log.info("NodeSet address space cache not written (%s)", exc)
        await asyncio.to_thread(shutil.rmtree, build, True)
        return
    await asyncio.to_thread(publish, build, folder, NAME)


async def _datatypes(server: Server, added: list[ua.NodeId]) -> list[dict[str, str]]:
    """The DataTypes of the import that asyncua made Python classes for, in the order it made them
    (asyncua's XmlImporter.add_datatype: a definition below Enumeration, Structure or OptionSet; without one,
    an alias of its parent unless that is Structure)."""
    found = []
    structure = node_id(ua.ObjectIds.Structure)
    for nodeid in added:
        node = server.get_node(nodeid)
        if await node.read_node_class() != ua.NodeClass.DataType:
            continue
        parent = (await node.get_referenced_nodes(ua.ObjectIds.HasSubtype, ua.BrowseDirection.Inverse))[0].nodeid
        try:
            definition = await node.read_data_type_definition()
        except ua.UaStatusCodeError:
            definition = None
        if definition is None:
            # An alias of a built-in type (the importer registers it); a DataType whose definition the importer
            # could not place (DI's OptionSets of UInt16 and UInt32) has none either and got no class.
            if parent != structure and nodeid in ua.uatypes.basetype_by_datatype:
                found.append({"nodeid": nodeid.to_string(), "kind": "alias", "parent": parent.to_string()})
        elif isinstance(definition, ua.StructureDefinition):
            found.append({"nodeid": nodeid.to_string(), "kind": "struct"})
        elif parent == node_id(ua.ObjectIds.Enumeration):
            found.append({"nodeid": nodeid.to_string(), "kind": "enum"})
        else:
            found.append({"nodeid": nodeid.to_string(), "kind": "optionset"})
    return found


def _write(server: Server, build: Path, manifest: dict[str, Any]) -> None:
    """Every node of ``server`` (those still in the standard shelf too) into ``build``, without callbacks."""
    nodes: Any = server.iserver.aspace._nodes
    with shelve.open(str(build / NAME), "n", protocol=pickle.HIGHEST_PROTOCOL) as out:
        source = getattr(nodes, "source", None)  # asyncua's LazyLoadingDict: untouched nodes are in the shelf
        if source is not None:
            for key in source:
                out[key] = source[key]
        cache = nodes.cache if source is not None else nodes
        for nodeid, data in cache.items():
            out[nodeid.to_string()] = _without_callbacks(data)
    (build / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")


def _without_callbacks(data: NodeData) -> NodeData:
    """A picklable copy: a server links its own callbacks (methods, values, data changes) after loading."""
    clean = NodeData(data.nodeid)
    clean.references = list(data.references)
    for attribute, held in data.attributes.items():
        clean.attributes[attribute] = type(held)(held.value)  # type: ignore[arg-type]
    return clean
