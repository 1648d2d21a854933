"""A server's application instance certificate (OPC 10000-4 6.1.2, OPC 10000-6 6.2.2).

Made on first start and kept in ``<data folder>/pki/own`` (folder 0700, key 0600): ``cert.der``
and ``key.pem``. With it a ModelLine server also offers Basic256Sha256 Sign and SignAndEncrypt
endpoints, and its unencrypted endpoint asks clients to encrypt passwords with this certificate
(the UserTokenPolicy's SecurityPolicyUri, OPC 10000-4 7.41), so a login never crosses the network
in clear text. The certificate is self-signed, valid for two years and renewed at start when less
than 90 days remain, or when the application URI or host name in it no longer fit; the key stays.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

from asyncua.crypto.cert_gen import dump_private_key_as_pem, generate_private_key, generate_self_signed_app_certificate
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.x509.oid import ExtendedKeyUsageOID

from sdk.errors import UsageError

VALID_DAYS = 730
RENEW_DAYS = 90


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


def _fits(cert: x509.Certificate, key: RSAPrivateKey, app_uri: str, host: str) -> bool:
    if cert.public_key().public_numbers() != key.public_key().public_numbers():  # type: ignore[union-attr]
        return False
    if cert.not_valid_after_utc - dt.datetime.now(dt.UTC) < dt.timedelta(days=RENEW_DAYS):
        return False
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    return app_uri in names.get_values_for_type(x509.UniformResourceIdentifier) and host in names.get_values_for_type(
        x509.DNSName
    )


def ensure_certificate(folder: Path, app_uri: str, host: str, name: str) -> tuple[Path, Path]:
    """The certificate and key files in ``folder``, made or renewed when needed (blocking: call in a thread)."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    key_file, cert_file = folder / "key.pem", folder / "cert.der"
    key = _key(key_file)
    if cert_file.is_file() and _fits(x509.load_der_x509_certificate(cert_file.read_bytes()), key, app_uri, host):
        return cert_file, key_file
    cert = generate_self_signed_app_certificate(
        key,
        app_uri,
        {"commonName": name[:64], "organizationName": "ModelLine"},
        [x509.UniformResourceIdentifier(app_uri), x509.DNSName(host)],
        extended=[ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
        days=VALID_DAYS,
    )
    cert_file.with_suffix(".tmp").write_bytes(cert.public_bytes(serialization.Encoding.DER))
    os.replace(cert_file.with_suffix(".tmp"), cert_file)
    return cert_file, key_file
