"""Trust goes both ways: ModelLine's clients check the server's certificate before they open a channel.

A server whose certificate the client does not trust (a machine posing as an edge node, a gateway or a
PLC) gets no session and never sees a password; its certificate waits in the client's ``rejected/``
until ``modelline trust approve``. The CLI, the gateway's device links and the edge node's PLC sources
all connect through ``sdk.opcua.connect.secure_client``; each is tried here against real servers.
"""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from asyncua import Server, ua
from asyncua.server.user_managers import UserManager

from edge_node.app import EdgeNode
from edge_node.opcua.server import application_uri as edge_uri
from gateway.app import Gateway
from sdk.di_client import SoftwareUpdateClient, set_binding
from sdk.errors import ServerNotTrusted
from sdk.examples import example_dir
from sdk.opcua import pki
from sdk.opcua.certificate import ensure_certificate
from sdk.opcua.connect import secure_client
from sdk.opcua.security import SECURE_POLICIES
from sdk.opcua.shelf import init_server
from tests.conftest import Signer
from tests.edge_harness import FEATURES, build_pump, edge_settings, wait_for
from tests.opcua_servers import free_port
from tests.processes import run_modelline
from tests.tls import Client, GatewaySettings, register_device, trust_ca

pytestmark = pytest.mark.e2e

PASSWORD = "only-for-the-real-server"


class _Logins(UserManager):
    """Remembers every login the server was offered (a man in the middle would keep the passwords)."""

    def __init__(self) -> None:
        self.offered: list[str | None] = []

    def get_user(self, iserver: Any, username: str | None = None, password: str | None = None, certificate: Any = None):  # type: ignore[no-untyped-def]  # noqa: ANN201
        self.offered.append(username)
        from asyncua.crypto.permission_rules import User, UserRole

        return User(role=UserRole.User)


@asynccontextmanager
async def impostor(folder: Path, app_uri: str, *, claims: str | None = None) -> AsyncIterator[tuple[Server, _Logins]]:
    """A plain asyncua server with secure endpoints only and a self-signed certificate naming ``app_uri``
    (no CA issued it), claiming to be ``claims`` (default ``app_uri``) in its endpoints."""
    logins = _Logins()
    server = Server(user_manager=logins)
    await init_server(server)
    url = f"opc.tcp://127.0.0.1:{free_port()}/edge/"
    server.set_endpoint(url)
    cert, key = ensure_certificate(folder, app_uri, socket.gethostname(), "ModelLine Edge edge-1")
    await server.set_application_uri(claims or app_uri)
    await server.load_certificate(str(cert))
    await server.load_private_key(str(key))
    server.set_security_policy(list(SECURE_POLICIES))
    ns = await server.register_namespace("urn:test:plc")
    pump = await server.nodes.objects.add_object(ua.NodeId("Pump1", ns), f"{ns}:Pump1")
    for feature in FEATURES:
        await pump.add_variable(ua.NodeId(f"Pump1.{feature}", ns), f"{ns}:{feature}", 1.0)
    await server.start()
    try:
        yield server, logins
    finally:
        await server.stop()


def _url(server: Server) -> str:
    return str(server.endpoint.geturl())


@pytest.mark.timeout(120)
async def test_an_untrusted_server_gets_no_session_and_no_password_until_approved(tmp_path: Path) -> None:
    engineer = trust_ca(tmp_path / "engineer-pki")  # trusts the plant CA, which did not issue the impostor's
    async with impostor(tmp_path / "impostor", "urn:modelline:edge:edge-1") as (server, logins):
        with pytest.raises(ServerNotTrusted, match="this client does not trust the server's certificate") as refused:
            await secure_client(_url(server), engineer, user="alice", password=PASSWORD)
        [kept] = pki.entries(engineer, "rejected")
        assert kept.application_uri == "urn:modelline:edge:edge-1"
        assert kept.thumbprint[:16] in str(refused.value)
        assert f"--pki-dir {engineer}" in str(refused.value)
        assert logins.offered == []  # not even an anonymous session was asked for

        code, _, err = await run_modelline("trust", "approve", "--pki-dir", str(engineer), kept.thumbprint[:16])
        assert code == 0, err
        client = await secure_client(_url(server), engineer, user="alice", password=PASSWORD)
        async with client:  # trusted now: the session opens, and the login goes to this server
            assert await client.get_namespace_array()
        assert logins.offered == ["alice"]


@pytest.mark.timeout(120)
async def test_a_trusted_certificate_for_another_application_is_refused(tmp_path: Path) -> None:
    """The server says it is one application, its certificate names another (OPC 10000-4 6.1.3, URI check)."""
    engineer = tmp_path / "engineer-pki"
    claims = "urn:modelline:edge:edge-1"
    async with impostor(tmp_path / "other", "urn:plant:other-app", claims=claims) as (server, logins):
        pki.approve(engineer, str(tmp_path / "other" / "cert.der"))
        with pytest.raises(ServerNotTrusted, match="names application 'urn:plant:other-app'"):
            await secure_client(_url(server), engineer)
        assert logins.offered == []


@pytest.mark.timeout(180)
async def test_a_device_link_to_an_untrusted_server_stays_offline_and_says_why(tmp_path: Path, signer: Signer) -> None:
    gateway_settings = GatewaySettings(
        endpoint=f"opc.tcp://127.0.0.1:{free_port()}/gateway/",
        data_dir=tmp_path / "gateway",
        trust_dir=signer.trust_dir,
        anonymous_role="Engineer",
    )
    async with (
        impostor(tmp_path / "impostor", "urn:modelline:edge:edge-1") as (server, logins),
        Gateway(gateway_settings) as gateway,
    ):
        await register_device(gateway.url, "edge-1", _url(server))
        link = gateway.devices.links["edge-1"]

        async def refused() -> bool:
            return "does not trust the server's certificate" in link.view.reason

        await wait_for(refused, timeout=30, what="the device link's refusal")
        assert not link.online
        [kept] = pki.entries(gateway_settings.data_dir / "pki", "rejected")
        assert kept.application_uri == "urn:modelline:edge:edge-1"
        assert f"--data-dir {gateway_settings.data_dir}" in link.view.reason
        assert logins.offered == []  # the gateway's certificate identity never reached it


@pytest.mark.timeout(240)
async def test_a_plc_the_edge_node_does_not_trust_is_not_read_until_approved(tmp_path: Path, signer: Signer) -> None:
    settings = edge_settings(tmp_path, signer.trust_dir)
    package = build_pump(example_dir(), signer, tmp_path / "pump.mlpkg").path
    async with (
        impostor(tmp_path / "plc", "urn:plant:plc-line3") as (plc, logins),
        EdgeNode(settings) as node,
        Client(node.url) as client,
    ):
        su = await SoftwareUpdateClient.find(client)
        await su.install(await su.transfer(package))
        binding = {
            "inputs": {f: {"endpoint": _url(plc), "node_id": f"ns=2;s=Pump1.{f}"} for f in FEATURES},
            "trigger": {"mode": "any_change"},
        }
        await set_binding(client, "main", json.dumps(binding))
        rejected_list = settings.data_dir / "pki"

        async def kept() -> list[pki.Entry]:
            return pki.entries(rejected_list, "rejected")

        [plc_cert] = await wait_for(kept, timeout=30, what="the PLC's certificate in rejected/")
        assert plc_cert.application_uri == "urn:plant:plc-line3"
        assert edge_uri(settings) != plc_cert.application_uri
        assert logins.offered == [] and not any(s.connected for s in node.hub.sources.values())

        code, _, err = await run_modelline(
            "trust", "approve", "--data-dir", str(settings.data_dir), plc_cert.thumbprint
        )
        assert code == 0, err

        async def linked() -> bool:
            return any(s.connected for s in node.hub.sources.values())

        await wait_for(linked, timeout=60, what="the PLC source, once its certificate is approved")
        assert logins.offered  # the edge node's session on the PLC
