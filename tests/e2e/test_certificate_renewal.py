"""A running server renews its own certificate before it expires: open sessions keep reading, new clients
get the new certificate, a clock jump (injected into the check) renews at the next check, peers that
trusted the old certificate accept the new one, and a certificate a plant CA issued is never replaced.
Real edge nodes and a real gateway on loopback (sdk/opcua/renewal.py, sdk/opcua/certificate.py)."""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
import time
from pathlib import Path

import asyncua
import pytest
from asyncua import ua
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from edge_node.app import EdgeNode
from edge_node.opcua.server import application_uri
from gateway.app import Gateway
from gateway.identity import GATEWAY_NAME, INSTANCE_URI
from sdk import audit
from sdk.opcua import certificate, pki
from sdk.opcua.connect import secure_client
from sdk.opcua.users import hash_password
from tests.conftest import Signer
from tests.edge_harness import edge_settings, running_edge, wait_for
from tests.opcua_servers import free_port
from tests.tls import Client, GatewaySettings, issue, register_device, secure

pytestmark = pytest.mark.e2e

DUE_IN_S = 30  # the certificate becomes due this long after the test starts: after the server started
PASSWORD = "engineer-pw"
CURRENT_TIME = ua.NodeId(ua.ObjectIds.Server_ServerStatus_CurrentTime)


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def _file_cert(pki_dir: Path) -> x509.Certificate:
    return x509.load_der_x509_certificate((pki_dir / "own" / "cert.der").read_bytes())


def _made_here_due_soon(pki_dir: Path, uri: str, name: str) -> x509.Certificate:
    """Replace the seeded own certificate by a ModelLine one (same key) that is due for renewal DUE_IN_S from now."""
    key = certificate._key(pki_dir / "own" / "key.pem")
    now = dt.datetime.now(dt.UTC)
    made_at = now + dt.timedelta(days=certificate.RENEW_DAYS - certificate.VALID_DAYS, seconds=DUE_IN_S)
    cert = certificate.self_signed(key, uri, socket.gethostname(), name, made_at)
    (pki_dir / "own" / "cert.der").write_bytes(_der(cert))
    return cert


async def _session_not_yet_activated(url: str, pki_dir: Path | None = None, uri: str = "") -> Client:
    """A client with a SecureChannel and a session created (with the test client's certificate, or the one
    in ``pki_dir``), not yet activated."""
    client = Client(url)
    if pki_dir is not None:
        client.application_uri = uri
    await secure(client, pki_dir=pki_dir)
    await client.connect_socket()
    await client.send_hello()
    await client.open_secure_channel()
    await client.create_session()
    return client


async def _served(url: str) -> set[bytes]:
    endpoints = await asyncua.Client(url, timeout=10).connect_and_get_server_endpoints()
    return {bytes(e.ServerCertificate) for e in endpoints}


def _channel_certificates(node: EdgeNode) -> list[bytes]:
    assert node.server is not None and node.server.bserver is not None
    return [
        bytes(p.processor._connection.security_policy.host_certificate or b"")
        for p in list(node.server.bserver.clients)
        if p.processor is not None and p.processor.session is not None
    ]


@pytest.mark.timeout(240)
async def test_a_running_node_renews_its_certificate_and_open_sessions_keep_working(
    tmp_path: Path, signer: Signer
) -> None:
    users = tmp_path / "users.toml"  # the node's own certificate, used as an X509 identity below, is an Engineer
    users.write_text('anonymous = "Engineer"\n[certificates]\n"urn:modelline:edge:edge-1" = "Engineer"\n')
    settings = edge_settings(tmp_path, signer.trust_dir, certificate_check_s=1.0, users_file=users)
    pki_dir = settings.data_dir / "pki"
    uri, name = application_uri(settings), f"ModelLine Edge {settings.device_id}"
    old = _made_here_due_soon(pki_dir, uri, name)
    due_at = time.monotonic() + DUE_IN_S
    old_file = tmp_path / "old.der"
    old_file.write_bytes(_der(old))
    pki.approve(pki_dir, str(old_file))  # the node trusts itself: its certificate is the peer's below
    records: list[audit.AuditRecord] = []
    remove = audit.add_sink(records.append)
    try:
        async with running_edge(settings) as node:
            watch = node.certificates
            assert watch.certificate is not None and _der(watch.certificate) == _der(old), "renewed too early"
            assert await _served(node.url) == {_der(old)}
            # A peer (this node's own certificate, trusted here as its X509 identity too) whose channel and
            # session were made before the renewal logs in after it: its token signs the old certificate.
            # Made shortly before the renewal is due: a server closes a connection whose session is not
            # activated within 30 s (asyncua's max_pending_activation_seconds).
            await asyncio.sleep(max(0.0, due_at - time.monotonic() - 10))
            pending = await _session_not_yet_activated(node.url, pki_dir, uri)
            assert _der(watch.certificate) == _der(old), "the session was to be made before the renewal"
            await pending.load_client_certificate(str(pki_dir / "own" / "cert.der"))
            await pending.load_private_key(str(pki_dir / "own" / "key.pem"))
            reader = Client(node.url)
            reader.secure_channel_timeout = 3000  # renews its channel token every ~2 s, across the swap
            async with reader:
                start = await reader.get_node(CURRENT_TIME).read_value()

                async def renewed() -> bool:
                    await reader.get_node(CURRENT_TIME).read_value()  # the open session reads all along
                    return _der(_file_cert(pki_dir)) != _der(old) and _der(watch.certificate) != _der(old)

                await wait_for(renewed, timeout=DUE_IN_S + 60, what="the periodic check renewed the certificate")
                new = _file_cert(pki_dir)
                assert new.subject == old.subject and new.serial_number != old.serial_number
                assert new.public_key().public_numbers() == old.public_key().public_numbers()  # type: ignore[union-attr]
                now = dt.datetime.now(dt.UTC)
                assert new.not_valid_before_utc < now - dt.timedelta(hours=1)  # starts a little before now
                assert new.not_valid_after_utc - now > dt.timedelta(days=certificate.VALID_DAYS - 1)
                assert await _served(node.url) == {_der(new)}  # GetEndpoints: the new one only
                try:
                    await pending.activate_session(certificate=pending.user_certificate)
                    assert await pending.get_node(CURRENT_TIME).read_value()
                finally:
                    await pending.close_session()
                    pending.disconnect_socket()

                # The open session goes on over its channel (several token renewals), which keeps the old one;
                # a new client gets a channel with the new certificate.
                await asyncio.sleep(4)
                assert await reader.get_node(CURRENT_TIME).read_value() > start
                async with Client(node.url) as newcomer:
                    assert await newcomer.get_node(CURRENT_TIME).read_value()
                    assert sorted(_channel_certificates(node)) == sorted([_der(old), _der(new)])
                assert await reader.get_node(CURRENT_TIME).read_value()
                entries = [r for r in records if r.action == "certificate" and r.outcome == "ok"]
                assert any(pki.thumbprint(old) in r.detail and pki.thumbprint(new) in r.detail for r in entries)

                # A clock that jumped forward: the next check renews; the one after finds nothing to do. (The
                # node's own check, on the real clock, is stopped first: it would renew each jump back.)
                periodic = next(t for t in node._tasks if t.get_name() == "certificate check")
                periodic.cancel()
                jumped = now + dt.timedelta(days=certificate.VALID_DAYS - certificate.RENEW_DAYS + 1)
                assert await watch.check(jumped)
                ahead = _file_cert(pki_dir)
                assert ahead.not_valid_before_utc == (jumped - certificate.START_MARGIN).replace(microsecond=0)
                assert not await watch.check(jumped + dt.timedelta(hours=1))
                # A clock that jumped back before the certificate's start renews once, not in a loop.
                back = now - dt.timedelta(days=3)
                assert await watch.check(back)
                assert _file_cert(pki_dir).not_valid_before_utc < back
                assert not await watch.check(back + dt.timedelta(minutes=5))
                assert not await watch.check()  # the real clock: valid, not due
                assert await reader.get_node(CURRENT_TIME).read_value()
    finally:
        remove()

    # The node's client links use the same files: a peer that trusted the old certificate (by its file)
    # accepts a link with the renewed one (it chains to the old one: same subject, signed by the same key).
    peer_settings = edge_settings(tmp_path / "peer", signer.trust_dir, device_id="edge-2", users_file=users)
    pki.approve(peer_settings.data_dir / "pki", str(old_file))
    async with running_edge(peer_settings) as peer:
        link = await secure_client(peer.url, pki_dir, application_uri=uri, name=name, certificate_identity=True)
        async with link:
            assert await link.get_node(CURRENT_TIME).read_value()
        assert not pki.entries(peer_settings.data_dir / "pki", "rejected")


@pytest.mark.timeout(180)
async def test_a_certificate_from_a_plant_ca_is_never_replaced_only_warned_about(
    tmp_path: Path, signer: Signer
) -> None:
    users = tmp_path / "users.toml"
    users.write_text(
        f'anonymous = "Observer"\n[users.eng]\nrole = "Engineer"\npassword = "{hash_password(PASSWORD)}"\n'
    )
    settings = edge_settings(tmp_path, signer.trust_dir, users_file=users)
    own = settings.data_dir / "pki" / "own"
    issue(own, application_uri(settings), "edge-1", not_after=dt.datetime.now(dt.UTC) + dt.timedelta(days=10))
    before = (own / "cert.der").read_bytes()
    records: list[audit.AuditRecord] = []
    remove = audit.add_sink(records.append)
    try:
        async with running_edge(settings) as node:

            async def warned() -> bool:
                return any(r.action == "certificate" and r.outcome == "failed" for r in records)

            await wait_for(warned, timeout=20, what="a warning about the CA certificate")
            assert "does not replace" in next(r for r in records if r.action == "certificate").detail
            expired = dt.datetime.now(dt.UTC) + dt.timedelta(days=11)
            assert not await node.certificates.check(expired)
            assert (own / "cert.der").read_bytes() == before
            assert await _served(node.url) == {before}
            async with Client(node.url) as client:
                assert await client.get_node(CURRENT_TIME).read_value()
            assert not [r for r in records if r.action == "certificate" and r.outcome == "ok"]

            # The administrator puts a new CA-issued certificate, with a new key, into pki/own: the next
            # check serves it (certificate and key), and the open session goes on.
            # A client whose channel and session were made before the swap logs in after it: its password is
            # encrypted for the certificate (and key) of its channel, the old one.
            pending = await _session_not_yet_activated(node.url)
            async with Client(node.url) as before_swap:
                issue(own, application_uri(settings), "edge-1")
                assert await node.certificates.check()
                replacement = (own / "cert.der").read_bytes()
                assert replacement != before and await _served(node.url) == {replacement}
                async with Client(node.url) as client:
                    assert await client.get_node(CURRENT_TIME).read_value()
                assert await before_swap.get_node(CURRENT_TIME).read_value()
            try:
                await pending.activate_session("eng", PASSWORD)
                assert await pending.get_node(CURRENT_TIME).read_value()
            finally:
                await pending.close_session()
                pending.disconnect_socket()
    finally:
        remove()


@pytest.mark.timeout(240)
async def test_the_gateway_renews_on_its_schedule_and_its_device_links_use_the_new_certificate(
    tmp_path: Path, signer: Signer
) -> None:
    gateway_settings = GatewaySettings(
        endpoint=f"opc.tcp://127.0.0.1:{free_port()}/gateway/",
        data_dir=tmp_path / "gateway",
        trust_dir=signer.trust_dir,
        anonymous_role="Engineer",
        certificate_check_s=1.0,
    )
    gateway_pki = gateway_settings.data_dir / "pki"
    old = _made_here_due_soon(gateway_pki, INSTANCE_URI, GATEWAY_NAME)
    edge = edge_settings(tmp_path, signer.trust_dir, anonymous_role="")  # the gateway's certificate identity only
    old_file = tmp_path / "gateway-old.der"
    old_file.write_bytes(_der(old))
    pki.approve(edge.data_dir / "pki", str(old_file))  # trusted by its exact file, as the README says
    async with running_edge(edge) as node, Gateway(gateway_settings) as gateway:
        assert await _served(gateway.url) == {_der(old)}

        async def renewed() -> bool:
            return await _served(gateway.url) != {_der(old)}

        await wait_for(renewed, timeout=DUE_IN_S + 60, what="the gateway's scheduled check renewed its certificate")
        new = _file_cert(gateway_pki)
        assert await _served(gateway.url) == {_der(new)}
        await register_device(gateway.url, "edge-1", node.url)
        assert await gateway.devices.links["edge-1"].wait_online(30)
        assert not pki.entries(edge.data_dir / "pki", "rejected")
        # The edge node saw the gateway's new certificate on that link.
        assert node.server is not None and node.server.bserver is not None
        peers = {
            bytes(p.processor._connection.security_policy.peer_certificate or b"")
            for p in list(node.server.bserver.clients)
            if p.processor is not None and p.processor.session is not None
        }
        assert _der(new) in peers
