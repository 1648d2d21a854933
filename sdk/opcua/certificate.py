"""An application's own instance certificate (OPC 10000-4 6.1.2, OPC 10000-6 6.2.2).

Made on first start and kept in ``<data folder>/pki/own`` (folder 0700, key 0600): ``cert.der``
and ``key.pem``. With it a ModelLine server also offers its secure endpoints, and its unencrypted
endpoint asks clients to encrypt passwords with this certificate (the UserTokenPolicy's
SecurityPolicyUri, OPC 10000-4 7.41), so a login never crosses the network in clear text.

A certificate ModelLine made (self-signed, Organization "ModelLine") is valid for two years and
renewed, with the same key and subject, when less than ``RENEW_DAYS`` remain, when it is not valid
now (a clock that jumped back before its start), or when the application URI or host name in it no
longer fit. A new one starts ``START_MARGIN`` before now, so that a peer whose clock is a little
behind, or a clock stepped back a little, does not find it not yet valid. A renewed certificate
chains to the one it replaces (a ModelLine certificate may sign certificates: same subject, signed
with the same key), so a peer that trusted the old one accepts it (sdk.opcua.pki ``check``); only the
holder of the key can make such a certificate.

A certificate ModelLine did not make (one a plant CA issued, or one an administrator put there) is
never replaced: ``due`` says when it should be, and the caller warns (sdk.opcua.renewal).
"""

from __future__ import annotations

import datetime as dt
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from asyncua.crypto.cert_gen import dump_private_key_as_pem, generate_private_key
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from sdk.errors import UsageError

VALID_DAYS = 730
RENEW_DAYS = 90
START_MARGIN = dt.timedelta(days=1)
ORGANIZATION = "ModelLine"
_writing = threading.Lock()  # a server's check and its client links (threads of one process) share the files


def _key(path: Path) -> RSAPrivateKey:
    if path.is_file():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, RSAPrivateKey):
            raise UsageError(f"{path} is not an RSA private key; remove it to have a new one made")
        return key
    key = generate_private_key()
    fd = os.open(path.with_suffix(".tmp"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(dump_private_key_as_pem(key))
    os.replace(path.with_suffix(".tmp"), path)
    return key


def made_here(cert: x509.Certificate) -> bool:
    """Whether ModelLine made ``cert``: self-signed (issuer is subject, signed by its own key) for ModelLine."""
    if cert.issuer != cert.subject:
        return False
    organizations = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    if [o.value for o in organizations] != [ORGANIZATION]:
        return False
    try:
        cert.verify_directly_issued_by(cert)
    except Exception:  # InvalidSignature, or not a key that can sign
        return False
    return True


def _names_fit(cert: x509.Certificate, app_uri: str, host: str) -> bool:
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    return app_uri in names.get_values_for_type(x509.UniformResourceIdentifier) and host in names.get_values_for_type(
        x509.DNSName
    )


def due(cert: x509.Certificate, now: dt.datetime) -> str:
    """Why ``cert`` should be renewed at ``now`` (wall clock, UTC), or '' when it need not be."""
    if now < cert.not_valid_before_utc:
        return f"not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC (the clock went back?)"
    left = cert.not_valid_after_utc - now
    if left <= dt.timedelta(0):
        return f"expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
    if left < dt.timedelta(days=RENEW_DAYS):
        return f"expires on {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC, in {left.days} days"
    return ""


def self_signed(
    key: RSAPrivateKey, app_uri: str, host: str, name: str, now: dt.datetime, subject: x509.Name | None = None
) -> x509.Certificate:
    """A ModelLine application instance certificate (OPC 10000-6 6.2.2), valid from ``now - START_MARGIN``
    for ``VALID_DAYS``, with ``subject`` (a renewal keeps its predecessor's) or the one asyncua gives its
    self-signed certificates (cert_gen), and the same extensions, so that a renewal chains to its predecessor."""
    subject = subject or x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, app_uri[:64]),
            x509.NameAttribute(NameOID.COMMON_NAME, name[:64]),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
        ]
    )
    serial, key_id = x509.random_serial_number(), x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .not_valid_before(now - START_MARGIN)
        .not_valid_after(now + dt.timedelta(days=VALID_DAYS))
        .serial_number(serial)
        .public_key(key.public_key())
        .add_extension(key_id, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier(key_id.digest, [x509.DirectoryName(subject)], serial), critical=False
        )
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(app_uri), x509.DNSName(host)]), critical=False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=False)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=True,
                key_encipherment=True,
                data_encipherment=True,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
    )
    return builder.sign(key, hashes.SHA256())


@dataclass(frozen=True)
class OwnCertificate:
    """What ``ensure`` found or made."""

    cert_file: Path
    key_file: Path
    certificate: x509.Certificate
    key: RSAPrivateKey
    renewed: str = ""  # why a new certificate was made now ('' when the one there was kept)
    replaced: x509.Certificate | None = None  # the certificate it replaced
    due: str = ""  # why the certificate kept should be renewed, when ModelLine may not (not made here)


def ensure(folder: Path, app_uri: str, host: str, name: str, now: dt.datetime | None = None) -> OwnCertificate:
    """The certificate and key in ``folder``: made when missing, renewed when a ModelLine certificate is
    due at ``now`` (the wall clock by default) or its names no longer fit; a certificate made elsewhere
    is kept (blocking: call in a thread)."""
    with _writing:
        return _ensure(folder, app_uri, host, name, now or dt.datetime.now(dt.UTC))


def _ensure(folder: Path, app_uri: str, host: str, name: str, now: dt.datetime) -> OwnCertificate:
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    key_file, cert_file = folder / "key.pem", folder / "cert.der"
    key = _key(key_file)
    old = x509.load_der_x509_certificate(cert_file.read_bytes()) if cert_file.is_file() else None
    why, subject = "", None
    if old is not None:
        mine = old.public_key().public_numbers() == key.public_key().public_numbers()  # type: ignore[union-attr]
        if not made_here(old):
            if not mine:
                raise UsageError(
                    f"{cert_file} was not made by ModelLine and does not belong to {key_file}: "
                    "put the key that belongs to it there, or remove both to have a self-signed pair made"
                )
            return OwnCertificate(cert_file, key_file, old, key, due=due(old, now))
        if not mine:
            why = "it does not belong to the key"
        elif not _names_fit(old, app_uri, host):
            why = "its application URI or host name changed"
        else:
            why, subject = due(old, now), old.subject  # same key and subject: peers' trust carries over
        if not why:
            return OwnCertificate(cert_file, key_file, old, key)
    cert = self_signed(key, app_uri, host, name, now, subject)
    cert_file.with_suffix(".tmp").write_bytes(cert.public_bytes(serialization.Encoding.DER))
    os.replace(cert_file.with_suffix(".tmp"), cert_file)
    return OwnCertificate(cert_file, key_file, cert, key, renewed=why or "first start", replaced=old)


def ensure_certificate(folder: Path, app_uri: str, host: str, name: str) -> tuple[Path, Path]:
    """The certificate and key files in ``folder``, made or renewed when needed (``ensure``; blocking)."""
    own = ensure(folder, app_uri, host, name)
    return own.cert_file, own.key_file
