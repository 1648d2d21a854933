"""Secure transport and trust, tried against real servers on loopback.

Secure by default (six Sign/SignAndEncrypt endpoints, no SecurityPolicy None unless allowed, then
read-only), no password in clear text, certificate trust lists (unknown, expired, not yet valid,
wrong-URI and revoked certificates refused; ``modelline trust approve``), and ModelLine's own links
(CLI, gateway device links, PLC sources) over SignAndEncrypt as the servers see them.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import socket
from pathlib import Path
from typing import Any

import asyncua
import pytest
from asyncua import ua
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from gateway.app import Gateway
from gateway.identity import INSTANCE_URI
from sdk import audit
from sdk.opcua import pki
from sdk.opcua.certificate import ensure_certificate
from sdk.opcua.connect import secure_client
from sdk.opcua.security import channel_security
from sdk.opcua.users import hash_password
from tests.conftest import Signer
from tests.edge_harness import SimulatedPlc, edge_settings, running_edge, wait_for
from tests.opcua_servers import free_port
from tests.processes import run_modelline
from tests.readme import assert_documented
from tests.tls import Client, GatewaySettings, issue, make_ca, register_device, secure, trust_ca

pytestmark = pytest.mark.e2e

PASSWORD = "never-in-clear-text"
POLICIES = ["Basic256Sha256", "Aes128_Sha256_RsaOaep", "Aes256_Sha256_RsaPss"]
GET_MONITORED_ITEMS = ua.NodeId(ua.ObjectIds.Server_GetMonitoredItems)


def _users(tmp_path: Path) -> Path:
    users = tmp_path / "users.toml"
    users.write_text(
        f'anonymous = "Observer"\n[users.alice]\nrole = "Engineer"\npassword = "{hash_password(PASSWORD)}"\n'
    )
    return users


def _offered(endpoints: list[ua.EndpointDescription]) -> set[tuple[str, str]]:
    return {(e.SecurityPolicyUri.rsplit("#", 1)[-1], e.SecurityMode.name) for e in endpoints}


@pytest.mark.timeout(180)
async def test_each_policy_and_mode_and_no_none_endpoint_by_default(tmp_path: Path, signer: Signer) -> None:
    async with running_edge(edge_settings(tmp_path, signer.trust_dir, users_file=_users(tmp_path))) as node:
        endpoints = await asyncua.Client(node.url).connect_and_get_server_endpoints()
        assert _offered(endpoints) == {(p, m) for p in POLICIES for m in ("Sign", "SignAndEncrypt")}
        # No session over SecurityPolicy None either, though a None channel is opened for GetEndpoints.
        with pytest.raises(ua.uaerrors.BadSecurityPolicyRejected):
            async with asyncua.Client(node.url, timeout=10):
                pass
        for policy in POLICIES:
            for mode in ("Sign", "SignAndEncrypt"):
                client = Client(node.url)
                client._secured = True
                await secure(client, f"{policy}:{mode}")
                client.set_user("alice")
                client.set_password(PASSWORD)
                async with client:
                    assert (await client.get_namespace_array())[0] == "http://opcfoundation.org/UA/"
                    seen = {(uri.rsplit("#", 1)[-1], m.name) for _, uri, m in channel_security(node.server)}
                    assert (policy, mode) in seen


class _PlainPassword(asyncua.Client):
    """A client that sends its password without EncryptionAlgorithm whatever the server asks."""

    def server_policy(self, token_type: ua.UserTokenType) -> ua.UserTokenPolicy:
        policy = super().server_policy(token_type)
        if token_type == ua.UserTokenType.UserName:
            policy = ua.UserTokenPolicy(PolicyId=policy.PolicyId, TokenType=policy.TokenType, SecurityPolicyUri=None)
        return policy


@pytest.mark.timeout(180)
async def test_none_endpoint_is_read_only_when_allowed_and_plain_passwords_are_refused(
    tmp_path: Path, signer: Signer
) -> None:
    settings = edge_settings(
        tmp_path, signer.trust_dir, users_file=_users(tmp_path), allow_insecure=True, anonymous_role="Engineer"
    )
    async with running_edge(settings) as node:
        endpoints = await asyncua.Client(node.url).connect_and_get_server_endpoints()
        assert ("None", "None_") in _offered(endpoints) and len(endpoints) == 7
        plain = next(e for e in endpoints if e.SecurityMode == ua.MessageSecurityMode.None_)
        # Anonymous only there: a login needs a channel that proves the server and knows the client.
        assert [t.TokenType for t in plain.UserIdentityTokens] == [ua.UserTokenType.Anonymous]
        for secured_endpoint in (e for e in endpoints if e.SecurityMode != ua.MessageSecurityMode.None_):
            token = next(t for t in secured_endpoint.UserIdentityTokens if t.TokenType == ua.UserTokenType.UserName)
            assert token.SecurityPolicyUri == secured_endpoint.SecurityPolicyUri  # the password is encrypted

        # Anonymous is Engineer here: the None channel itself is what refuses calls and writes.
        async with asyncua.Client(node.url, timeout=10) as reader:
            assert await reader.get_namespace_array()
            sub = await reader.create_subscription(100, None)  # subscribing is reading
            await sub.delete()
            with pytest.raises(ua.uaerrors.BadSecurityModeInsufficient):
                await reader.nodes.server.call_method(GET_MONITORED_ITEMS, ua.Variant(1, ua.VariantType.UInt32))
            with pytest.raises(ua.uaerrors.BadSecurityModeInsufficient):
                await reader.get_node(ua.ObjectIds.Server_ServerStatus_BuildInfo_ProductName).write_value("x")
        # The same call over a secure channel is not refused for its channel.
        async with Client(node.url) as secured:
            with pytest.raises(ua.UaStatusCodeError) as refused:
                await secured.nodes.server.call_method(GET_MONITORED_ITEMS, ua.Variant(1, ua.VariantType.UInt32))
            assert not isinstance(refused.value, ua.uaerrors.BadSecurityModeInsufficient)

        records: list[audit.AuditRecord] = []
        remove = audit.add_sink(records.append)
        # On the None channel a password is refused, in clear text or encrypted: no guessing, no lockout there.
        for client in (_PlainPassword(node.url, timeout=10), asyncua.Client(node.url, timeout=10)):
            client.set_user("alice")
            client.set_password(PASSWORD)
            with pytest.raises(ua.uaerrors.BadIdentityTokenRejected):
                await client.connect()
            await client.disconnect()
        # A password without EncryptionAlgorithm on a SignAndEncrypt channel: refused as well.
        client = _PlainPassword(node.url, timeout=10)
        await secure(client, "Aes256_Sha256_RsaPss:SignAndEncrypt")
        client.set_user("alice")
        client.set_password(PASSWORD)
        with pytest.raises(ua.uaerrors.BadIdentityTokenInvalid):
            await client.connect()
        await client.disconnect()
        remove()
        refused = [r.detail for r in records if (r.action, r.outcome, r.who) == ("login", "refused", "alice")]
        assert refused == [
            "a login needs a secure channel: on SecurityPolicy None only anonymous sessions",
            "a login needs a secure channel: on SecurityPolicy None only anonymous sessions",
            "password sent unencrypted",
        ], refused
        # The right way in works.
        client = Client(node.url, timeout=10)
        client.set_user("alice")
        client.set_password(PASSWORD)
        async with client:
            assert await client.get_namespace_array()


@pytest.mark.timeout(180)
async def test_unknown_client_certificate_is_rejected_until_approved(tmp_path: Path, signer: Signer) -> None:
    settings = edge_settings(tmp_path, signer.trust_dir)
    own = trust_ca(tmp_path / "scada-pki")  # the SCADA trusts the plant CA that issued the node's certificate
    async with running_edge(settings) as node:
        server_pki = settings.data_dir / "pki"
        for folder in ("own", "trusted/certs", "trusted/crl", "issuers/certs", "issuers/crl", "rejected"):
            assert (server_pki / folder).is_dir(), folder
        client = await secure_client(node.url, own, application_uri="urn:plant:scada", name="SCADA")
        with pytest.raises(ua.uaerrors.BadCertificateUntrusted):
            await client.connect()
        rejected = pki.entries(server_pki, "rejected")
        assert [e.application_uri for e in rejected] == ["urn:plant:scada"]

        code, out, err = await run_modelline("trust", "list", "--data-dir", str(settings.data_dir), "--json")
        assert code == 0, err
        listed = {(c["list"], c["application_uri"]) for c in json.loads(out)["certificates"]}
        assert ("rejected", "urn:plant:scada") in listed
        code, _, err = await run_modelline("trust", "approve", "--data-dir", str(settings.data_dir), "2E5B")
        assert code == 2 and "at least 6 hex digits" in err, err
        code, out, err = await run_modelline(
            "trust", "approve", "--data-dir", str(settings.data_dir), rejected[0].thumbprint[:12]
        )
        assert code == 0, err
        assert not pki.entries(server_pki, "rejected")

        records: list[audit.AuditRecord] = []
        remove = audit.add_sink(records.append)
        client = await secure_client(node.url, own, application_uri="urn:plant:scada", name="SCADA")
        async with client:  # no restart needed: the lists are read at each connection
            assert await client.get_namespace_array()
        remove()
        # The node noticed the change of its trust list (made by another process) and recorded it.
        trust = [(r.who, r.detail) for r in records if r.action == "trust"]
        assert [d for w, d in trust if w == "trust list" and d.startswith("trusted/certs: added ")] == [
            f"trusted/certs: added urn:plant:scada [{rejected[0].thumbprint}]"  # its CommonName is its URI
        ], trust

        code, _, err = await run_modelline(
            "trust", "remove", "--data-dir", str(settings.data_dir), rejected[0].thumbprint
        )
        assert code == 0, err
        client = await secure_client(node.url, own, application_uri="urn:plant:scada", name="SCADA")
        with pytest.raises(ua.uaerrors.BadCertificateUntrusted):
            await client.connect()


def _crl(ca: tuple[x509.Certificate, Any], *serials: int) -> bytes:
    ca_cert, ca_key = ca
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(now - dt.timedelta(hours=1))
        .next_update(now + dt.timedelta(days=7))
    )
    for serial in serials:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(serial)
            .revocation_date(now - dt.timedelta(minutes=5))
            .build()
        )
    return builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


async def _connect_with(url: str, folder: Path, app_uri: str) -> None:
    client = asyncua.Client(url, timeout=10)
    client.application_uri = app_uri
    await secure(client, "Basic256Sha256:SignAndEncrypt", pki_dir=folder.parent)
    async with client:
        await client.get_namespace_array()


@pytest.mark.timeout(180)
async def test_expired_not_yet_valid_wrong_uri_and_revoked_certificates_are_refused(
    tmp_path: Path, signer: Signer, caplog: pytest.LogCaptureFixture
) -> None:
    plant_ca = make_ca("Plant CA")
    ca_file = tmp_path / "plant-ca.der"
    ca_file.write_bytes(plant_ca[0].public_bytes(serialization.Encoding.DER))
    now = dt.datetime.now(dt.UTC)
    good = tmp_path / "good" / "own"
    issue(good, "urn:plant:hmi", "HMI", issuer=plant_ca)
    expired = tmp_path / "expired" / "own"
    issue(expired, "urn:plant:hmi", "HMI", issuer=plant_ca, not_before=now - dt.timedelta(days=30),
          not_after=now - dt.timedelta(days=1))  # fmt: skip
    early = tmp_path / "early" / "own"
    issue(early, "urn:plant:hmi", "HMI", issuer=plant_ca, not_before=now + dt.timedelta(days=1),
          not_after=now + dt.timedelta(days=30))  # fmt: skip
    revoked = tmp_path / "revoked" / "own"
    issue(revoked, "urn:plant:hmi", "HMI", issuer=plant_ca)
    crl_file = tmp_path / "plant-ca.crl"
    crl_file.write_bytes(
        _crl(plant_ca, x509.load_der_x509_certificate((revoked / "cert.der").read_bytes()).serial_number)
    )

    settings = edge_settings(tmp_path, signer.trust_dir)
    async with running_edge(settings) as node:
        for cmd in (["approve", str(ca_file)], ["crl", str(crl_file)]):
            code, _, err = await run_modelline("trust", *cmd, "--data-dir", str(settings.data_dir))
            assert code == 0, err
        await _connect_with(node.url, good, "urn:plant:hmi")  # issued by a trusted CA
        with caplog.at_level(logging.INFO, logger="modelline.audit"):
            for folder, uri, status in (
                (expired, "urn:plant:hmi", ua.uaerrors.BadCertificateTimeInvalid),
                (early, "urn:plant:hmi", ua.uaerrors.BadCertificateTimeInvalid),
                (good, "urn:plant:other-app", ua.uaerrors.BadCertificateUriInvalid),
                (revoked, "urn:plant:hmi", ua.uaerrors.BadCertificateRevoked),
            ):
                with pytest.raises(status):
                    await _connect_with(node.url, folder, uri)
        refusals = [
            r.getMessage() for r in caplog.records if r.name == "modelline.audit" and "refused" in r.getMessage()
        ]
        assert len(refusals) == 4 and all(m.startswith("certificate refused") for m in refusals), refusals
        assert all(" from 127.0.0.1:" in m for m in refusals), refusals  # with the client's address
        assert not pki.entries(settings.data_dir / "pki", "rejected")  # only the untrusted go there


@pytest.mark.timeout(180)
async def test_an_untrusted_x509_user_identity_maps_to_nobody(tmp_path: Path, signer: Signer) -> None:
    async with running_edge(edge_settings(tmp_path, signer.trust_dir, anonymous_role="")) as node:
        stranger = tmp_path / "stranger"
        cert, key = ensure_certificate(stranger, "urn:plant:stranger", "localhost", "stranger")
        client = Client(node.url)
        await client.load_client_certificate(str(cert))
        await client.load_private_key(key)
        with pytest.raises(ua.uaerrors.BadUserAccessDenied):
            await client.connect()
        await client.disconnect()


@pytest.mark.timeout(240)
async def test_cli_device_links_and_plc_sources_use_sign_and_encrypt(
    tmp_path: Path, signer: Signer, caplog: pytest.LogCaptureFixture
) -> None:
    plc = await SimulatedPlc().start()
    try:
        # Anonymous refused on the edge node: the gateway gets in with its certificate (X509 identity, Engineer).
        settings = edge_settings(tmp_path, signer.trust_dir, anonymous_role="")
        async with running_edge(settings) as node:
            gateway_settings = GatewaySettings(
                endpoint=f"opc.tcp://127.0.0.1:{free_port()}/gateway/",
                data_dir=tmp_path / "gateway",
                trust_dir=signer.trust_dir,
                anonymous_role="Engineer",
            )
            async with Gateway(gateway_settings) as gateway:
                await register_device(gateway.url, "edge-1", node.url)
                link = gateway.devices.links["edge-1"]
                assert await link.wait_online(30)

                def edge_sessions() -> list[tuple[str, ua.MessageSecurityMode]]:
                    return [(uri.rsplit("#", 1)[-1], mode) for _, uri, mode in channel_security(node.server)]

                assert ("Aes256_Sha256_RsaPss", ua.MessageSecurityMode.SignAndEncrypt) in edge_sessions()
                # The binding makes the edge node subscribe to the PLC: over SignAndEncrypt too.
                await link.set_binding("main", json.dumps(plc.binding()))
                assert plc.server is not None

                async def plc_linked() -> bool:
                    return any(
                        m == ua.MessageSecurityMode.SignAndEncrypt and uri.endswith("Aes256_Sha256_RsaPss")
                        for _, uri, m in channel_security(plc.server)  # type: ignore[arg-type]
                    )

                await wait_for(plc_linked, timeout=30, what="the edge node's PLC session")
                # The CLI: a session on the gateway over Aes256_Sha256_RsaPss SignAndEncrypt.
                with caplog.at_level(logging.INFO, logger="sdk.opcua.security"):
                    code, out, err = await run_modelline("devices", "list", "--gateway", gateway.url)
                    assert code == 0, err
                    code, out, err = await run_modelline(
                        "trust", "show", "own", "--data-dir", str(gateway_settings.data_dir)
                    )
                    assert code == 0 and INSTANCE_URI in out, err
                # A new engineering PC: first it does not trust the gateway (one line saying what to run),
                new_pc = tmp_path / "new-pc"
                code, _, err = await run_modelline(
                    "--pki-dir", str(new_pc), "devices", "list", "--gateway", gateway.url
                )
                assert code == 2, err
                assert_documented(err, "this client does not trust the server's certificate")
                [gateway_cert] = pki.entries(new_pc, "rejected")
                assert gateway_cert.application_uri == INSTANCE_URI
                assert f"modelline trust approve --pki-dir {new_pc} {gateway_cert.thumbprint[:16]}" in err
                code, _, err = await run_modelline(
                    "trust", "approve", "--pki-dir", str(new_pc), gateway_cert.thumbprint[:16]
                )
                assert code == 0, err
                # then the gateway does not trust it yet: one line saying so.
                code, _, err = await run_modelline(
                    "--pki-dir", str(new_pc), "devices", "list", "--gateway", gateway.url
                )
                assert code == 2, err
                assert_documented(err, "does not trust this client's certificate")
                assert len(pki.entries(gateway_settings.data_dir / "pki", "rejected")) == 1
                sessions = [r.getMessage() for r in caplog.records if r.getMessage().startswith("session from")]
                assert sessions and all(m.endswith("Aes256_Sha256_RsaPss SignAndEncrypt") for m in sessions), sessions
    finally:
        await plc.stop()


@pytest.mark.timeout(180)
async def test_a_security_admin_adds_and_removes_a_certificate_through_the_standard_trust_list(
    tmp_path: Path, signer: Signer
) -> None:
    users = tmp_path / "users.toml"
    users.write_text(
        f'anonymous = "Observer"\n[users.sec]\nrole = "SecurityAdmin"\npassword = "{hash_password(PASSWORD)}"\n'
    )
    trust_list = "ServerConfiguration_CertificateGroups_DefaultApplicationGroup_TrustList_"
    add = ua.NodeId(getattr(ua.ObjectIds, trust_list + "AddCertificate"))
    remove = ua.NodeId(getattr(ua.ObjectIds, trust_list + "RemoveCertificate"))
    parent = ua.NodeId(ua.ObjectIds.ServerConfiguration_CertificateGroups_DefaultApplicationGroup_TrustList)
    hmi = trust_ca(tmp_path / "hmi-pki")
    cert, _ = ensure_certificate(hmi / "own", "urn:plant:hmi", socket.gethostname(), "HMI")
    der = ua.Variant(cert.read_bytes(), ua.VariantType.ByteString)
    async with running_edge(edge_settings(tmp_path, signer.trust_dir, users_file=users)) as node:
        async with Client(node.url) as observer:
            with pytest.raises(ua.uaerrors.BadUserAccessDenied):
                await observer.get_node(parent).call_method(add, der, True)
        admin = Client(node.url)
        admin.set_user("sec")
        admin.set_password(PASSWORD)
        async with admin:
            await admin.get_node(parent).call_method(add, der, True)
            client = await secure_client(node.url, hmi, application_uri="urn:plant:hmi", name="HMI")
            async with client:
                assert await client.get_namespace_array()
            thumbprint = pki.thumbprint(x509.load_der_x509_certificate(cert.read_bytes()))
            await admin.get_node(parent).call_method(remove, ua.Variant(thumbprint, ua.VariantType.String), True)
        client = await secure_client(node.url, hmi, application_uri="urn:plant:hmi", name="HMI")
        with pytest.raises(ua.uaerrors.BadCertificateUntrusted):
            await client.connect()


@pytest.mark.timeout(180)
async def test_a_certificate_renewed_at_start_keeps_the_trust_of_its_peers(tmp_path: Path, signer: Signer) -> None:
    """The gateway's certificate, 30 days from expiry, is renewed at start with the same key and subject:
    an edge node that trusted the old one accepts the new one without being told (it chains to the old)."""
    from asyncua.crypto.cert_gen import generate_self_signed_app_certificate
    from cryptography.x509.oid import ExtendedKeyUsageOID

    from gateway.settings import GatewaySettings as PlainGatewaySettings
    from sdk.opcua.certificate import _key

    data_dir = tmp_path / "gateway"
    own = data_dir / "pki" / "own"
    own.mkdir(parents=True)
    key = _key(own / "key.pem")
    old = generate_self_signed_app_certificate(
        key,
        INSTANCE_URI,
        {"commonName": "ModelLine Model Manager", "organizationName": "ModelLine"},
        [x509.UniformResourceIdentifier(INSTANCE_URI), x509.DNSName(socket.gethostname())],
        extended=[ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
        days=30,
    )
    (own / "cert.der").write_bytes(old.public_bytes(serialization.Encoding.DER))
    trust_ca(data_dir / "pki")  # for this test's own client only
    settings = edge_settings(tmp_path, signer.trust_dir, anonymous_role="")  # the gateway's certificate identity
    pki.approve(settings.data_dir / "pki", str(own / "cert.der"))
    async with running_edge(settings) as node:
        gateway_settings = PlainGatewaySettings(
            endpoint=f"opc.tcp://127.0.0.1:{free_port()}/gateway/",
            data_dir=data_dir,
            trust_dir=signer.trust_dir,
            anonymous_role="Engineer",
        )
        async with Gateway(gateway_settings) as gateway:
            renewed = x509.load_der_x509_certificate((own / "cert.der").read_bytes())
            assert renewed.serial_number != old.serial_number
            assert renewed.not_valid_after_utc - dt.datetime.now(dt.UTC) > dt.timedelta(days=700)
            await register_device(gateway.url, "edge-1", node.url)
            assert await gateway.devices.links["edge-1"].wait_online(30)
            assert not pki.entries(settings.data_dir / "pki", "rejected")
