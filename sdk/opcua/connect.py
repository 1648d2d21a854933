"""How every ModelLine client connects: with its own application certificate, over the strongest
SecurityPolicy both sides offer (OPC 10000-4 5.4.4 GetEndpoints, then OpenSecureChannel on the chosen one).

Used by the CLI (sdk.di_client.connect), the gateway's device links, the edge node's registration with
its gateway and its PLC sources. ``security`` names what a link accepts:

- ``auto`` (the default): SignAndEncrypt before Sign, Aes256_Sha256_RsaPss, then Aes128_Sha256_RsaOaep,
  then Basic256Sha256; never SecurityPolicy None;
- a policy name (``Basic256Sha256``, ``Aes128_Sha256_RsaOaep``, ``Aes256_Sha256_RsaPss``, and for old
  PLCs ``Basic256`` or ``Basic128Rsa15``), optionally with ``:Sign`` or ``:SignAndEncrypt``: that one only;
- ``None``: no security at all, only when named (a PLC that offers nothing else).

The client's certificate is ``<pki_dir>/own/cert.der`` (made on first use with ``application_uri``); the
server must have it in its trust list (``modelline trust approve`` on the server, or put it in the
server's ``pki/trusted/certs``). Trust goes both ways: before it opens a secure channel the client checks
the server's certificate against its own trust list in ``pki_dir`` (OPC 10000-4 6.1.3, the same checks a
server makes of its clients: validity, ApplicationUri, trust, revocation). An unknown server certificate
is kept in ``<pki_dir>/rejected`` and the connection refused (ServerNotTrusted) until an administrator
approves it, so a man in the middle with a certificate of its own gets no session and no password.
The host name check of Table 106 is not made: ModelLine's certificates name the host, while plants
often reach a node by an address or an alias, and the trust list already names the exact certificate
or the plant CA."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from asyncua import Client, ua
from asyncua.crypto import security_policies as sp
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from sdk.errors import ServerNotTrusted, UsageError
from sdk.opcua.certificate import RENEW_DAYS, ensure_certificate
from sdk.opcua.pki import (
    BAD_CERTIFICATE_UNTRUSTED,
    CertificateRefused,
    check_peer,
    common_name,
    ensure_layout,
    load_certificate,
    thumbprint,
)

POLICIES: dict[str, type[sp.SecurityPolicy]] = {
    "Aes256_Sha256_RsaPss": sp.SecurityPolicyAes256Sha256RsaPss,
    "Aes128_Sha256_RsaOaep": sp.SecurityPolicyAes128Sha256RsaOaep,
    "Basic256Sha256": sp.SecurityPolicyBasic256Sha256,
    "Basic256": sp.SecurityPolicyBasic256,
    "Basic128Rsa15": sp.SecurityPolicyBasic128Rsa15,
}
AUTO = ("Aes256_Sha256_RsaPss", "Aes128_Sha256_RsaOaep", "Basic256Sha256")
_MODES = {"Sign": ua.MessageSecurityMode.Sign, "SignAndEncrypt": ua.MessageSecurityMode.SignAndEncrypt}

CLIENT_URI = "urn:modelline:cli"
GATEWAY_URI = "urn:modelline:gateway"  # the Model Manager's ApplicationUri, server and client alike
EDGE_URI_PREFIX = "urn:modelline:edge:"  # an edge node's ApplicationUri: this and its device id
PKI_DIR_VARIABLE = "MODELLINE_PKI_DIR"


def default_pki_dir() -> Path:
    """The CLI's PKI folder: $MODELLINE_PKI_DIR, else ~/.config/modelline/pki (XDG_CONFIG_HOME honoured)."""
    if os.environ.get(PKI_DIR_VARIABLE):
        return Path(os.environ[PKI_DIR_VARIABLE])
    return _config_pki_dir()


def _config_pki_dir() -> Path:
    config = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return config / "modelline" / "pki"


def check_security(text: str) -> str:
    """``text`` if it is a valid ``security`` setting, else a UsageError naming the choices."""
    policy, _, mode = text.partition(":")
    if text in ("auto", "None") or (policy in POLICIES and mode in ("", *_MODES)):
        return text
    raise UsageError(
        f"security {text!r} is not auto, None or one of {', '.join(POLICIES)} (optionally :Sign or :SignAndEncrypt)"
    )


def choose_endpoint(
    endpoints: list[ua.EndpointDescription], security: str = "auto"
) -> tuple[type[sp.SecurityPolicy] | None, ua.EndpointDescription]:
    """The endpoint to use and its policy class (None for SecurityPolicy None), or a UsageError saying
    what the server offers instead."""
    check_security(security)
    by_key = {(e.SecurityPolicyUri, e.SecurityMode): e for e in endpoints}
    if security == "None":
        wanted: list[tuple[str, ua.MessageSecurityMode]] = [(sp.SecurityPolicyNone.URI, ua.MessageSecurityMode.None_)]
    else:
        policy, _, mode = security.partition(":")
        names = AUTO if policy == "auto" else (policy,)
        modes = [_MODES[mode]] if mode else [ua.MessageSecurityMode.SignAndEncrypt, ua.MessageSecurityMode.Sign]
        wanted = [(POLICIES[n].URI, m) for m in modes for n in names]
    for key in wanted:
        if key in by_key:
            cls = next((c for c in POLICIES.values() if c.URI == key[0]), None)
            return cls, by_key[key]
    offered = ", ".join(sorted({f"{e.SecurityPolicyUri.rsplit('#', 1)[-1]}:{e.SecurityMode.name}" for e in endpoints}))
    raise UsageError(f"the server offers no endpoint with security {security!r} (it offers: {offered or 'none'})")


async def own_certificate(pki_dir: Path, application_uri: str, name: str) -> tuple[Path, Path]:
    """This application's certificate and key in ``pki_dir/own``, made on first use (off the event loop)."""
    await asyncio.to_thread(ensure_layout, pki_dir)
    return await asyncio.to_thread(ensure_certificate, pki_dir / "own", application_uri, socket.gethostname(), name)


_Loaded = tuple[tuple[int, int], x509.Certificate, PrivateKeyTypes]
_loaded: dict[tuple[Path, str], _Loaded] = {}


async def _own_loaded(pki_dir: Path, application_uri: str, name: str) -> tuple[x509.Certificate, PrivateKeyTypes]:
    """``own_certificate``, parsed: kept per process while the files are unchanged and the certificate is not
    due, so that a gateway opening hundreds of links does not check and parse its RSA key for each (asyncua
    would parse it on the event loop); a renewal (new files) is picked up at the next connection."""
    key = (pki_dir, application_uri)
    own = pki_dir / "own"

    def stamp() -> tuple[int, int]:
        return (own / "cert.der").stat().st_mtime_ns, (own / "key.pem").stat().st_mtime_ns

    hit = _loaded.get(key)
    if hit is not None:
        try:
            fresh = await asyncio.to_thread(stamp) == hit[0]
        except OSError:
            fresh = False
        if fresh and hit[1].not_valid_after_utc - dt.datetime.now(dt.UTC) > dt.timedelta(days=RENEW_DAYS):
            return hit[1], hit[2]
    cert_file, key_file = await own_certificate(pki_dir, application_uri, name)

    def load() -> _Loaded:
        cert = load_certificate(cert_file.read_bytes())
        private = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
        return stamp(), cert, private

    loaded = _loaded[key] = await asyncio.to_thread(load)
    return loaded[1], loaded[2]


def approve_hint(pki_dir: Path, what: str) -> str:
    """The ``modelline trust approve`` command that trusts ``what`` (a thumbprint) in ``pki_dir``."""
    if pki_dir == _config_pki_dir():
        where = ""
    elif pki_dir.name == "pki":
        where = f" --data-dir {pki_dir.parent}"
    else:
        where = f" --pki-dir {pki_dir}"
    return f"modelline trust approve{where} {what}"


async def check_server(pki_dir: Path, url: str, endpoint: ua.EndpointDescription) -> x509.Certificate:
    """The server certificate of ``endpoint`` (its first one when the server sends a chain, OPC 10000-6
    6.2.3) once it passes this client's trust list; else ServerNotTrusted saying why and what to do."""
    der = endpoint.ServerCertificate or b""
    if len(der) < 4:
        raise ServerNotTrusted(f"{url} offers a secure endpoint without a certificate: not connecting")
    try:
        cert = load_certificate(bytes(der[: int.from_bytes(der[2:4], "big") + 4]))
    except ValueError:
        raise ServerNotTrusted(f"{url} sent a certificate that cannot be read: not connecting") from None
    try:
        await check_peer(pki_dir, cert, endpoint.Server.ApplicationUri, address=url)
    except CertificateRefused as refused:
        named = f"{common_name(cert)!r} [{thumbprint(cert)}]"
        if refused.status == BAD_CERTIFICATE_UNTRUSTED:
            raise ServerNotTrusted(
                f"{url}: this client does not trust the server's certificate {named} (kept in "
                f"{pki_dir / 'rejected'}). Check that it is that server's ('modelline trust show own --data-dir "
                f"DIR' there shows its thumbprint), then run '{approve_hint(pki_dir, thumbprint(cert)[:16])}'"
            ) from None
        raise ServerNotTrusted(f"{url}: the server's certificate {named} is refused: {refused.reason}") from None
    return cert


async def secure_client(
    url: str,
    pki_dir: Path,
    *,
    application_uri: str = CLIENT_URI,
    name: str = "ModelLine CLI",
    security: str = "auto",
    timeout_s: float = 10.0,
    watchdog_intervall: float = 1.0,
    user: str | None = None,
    password: str | None = None,
    certificate_identity: bool = False,
) -> Client:
    """A client set up (not yet connected) for ``url``: GetEndpoints, then the strongest endpoint both
    sides offer (``security``), with this application's certificate, once the server's passed this
    client's trust list (``check_server``). ``user``/``password`` log in (the
    password is encrypted with the server's certificate, OPC 10000-4 7.41.4); ``certificate_identity``
    logs in with the application certificate as an X509 user identity (OPC 10000-4 7.41.5) instead."""
    cert, key = await _own_loaded(pki_dir, application_uri, name)
    client = Client(url, timeout=timeout_s, watchdog_intervall=watchdog_intervall)
    client.application_uri = application_uri
    client.name = name
    client.description = name
    endpoints = await client.connect_and_get_server_endpoints()
    policy, endpoint = choose_endpoint(endpoints, security)
    if policy is not None:
        server_cert = await check_server(pki_dir, url, endpoint)
        # What asyncua's Client.set_security does, with this application's certificate and key parsed once.
        secured = policy(server_cert, cert, key, endpoint.SecurityMode)
        client.security_policy = secured  # type: ignore[assignment]  # asyncua types it as its initial None policy
        client.uaclient.set_security(secured)
    if user:
        client.set_user(user)
        client.set_password(password or "")
    elif certificate_identity:
        client.user_certificate = cert
        client.user_private_key = key
    return client


@dataclass(frozen=True)
class ClientIdentity:
    """Who a process is when it connects to other servers: its PKI folder and ApplicationUri, and the
    security it accepts per endpoint URL (default ``auto``)."""

    pki_dir: Path
    application_uri: str
    name: str
    security: Mapping[str, str] = field(default_factory=dict)

    async def client(self, url: str, *, timeout_s: float = 10.0, watchdog_intervall: float = 1.0) -> Client:
        """``secure_client`` for ``url`` as this application, with the security set for that URL."""
        return await secure_client(
            url,
            self.pki_dir,
            application_uri=self.application_uri,
            name=self.name,
            security=self.security.get(url, "auto"),
            timeout_s=timeout_s,
            watchdog_intervall=watchdog_intervall,
        )
