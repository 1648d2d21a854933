"""No role writes what the server maintains: an Engineer writes ConfirmationTimeout and nothing else.

asyncua's Admin may write any attribute of any node and add or delete nodes; no ModelLine role maps
to it. Tried with a plain asyncua client as each role, on an edge node serving a model and on a
gateway holding a stored version.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from asyncua import ua

from gateway.app import Gateway
from sdk.file_client import upload
from sdk.opcua.users import hash_password
from tests.conftest import Signer
from tests.edge_harness import build_pump, edge_settings, output_node, running_edge, wait_for
from tests.opcua_servers import free_port
from tests.tls import Client, GatewaySettings

pytestmark = pytest.mark.e2e

ML = "http://modelline.io/UA/"
DI = "http://opcfoundation.org/UA/DI/"


def _users(tmp_path: Path) -> Path:
    users = tmp_path / "users.toml"
    users.write_text(
        f'anonymous = "Observer"\n[users.op]\nrole = "Operator"\npassword = "{hash_password("operator-pw")}"\n'
        f'[users.eng]\nrole = "Engineer"\npassword = "{hash_password("engineer-pw")}"\n'
    )
    return users


@asynccontextmanager
async def _as(url: str, user: str | None = None) -> AsyncIterator[Client]:
    client = Client(url, timeout=10)
    if user:
        client.set_user(user)
        client.set_password(f"{'operator' if user == 'op' else 'engineer'}-pw")
    async with client:
        yield client


async def _write(client: Client, node_id: ua.NodeId, value: ua.Variant, attribute: int = ua.AttributeIds.Value) -> str:
    params = ua.WriteParameters(
        NodesToWrite=[ua.WriteValue(NodeId=node_id, AttributeId=attribute, Value=ua.DataValue(value))]
    )
    [result] = await client.uaclient.write(params)
    return result.name


@pytest.mark.timeout(120)
async def test_an_engineer_writes_confirmation_timeout_and_nothing_the_server_maintains(
    tmp_path: Path, signer: Signer, example: Path
) -> None:
    settings = edge_settings(tmp_path, signer.trust_dir, anonymous_role="Observer", users_file=_users(tmp_path))
    async with running_edge(settings) as node:
        slot = node.slots["main"]
        pending = await slot.stage_pending(build_pump(example, signer, tmp_path / "pump.mlpkg").path)
        await slot.request_install(pending.manufacturer_uri, pending.version, b"")

        async def installed() -> bool:
            return slot.state.current is not None

        await wait_for(installed, what="the install")
        async with _as(node.url, "eng") as eng, _as(node.url, "op") as op, _as(node.url) as anonymous:
            di, ml = await eng.get_namespace_index(DI), await eng.get_namespace_index(ML)
            device = await eng.nodes.objects.get_child(
                [f"{di}:DeviceSet", "1:edge-1", "1:main", f"{di}:SoftwareUpdate"]
            )
            timeout = await device.get_child([f"{di}:Confirmation", f"{di}:ConfirmationTimeout"])
            revision = await device.get_child([f"{di}:Loading", f"{di}:CurrentVersion", f"{di}:SoftwareRevision"])
            output = await output_node(eng, "main", "anomaly_score")
            model = await eng.nodes.objects.get_child(
                [f"{ml}:InferenceServer", f"{ml}:Pipelines", "1:main", f"{ml}:Model"]
            )
            namespaces = eng.get_node(ua.ObjectIds.Server_NamespaceArray)
            double = ua.Variant(30000.0, ua.VariantType.Double)

            assert await _write(eng, timeout.nodeid, double) == "Good"
            for client in (op, anonymous):
                assert await _write(client, timeout.nodeid, double) == "BadUserAccessDenied"
            denied = {
                "output": await _write(eng, output.nodeid, ua.Variant(0.999, ua.VariantType.Float)),
                "model": await _write(eng, model.nodeid, ua.Variant("evil", ua.VariantType.String)),
                "revision": await _write(eng, revision.nodeid, ua.Variant("6.6.6", ua.VariantType.String)),
                "namespaces": await _write(eng, namespaces.nodeid, ua.Variant(["x"], ua.VariantType.String)),
                "access level": await _write(
                    eng, timeout.nodeid, ua.Variant(1, ua.VariantType.Byte), ua.AttributeIds.AccessLevel
                ),
                "display name": await _write(
                    eng, output.nodeid, ua.Variant(ua.LocalizedText("x")), ua.AttributeIds.DisplayName
                ),
            }
            assert set(denied.values()) == {"BadUserAccessDenied"}, denied
            assert await revision.read_value() == "1.0.0" and await model.read_value() == "pump-health"
            with pytest.raises(ua.UaStatusCodeError, match="BadUserAccessDenied"):
                await eng.nodes.objects.add_folder(ua.NodeId("Intruder", 2), "2:Intruder")


@pytest.mark.timeout(120)
async def test_an_engineer_cannot_rewrite_a_stored_package_hash(tmp_path: Path, signer: Signer, example: Path) -> None:
    settings = GatewaySettings(
        endpoint=f"opc.tcp://127.0.0.1:{free_port()}/gateway/",
        data_dir=tmp_path / "gateway",
        trust_dir=signer.trust_dir,
        users_file=_users(tmp_path),
    )
    async with Gateway(settings) as gateway, _as(gateway.url, "eng") as eng:
        ml = await eng.get_namespace_index(ML)
        manager = await eng.nodes.objects.get_child(f"{ml}:ModelManager")
        package = build_pump(example, signer, tmp_path / "pump.mlpkg").path
        await upload(eng, await manager.get_child(f"{ml}:Upload"), package.read_bytes(), ua.Variant())
        version = await manager.get_child([f"{ml}:Models", "1:pump-health", "1:1.0.0"])
        sha = await version.get_child(f"{ml}:Sha256")
        stored = await sha.read_value()
        assert await _write(eng, sha.nodeid, ua.Variant("0" * 64, ua.VariantType.String)) == "BadUserAccessDenied"
        assert await sha.read_value() == stored
