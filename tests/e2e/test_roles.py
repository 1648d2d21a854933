"""Least privilege, role by role, on a real edge node and a real gateway.

Each role (anonymous as Observer, Observer, Operator, Engineer, SecurityAdmin) logs in with a plain
asyncua client and is allowed or denied each call; "allowed" means the call got past the role
check (it may still fail for its arguments: anything but Bad_UserAccessDenied). Every variable of
the address space is tried: only ConfirmationTimeout is writable, by Engineers. NodeManagement is
refused to everybody, and UserExecutable / UserAccessLevel read back per session say the same.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from asyncua import Node, ua

from gateway.app import Gateway
from sdk.file_client import download, upload
from sdk.opcua.users import hash_password
from tests.conftest import Signer
from tests.edge_harness import build_pump, edge_settings, output_node, running_edge, wait_for
from tests.opcua_servers import free_port
from tests.tls import Client, GatewaySettings

pytestmark = pytest.mark.e2e

ML = "http://modelline.io/UA/"
DI = "http://opcfoundation.org/UA/DI/"
USERS = {"obs": "Observer", "op": "Operator", "eng": "Engineer", "admin": "SecurityAdmin"}
SESSIONS = ["anonymous", *USERS]  # anonymous clients are Observers here
RANK = {"anonymous": 1, "obs": 1, "op": 2, "eng": 3, "admin": 4}
DENIED = "BadUserAccessDenied"


def _users(tmp_path: Path) -> Path:
    path = tmp_path / "users.toml"
    text = 'anonymous = "Observer"\n'
    for name, role in USERS.items():
        text += f'[users.{name}]\nrole = "{role}"\npassword = "{hash_password(name + "-password")}"\n'
    path.write_text(text)
    return path


@asynccontextmanager
async def _sessions(url: str) -> AsyncIterator[dict[str, Client]]:
    clients: dict[str, Client] = {}
    try:
        for name in SESSIONS:
            client = Client(url, timeout=10)
            if name != "anonymous":
                client.set_user(name)
                client.set_password(name + "-password")
            await client.connect()
            clients[name] = client
        yield clients
    finally:
        for client in clients.values():
            await client.disconnect()


async def _status(call: Any) -> str:
    """The StatusCode name a service call or method call ends with."""
    try:
        result = await call
    except ua.UaStatusCodeError as exc:
        return type(exc).__name__
    if isinstance(result, list) and result and isinstance(result[0], ua.StatusCode):
        return str(result[0].name)
    return "Good"


async def _read(client: Client, node: ua.NodeId, attribute: ua.AttributeIds) -> Any:
    [value] = await client.uaclient.read(
        ua.ReadParameters(NodesToRead=[ua.ReadValueId(NodeId=node, AttributeId=attribute)])
    )
    return value.Value.Value if value.Value is not None else None


def _may_write(access_level: int) -> bool:
    return bool(access_level & ua.AccessLevel.CurrentWrite.mask)


async def _node_management(client: Client) -> set[str]:
    """Every NodeManagement service (OPC 10000-4 5.7), tried once; the StatusCodes they end with."""
    objects = ua.NodeId(ua.ObjectIds.ObjectsFolder)
    folder = ua.NodeId(ua.ObjectIds.FolderType)
    server = ua.NodeId(ua.ObjectIds.Server)
    add = ua.AddNodesItem(
        ParentNodeId=objects,
        ReferenceTypeId=ua.NodeId(ua.ObjectIds.Organizes),
        RequestedNewNodeId=ua.NodeId("Intruder", 1),
        BrowseName=ua.QualifiedName("Intruder", 1),
        NodeClass=ua.NodeClass.Object,
        NodeAttributes=ua.ObjectAttributes(),
        TypeDefinition=folder,
    )
    reference = ua.AddReferencesItem(
        SourceNodeId=objects,
        ReferenceTypeId=ua.NodeId(ua.ObjectIds.Organizes),
        IsForward=True,
        TargetNodeId=ua.ExpandedNodeId(ua.ObjectIds.RootFolder),
        TargetNodeClass=ua.NodeClass.Object,
    )
    removal = ua.DeleteReferencesItem(
        SourceNodeId=ua.NodeId(ua.ObjectIds.RootFolder),
        ReferenceTypeId=ua.NodeId(ua.ObjectIds.Organizes),
        IsForward=True,
        TargetNodeId=ua.ExpandedNodeId(ua.ObjectIds.ObjectsFolder),
        DeleteBidirectional=True,
    )
    uaclient = client.uaclient
    return {
        await _status(uaclient.add_nodes([add])),
        await _status(
            uaclient.delete_nodes(ua.DeleteNodesParameters(NodesToDelete=[ua.DeleteNodesItem(server, True)]))
        ),
        await _status(uaclient.add_references([reference])),
        await _status(uaclient.delete_references([removal])),
    }


async def _variables(client: Client) -> list[Node]:
    """Every variable under Objects (hierarchical references, each node once)."""
    seen: set[ua.NodeId] = set()
    found: list[Node] = []
    todo = [client.nodes.objects]
    while todo:
        node = todo.pop()
        for ref in await node.get_references(ua.ObjectIds.HierarchicalReferences, ua.BrowseDirection.Forward):
            target = ref.NodeId
            if target in seen:
                continue
            seen.add(target)
            child = client.get_node(target)
            if ref.NodeClass == ua.NodeClass.Variable:
                found.append(child)
            if ref.NodeClass in (ua.NodeClass.Variable, ua.NodeClass.Object):
                todo.append(child)
    return found


async def _writable(client: Client) -> tuple[set[str], set[str]]:
    """As this session: the variables whose UserAccessLevel allows a Write, and those a Write of their own
    value (tried on every variable whose AccessLevel has CurrentWrite) changed."""
    shown, written = set(), set()
    for node in await _variables(client):
        level = await _read(client, node.nodeid, ua.AttributeIds.AccessLevel)
        name = (await node.read_browse_name()).Name
        if _may_write(await _read(client, node.nodeid, ua.AttributeIds.UserAccessLevel)):
            shown.add(name)
        if not _may_write(level or 0):
            continue
        value = await node.read_data_value()
        params = ua.WriteParameters(
            NodesToWrite=[
                ua.WriteValue(NodeId=node.nodeid, AttributeId=ua.AttributeIds.Value, Value=ua.DataValue(value.Value))
            ]
        )
        [result] = await client.uaclient.write(params)
        if result.is_good():
            written.add(name)
        else:
            assert result.name == DENIED, (name, result.name)
    return shown, written


async def _call(node: Node, method: Node, *args: ua.Variant) -> str:
    return await _status(node.call_method(method, *args))


@pytest.mark.timeout(240)
async def test_each_role_on_an_edge_node(tmp_path: Path, signer: Signer, example: Path) -> None:
    settings = edge_settings(tmp_path, signer.trust_dir, anonymous_role="Observer", users_file=_users(tmp_path))
    async with running_edge(settings) as node:
        slot = node.slots["main"]
        pending = await slot.stage_pending(build_pump(example, signer, tmp_path / "pump.mlpkg").path)
        await slot.request_install(pending.manufacturer_uri, pending.version, b"")

        async def installed() -> bool:
            return slot.state.current is not None

        await wait_for(installed, what="the install")
        async with _sessions(node.url) as clients:
            some = clients["admin"]
            di, ml = await some.get_namespace_index(DI), await some.get_namespace_index(ML)
            update = await some.nodes.objects.get_child(
                [f"{di}:DeviceSet", "1:edge-1", "1:main", f"{di}:SoftwareUpdate"]
            )
            transfer = await update.get_child([f"{di}:Loading", f"{di}:FileTransfer"])
            timeout = await update.get_child([f"{di}:Confirmation", f"{di}:ConfirmationTimeout"])
            pipeline = await some.nodes.objects.get_child([f"{ml}:InferenceServer", f"{ml}:Pipelines", "1:main"])
            records = await some.nodes.objects.get_child([f"{ml}:InferenceServer", f"{ml}:Records"])
            methods = {  # method -> the least role that may call it
                await transfer.get_child("0:GenerateFileForRead"): 3,
                await transfer.get_child("0:GenerateFileForWrite"): 3,
                await update.get_child([f"{di}:Installation", f"{di}:InstallSoftwarePackage"]): 3,
                await update.get_child([f"{di}:Confirmation", f"{di}:Confirm"]): 3,
                await update.get_child([f"{di}:Installation", f"{di}:Resume"]): 2,
                await pipeline.get_child(f"{ml}:SetBinding"): 3,
                await records.get_child(f"{ml}:FetchRecords"): 1,
                await records.get_child(f"{ml}:AcknowledgeRecords"): 2,
            }
            by_name = {(await m.read_browse_name()).Name: m for m in methods}
            installation = await update.get_child(f"{di}:Installation")
            output = await output_node(some, "main", "anomaly_score")
            for name, client in clients.items():
                rank = RANK[name]
                executable = {
                    key: await _read(client, m.nodeid, ua.AttributeIds.UserExecutable) for key, m in by_name.items()
                }
                assert executable == {key: rank >= methods[m] for key, m in by_name.items()}, name
                assert _may_write(await _read(client, timeout.nodeid, ua.AttributeIds.UserAccessLevel)) == (rank >= 3)
                assert not _may_write(await _read(client, output.nodeid, ua.AttributeIds.UserAccessLevel)), name
                assert await _read(client, output.nodeid, ua.AttributeIds.UserWriteMask) == 0

                # Reading the installed package (the plant's model) needs Engineer.
                current = ua.Variant(0, ua.VariantType.Int32)
                read_current = await _call(client.get_node(transfer.nodeid), by_name["GenerateFileForRead"], current)
                assert (read_current == DENIED) == (rank < 3), (name, read_current)
                # Operators resume (nothing to resume here); binding tags needs Engineer.
                resume = await _call(client.get_node(installation.nodeid), by_name["Resume"])
                assert (resume == DENIED) == (rank < 2), (name, resume)
                text = ua.Variant("{not json", ua.VariantType.String)
                binding = await _call(client.get_node(pipeline.nodeid), by_name["SetBinding"], text)
                assert (binding == DENIED) == (rank < 3), (name, binding)
                assert await _node_management(client) == {DENIED}, name

            shown, written = await _writable(clients["admin"])
            assert shown == written == {"ConfirmationTimeout"}
            shown, written = await _writable(clients["op"])
            assert shown == written == set()


@pytest.mark.timeout(240)
async def test_each_role_on_a_gateway(tmp_path: Path, signer: Signer, example: Path) -> None:
    settings = GatewaySettings(
        endpoint=f"opc.tcp://127.0.0.1:{free_port()}/gateway/",
        data_dir=tmp_path / "gateway",
        trust_dir=signer.trust_dir,
        users_file=_users(tmp_path),
    )
    package = build_pump(example, signer, tmp_path / "pump.mlpkg").path
    async with Gateway(settings) as gateway, _sessions(gateway.url) as clients:
        eng = clients["eng"]
        ml = await eng.get_namespace_index(ML)
        manager = await eng.nodes.objects.get_child(f"{ml}:ModelManager")
        upload_object = await manager.get_child(f"{ml}:Upload")
        await upload(eng, upload_object, package.read_bytes(), ua.Variant())
        stored = await manager.get_child([f"{ml}:Models", "1:pump-health", "1:1.0.0", f"{ml}:Package"])
        monitor = await eng.nodes.objects.get_child(f"{ml}:ModelMonitor")
        methods = {  # method -> the least role that may call it
            await manager.get_child(f"{ml}:Deploy"): 3,
            await manager.get_child(f"{ml}:Undeploy"): 3,
            await manager.get_child(f"{ml}:Rollback"): 3,
            await manager.get_child(f"{ml}:RegisterDevice"): 3,
            await upload_object.get_child("0:GenerateFileForWrite"): 3,
            await stored.get_child("0:Open"): 3,
            await monitor.get_child(f"{ml}:SubmitFeedback"): 2,
        }
        by_name = {(await m.read_browse_name()).Name: m for m in methods}
        text = ua.Variant("nothing", ua.VariantType.String)
        for name, client in clients.items():
            rank = RANK[name]
            executable = {
                key: await _read(client, m.nodeid, ua.AttributeIds.UserExecutable) for key, m in by_name.items()
            }
            assert executable == {key: rank >= methods[m] for key, m in by_name.items()}, name
            # A Deploy of a model that does not exist: refused for its role first, else for the model.
            deploy = await _call(
                client.get_node(manager.nodeid),
                by_name["Deploy"],
                text,
                text,
                ua.Variant(["edge-x"], ua.VariantType.String),
                ua.Variant("", ua.VariantType.String),
            )
            assert (deploy == DENIED) == (rank < 3), (name, deploy)
            write = await _call(client.get_node(upload_object.nodeid), by_name["GenerateFileForWrite"], ua.Variant())
            assert (write == DENIED) == (rank < 3), (name, write)
            # A stored package is the plant's model: only Engineers download it.
            if rank < 3:
                with pytest.raises(ua.UaStatusCodeError, match=DENIED):
                    await download(client, client.get_node(stored.nodeid))
            else:
                assert await download(client, client.get_node(stored.nodeid)) == package.read_bytes()
            assert await _node_management(client) == {DENIED}, name

        for name in ("admin", "anonymous"):
            shown, written = await _writable(clients[name])
            assert shown == written == set(), name
        with pytest.raises(ua.UaStatusCodeError, match=DENIED):
            await eng.nodes.objects.add_folder(ua.NodeId("Intruder", 2), "2:Intruder")
