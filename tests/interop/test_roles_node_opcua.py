"""node-opcua logs in to the gateway as an Observer and as an Engineer: what each may do, and what the
nodes say each may do (UserExecutable read by node-opcua for its own session)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from asyncua import ua

from gateway.app import Gateway
from sdk.file_client import upload
from sdk.opcua.users import hash_password
from tests.conftest import Signer
from tests.edge_harness import build_pump
from tests.opcua_servers import free_port
from tests.tls import Client, GatewaySettings

pytestmark = [pytest.mark.interop, pytest.mark.e2e]


async def _as(node_opcua: Path, url: str, user: str) -> dict[str, object]:
    proc = await asyncio.create_subprocess_exec(
        "node",
        str(node_opcua / "gateway_roles.mjs"),
        url,
        user,
        f"{user}-password",
        "pump-health",
        "1.0.0",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=node_opcua,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 90)
    assert proc.returncode == 0, err.decode()[-3000:]
    summary: dict[str, object] = json.loads(next(line for line in out.decode().splitlines() if line.startswith("{")))
    return summary


@pytest.mark.timeout(180)
async def test_node_opcua_as_observer_is_denied_a_deploy(
    node_opcua: Path, tmp_path: Path, signer: Signer, example: Path
) -> None:
    users = tmp_path / "users.toml"
    users.write_text(
        'anonymous = ""\n'
        f'[users.obs]\nrole = "Observer"\npassword = "{hash_password("obs-password")}"\n'
        f'[users.eng]\nrole = "Engineer"\npassword = "{hash_password("eng-password")}"\n'
    )
    settings = GatewaySettings(
        endpoint=f"opc.tcp://127.0.0.1:{free_port()}/gateway/",
        data_dir=tmp_path / "gateway",
        trust_dir=signer.trust_dir,
        users_file=users,
    )
    package = build_pump(example, signer, tmp_path / "pump.mlpkg").path
    async with Gateway(settings) as gateway:
        eng = Client(gateway.url, timeout=10)
        eng.set_user("eng")
        eng.set_password("eng-password")
        async with eng:
            ml = await eng.get_namespace_index("http://modelline.io/UA/")
            target = await eng.nodes.objects.get_child([f"{ml}:ModelManager", f"{ml}:Upload"])
            await upload(eng, target, package.read_bytes(), ua.Variant())
        observer = await _as(node_opcua, gateway.url, "obs")
        engineer = await _as(node_opcua, gateway.url, "eng")
    assert observer == {
        "deployExecutable": False,
        "openExecutable": False,
        "deploy": "BadUserAccessDenied",
        "open": "BadUserAccessDenied",
    }
    assert engineer["deployExecutable"] is True and engineer["openExecutable"] is True
    assert engineer["open"] == "Good"
    assert engineer["deploy"] not in ("BadUserAccessDenied", "Good"), engineer  # refused for the unknown device
