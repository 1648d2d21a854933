"""Servers have their own certificate: Sign/SignAndEncrypt endpoints, and no password in clear text.

The unencrypted endpoint is allowed here (``allow_insecure``), as a plant may for old HMIs.

A TCP relay between client and server records every byte of a login over the unencrypted
endpoint; the password must not be among them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncua
import pytest
from asyncua import ua
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256

from sdk.opcua.users import hash_password
from tests.conftest import Signer
from tests.edge_harness import edge_settings, running_edge
from tests.opcua_servers import free_port
from tests.tls import Client

pytestmark = pytest.mark.e2e

PASSWORD = "plain-text-must-not-travel"


@asynccontextmanager
async def relay(target_port: int) -> AsyncIterator[tuple[int, bytearray]]:
    """A loopback TCP relay to ``target_port``; yields its port and every byte the client sent."""
    seen = bytearray()

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, record: bool) -> None:
        try:
            while data := await reader.read(65536):
                if record:
                    seen.extend(data)
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def handle(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        server_reader, server_writer = await asyncio.open_connection("127.0.0.1", target_port)
        await asyncio.gather(pipe(client_reader, server_writer, True), pipe(server_reader, client_writer, False))

    port = free_port()
    server = await asyncio.start_server(handle, "127.0.0.1", port)
    async with server:
        yield port, seen


@pytest.mark.timeout(120)
async def test_certificate_endpoints_and_encrypted_passwords(tmp_path: Path, signer: Signer) -> None:
    users = tmp_path / "users.toml"
    users.write_text(
        f'anonymous = "Observer"\n[users.alice]\nrole = "Engineer"\npassword = "{hash_password(PASSWORD)}"\n'
    )
    settings = edge_settings(
        tmp_path, signer.trust_dir, users_file=users, anonymous_role="Observer", allow_insecure=True
    )
    async with running_edge(settings) as node:
        own = settings.data_dir / "pki" / "own"
        assert own.stat().st_mode & 0o777 == 0o700 and (own / "key.pem").stat().st_mode & 0o777 == 0o600
        first_cert = (own / "cert.der").read_bytes()

        endpoints = await asyncua.Client(node.url, timeout=10).connect_and_get_server_endpoints()
        offered = {(e.SecurityPolicyUri.rsplit("#", 1)[-1], e.SecurityMode) for e in endpoints}
        assert offered == {("None", ua.MessageSecurityMode.None_)} | {
            (policy, mode)
            for policy in ("Basic256Sha256", "Aes128_Sha256_RsaOaep", "Aes256_Sha256_RsaPss")
            for mode in (ua.MessageSecurityMode.Sign, ua.MessageSecurityMode.SignAndEncrypt)
        }
        plain = next(e for e in endpoints if e.SecurityMode == ua.MessageSecurityMode.None_)
        # No password at all on the unencrypted endpoint: anonymous only (sdk.opcua.security).
        assert [t.TokenType for t in plain.UserIdentityTokens] == [ua.UserTokenType.Anonymous]
        basic = next(e for e in endpoints if e.SecurityPolicyUri == SecurityPolicyBasic256Sha256.URI)
        token = next(t for t in basic.UserIdentityTokens if t.TokenType == ua.UserTokenType.UserName)
        assert token.SecurityPolicyUri == SecurityPolicyBasic256Sha256.URI  # the password encrypted on its own too

        port = int(node.url.rsplit(":", 1)[1].split("/", 1)[0])
        async with relay(port) as (relay_port, seen):
            client = Client(node.url.replace(f":{port}/", f":{relay_port}/"), timeout=10)
            client.set_user("alice")
            client.set_password(PASSWORD)
            async with client:
                assert await client.get_namespace_array()
        assert len(seen) > 1000 and PASSWORD.encode() not in seen and PASSWORD.encode("utf-16-le") not in seen

        # The same login over SignAndEncrypt, with a client certificate the server trusts.
        secure = Client(node.url, timeout=10)
        secure.set_user("alice")
        secure.set_password(PASSWORD)
        async with secure:
            model = secure.get_node("ns=1;s=InferenceServer.Pipelines.main.Model")
            await model.read_value()
    async with running_edge(settings):  # a restart keeps the certificate
        assert (own / "cert.der").read_bytes() == first_cert
