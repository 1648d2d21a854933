"""Trust between the servers and clients a test starts: one test CA per test process.

ModelLine servers refuse clients whose certificate they do not trust (sdk.opcua.pki), and connect to
each other with their own certificates. In tests every participant's certificate is issued by one CA
that every server trusts (a CA in ``pki/trusted/certs`` trusts what it issued, as on a plant with its
own CA):

- ``GatewaySettings`` / ``EdgeSettings`` here are the real settings whose data folder gets, when the
  settings are made, its PKI folder with an own certificate issued by the test CA and the CA trusted;
- ``Client`` is asyncua's Client that connects over the strongest secure endpoint with the test
  client's CA-issued certificate (the unencrypted endpoint only for a server that offers nothing else);
- ``client_pki()`` is that client's PKI folder, also the CLI's in tests (``MODELLINE_PKI_DIR``, set in
  tests/conftest.py), so commands run by tests connect trusted;
- ``seed(data_dir / "pki", uri, name)`` prepares a data folder for a server started as a process.

The tests of trust itself (tests/e2e/test_security_transport.py) use certificates not from this CA.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import socket
import tempfile
from pathlib import Path
from typing import Any

import asyncua
from asyncua import ua
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from edge_node.opcua.server import application_uri as edge_uri
from edge_node.settings import EdgeSettings as _EdgeSettings
from gateway.identity import GATEWAY_NAME, INSTANCE_URI
from gateway.settings import GatewaySettings as _GatewaySettings
from sdk.opcua.connect import CLIENT_URI, choose_endpoint
from sdk.opcua.pki import ensure_layout

CLIENT_APP_URI = CLIENT_URI


def _write_key(path: Path, key: rsa.RSAPrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    path.chmod(0o600)


@functools.cache
def _ca() -> tuple[Path, x509.Certificate, rsa.RSAPrivateKey]:
    root = Path(tempfile.mkdtemp(prefix="modelline-test-ca-"))
    cert, key = make_ca("ModelLine test CA")
    (root / "ca.der").write_bytes(cert.public_bytes(serialization.Encoding.DER))
    return root, cert, key


def make_ca(common_name: str) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    """A self-signed CA certificate and its key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3 * 365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )  # keyCertSign, cRLSign
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def ca_certificate() -> x509.Certificate:
    """The test CA's certificate."""
    return _ca()[1]


def issue(
    folder: Path,
    app_uri: str,
    name: str,
    *,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
    issuer: tuple[x509.Certificate, rsa.RSAPrivateKey] | None = None,
) -> tuple[Path, Path]:
    """``folder/cert.der`` and ``folder/key.pem``: an application instance certificate (OPC 10000-6 6.2.2)
    issued by the test CA (or ``issuer``); returns their paths."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    ca_cert, ca_key = issuer or _ca()[1:]
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name[:64])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or now - dt.timedelta(days=1))
        .not_valid_after(not_after or now + dt.timedelta(days=2 * 365))  # not due for renewal
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(app_uri), x509.DNSName(socket.gethostname())]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, True, True, True, False, False, False, False, False), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    cert_file, key_file = folder / "cert.der", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.DER))
    _write_key(key_file, key)
    return cert_file, key_file


def trust_ca(pki_dir: Path) -> Path:
    """Put the test CA into ``pki_dir/trusted/certs``; returns ``pki_dir``."""
    ensure_layout(pki_dir)
    (pki_dir / "trusted" / "certs" / "modelline-test-ca.der").write_bytes(
        ca_certificate().public_bytes(serialization.Encoding.DER)
    )
    return pki_dir


def seed(pki_dir: Path, app_uri: str, name: str) -> Path:
    """A PKI folder whose own certificate the test CA issued and which trusts that CA (kept if made before)."""
    trust_ca(pki_dir)
    if not (pki_dir / "own" / "cert.der").is_file():
        issue(pki_dir / "own", app_uri, name)
    return pki_dir


@functools.cache
def client_pki() -> Path:
    """The test client's (and in tests the CLI's) PKI folder."""
    return seed(Path(tempfile.mkdtemp(prefix="modelline-test-client-")) / "pki", CLIENT_APP_URI, "ModelLine CLI")


class GatewaySettings(_GatewaySettings):
    """Gateway settings whose data folder trusts the test CA and has a certificate it issued."""

    def model_post_init(self, context: Any) -> None:
        """Seed ``data_dir/pki``."""
        super().model_post_init(context)
        seed(self.data_dir / "pki", INSTANCE_URI, GATEWAY_NAME)


class EdgeSettings(_EdgeSettings):
    """Edge node settings whose data folder trusts the test CA and has a certificate it issued."""

    def model_post_init(self, context: Any) -> None:
        """Seed ``data_dir/pki``."""
        super().model_post_init(context)
        seed(self.data_dir / "pki", edge_uri(self), f"ModelLine Edge {self.device_id}")


class Client(asyncua.Client):
    """asyncua's Client, connecting over the strongest secure endpoint with the test client's certificate
    (over the unencrypted one only to a server that offers no other)."""

    _secured = False

    def __init__(self, url: str, timeout: float = 10, watchdog_intervall: float = 5.0, **kwargs: Any) -> None:
        # 10 s requests, not asyncua's 4 s, and a liveness probe every 5 s that may take as long, not 1 s
        # (asyncua drops a session whose probe takes longer than its interval): on a loaded test machine
        # each message is also signed and encrypted.
        super().__init__(url, timeout=timeout, watchdog_intervall=watchdog_intervall, **kwargs)

    async def connect(self) -> None:
        """Choose the endpoint and set the security once, then connect."""
        if not self._secured:
            self._secured = True
            await secure(self)
        await super().connect()


async def register_device(gateway_url: str, device_id: str, endpoint: str) -> None:
    """Call the gateway's ModelManager.RegisterDevice as the test client."""
    async with Client(gateway_url) as client:
        ml = await client.get_namespace_index("http://modelline.io/UA/")
        manager = await client.nodes.objects.get_child(f"{ml}:ModelManager")
        await manager.call_method(
            f"{ml}:RegisterDevice",
            ua.Variant(device_id, ua.VariantType.String),
            ua.Variant(endpoint, ua.VariantType.String),
        )


async def secure(client: asyncua.Client, security: str = "auto", pki_dir: Path | None = None) -> None:
    """Set ``client`` up for the strongest secure endpoint its server offers, with the test client's
    certificate (or the one in ``pki_dir/own``); leaves it on SecurityPolicy None if the server offers
    nothing else."""
    pki = pki_dir or client_pki()
    endpoints = await client.connect_and_get_server_endpoints()
    if not any(e.SecurityMode != ua.MessageSecurityMode.None_ for e in endpoints):
        return
    policy, endpoint = choose_endpoint(endpoints, security)
    assert policy is not None
    client.application_uri = CLIENT_APP_URI if pki_dir is None else client.application_uri
    der = endpoint.ServerCertificate
    await client.set_security(
        policy,
        str(pki / "own" / "cert.der"),
        str(pki / "own" / "key.pem"),
        server_certificate=bytes(der[: int.from_bytes(der[2:4], "big") + 4]),
        mode=endpoint.SecurityMode,
    )


def use_for_cli() -> None:
    """Make the CLI run by tests (in this process and its children) use the test client's certificate."""
    os.environ["MODELLINE_PKI_DIR"] = str(client_pki())
    os.environ.update(node_opcua_identity())  # and node-opcua (tests/interop/common.mjs)


def seed_process(argv: list[str], env: dict[str, str] | None = None) -> None:
    """Seed the data folder of a `modelline gateway|edge ...` command line (``--data-dir``, else the
    settings' environment variable or ``--config`` file, as the command reads them)."""
    import tomllib

    if not argv or argv[0] not in ("gateway", "edge"):
        return
    kind = argv[0]
    env = env if env is not None else dict(os.environ)

    def option(name: str) -> str | None:
        return argv[argv.index(name) + 1] if name in argv[:-1] else None

    config_file = option("--config")
    config = tomllib.loads(Path(config_file).read_text(encoding="utf-8")) if config_file else {}
    prefix = f"MODELLINE_{kind.upper()}_"
    data_dir = option("--data-dir") or env.get(prefix + "DATA_DIR") or config.get("data_dir")
    if data_dir is None:
        return
    if kind == "gateway":
        seed(Path(data_dir) / "pki", INSTANCE_URI, GATEWAY_NAME)
        return
    device = option("--device-id") or env.get(prefix + "DEVICE_ID") or config.get("device_id") or "edge-1"
    seed(Path(data_dir) / "pki", f"urn:modelline:edge:{device}", f"ModelLine Edge {device}")


@functools.cache
def node_opcua_identity() -> dict[str, str]:
    """Environment for tests/interop/common.mjs: node-opcua's certificate (PEM), issued by the test CA."""
    root = Path(tempfile.mkdtemp(prefix="modelline-test-node-opcua-"))
    cert, key = issue(root / "own", NODE_OPCUA_URI, "node-opcua test client")
    node_opcua_trusts_ca(root / "pki")
    pem = root / "cert.pem"
    pem.write_bytes(x509.load_der_x509_certificate(cert.read_bytes()).public_bytes(serialization.Encoding.PEM))
    return {
        "MODELLINE_TEST_NODE_OPCUA_CERT": str(pem),
        "MODELLINE_TEST_NODE_OPCUA_KEY": str(key),
        "MODELLINE_TEST_NODE_OPCUA_URI": NODE_OPCUA_URI,
        "MODELLINE_TEST_NODE_OPCUA_PKI": str(root / "pki"),
    }


NODE_OPCUA_URI = "urn:modelline:test:node-opcua"


def node_opcua_trusts_ca(pki_root: Path) -> Path:
    """A node-opcua PKI folder that trusts the test CA, which issued the test servers' certificates."""
    der = ca_certificate().public_bytes(serialization.Encoding.DER)
    for sub in ("trusted/certs", "issuers/certs"):
        (pki_root / sub).mkdir(parents=True, exist_ok=True)
        (pki_root / sub / "modelline-test-ca.der").write_bytes(der)
    for sub in ("trusted/crl", "issuers/crl"):  # its (empty) revocation list: node-opcua warns without one
        (pki_root / sub).mkdir(parents=True, exist_ok=True)
        (pki_root / sub / "modelline-test-ca.crl").write_bytes(ca_crl())
    return pki_root


@functools.cache
def ca_crl() -> bytes:
    """The test CA's revocation list (DER), revoking nothing."""
    _, ca_cert, ca_key = _ca()
    now = dt.datetime.now(dt.UTC)
    crl = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(now - dt.timedelta(days=1))
        .next_update(now + dt.timedelta(days=365))
        .sign(ca_key, hashes.SHA256())
    )
    return crl.public_bytes(serialization.Encoding.DER)
