"""X.509 signing identities: certificates, CSRs, and checking a signer's chain.

A signing identity is a private key (EC P-256 or RSA-3072) with its certificate and
the certificates between it and a root (PEM, as plant PKIs issue them). A quick start
makes a self-signed certificate; a plant makes a CSR and has its CA sign it.

Chain checks use ``cryptography.x509.verification`` (RFC 5280 path building, checked at
the signing time). That module does not read CRLs, so revocation is checked here by
hand: each certificate of the built chain is looked up in the CRLs its issuer signed.
pyhanko-certvalidator would do both, but its API is asyncio-only (verification runs in
worker threads of the servers and in the CLI) and it brings aiohttp for fetching, which
an offline plant network never does; cryptography is already a dependency.

A CAdES-B-B signature carries no trusted time stamp: the signing time is the signer's
claim. Validity is checked at that time (an old package stays valid after its author's
certificate expires), revocation at any time (a revoked key may have signed anything).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from sdk.errors import KeyFileError, NotFound, SignerExpired, SignerRevoked, UntrustedKey, UsageError

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes

CERT_SUFFIXES = (".pem", ".crt", ".cer")
CRL_SUFFIXES = (".crl",)
KEY_ALGORITHMS = ("ec-p256", "rsa-3072")


@dataclass(frozen=True)
class SigningIdentity:
    """A private key and its certificate chain (signer first, root last or absent)."""

    private_key: CertificateIssuerPrivateKeyTypes
    chain: tuple[x509.Certificate, ...]

    @property
    def certificate(self) -> x509.Certificate:
        """The signer's own certificate."""
        return self.chain[0]


def subject_name(cert: x509.Certificate) -> str:
    """The certificate's subject as one readable line (RFC 4514)."""
    return cert.subject.rfc4514_string()


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 fingerprint of the DER certificate, hex."""
    from cryptography.hazmat.primitives import hashes

    return cert.fingerprint(hashes.SHA256()).hex()


def _new_key(algorithm: str) -> CertificateIssuerPrivateKeyTypes:
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    if algorithm == "ec-p256":
        return ec.generate_private_key(ec.SECP256R1())
    if algorithm == "rsa-3072":
        return rsa.generate_private_key(public_exponent=65537, key_size=3072)
    raise UsageError(f"key algorithm {algorithm!r} is not one of {', '.join(KEY_ALGORITHMS)}")


def _write_private(path: Path, key: CertificateIssuerPrivateKeyTypes, passphrase: bytes | None) -> None:
    from cryptography.hazmat.primitives import serialization

    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
    )
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # never world-readable for an instant
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)


def _name(common_name: str, organization: str | None) -> x509.Name:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attrs)


@dataclass(frozen=True)
class IdentityFiles:
    """What ``generate_identity`` wrote."""

    private_path: Path
    cert_path: Path | None = None
    csr_path: Path | None = None
    subject: str = ""
    fingerprint: str = ""


def signing_certificate(
    subject: x509.Name,
    public_key: object,
    issuer: x509.Name,
    issuer_key: CertificateIssuerPrivateKeyTypes,
    *,
    ca: bool = False,
    not_before: datetime | None = None,
    days: int = 825,
) -> x509.Certificate:
    """A certificate for signing packages (or, with ``ca``, for issuing such certificates)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    start = not_before or datetime.now(UTC) - timedelta(minutes=5)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)  # type: ignore[arg-type]
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=not ca,
                content_commitment=not ca,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)  # type: ignore[arg-type]
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    )
    return builder.sign(issuer_key, hashes.SHA256() if not _is_ed(issuer_key) else None)


def _is_ed(key: object) -> bool:
    from cryptography.hazmat.primitives.asymmetric import ed448, ed25519

    return isinstance(key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey)


def generate_identity(
    out_dir: Path,
    name: str = "signing",
    *,
    common_name: str | None = None,
    organization: str | None = None,
    algorithm: str = "ec-p256",
    csr: bool = False,
    days: int = 825,
    passphrase: bytes | None = None,
) -> IdentityFiles:
    """Write ``<name>.key`` and either a self-signed ``<name>.pem`` or a CSR ``<name>.csr`` for the plant CA."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization

    out_dir.mkdir(parents=True, exist_ok=True)
    private_path = out_dir / f"{name}.key"
    if private_path.exists():
        raise UsageError(f"{private_path} already exists; choose another --name or folder")
    key = _new_key(algorithm)
    subject = _name(common_name or name, organization)
    if csr:
        request = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
        _write_private(private_path, key, passphrase)
        csr_path = out_dir / f"{name}.csr"
        csr_path.write_bytes(request.public_bytes(serialization.Encoding.PEM))
        return IdentityFiles(private_path, csr_path=csr_path, subject=subject.rfc4514_string())
    cert = signing_certificate(subject, key.public_key(), subject, key, days=days)
    _write_private(private_path, key, passphrase)
    cert_path = out_dir / f"{name}.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return IdentityFiles(
        private_path, cert_path=cert_path, subject=subject.rfc4514_string(), fingerprint=fingerprint(cert)
    )


def load_certificates(path: Path) -> list[x509.Certificate]:
    """Every certificate in a PEM (or single DER) file."""
    from cryptography import x509

    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise NotFound(f"certificate file {path} does not exist") from None
    try:
        if b"-----BEGIN" in data:
            certs = x509.load_pem_x509_certificates(data)
        else:
            certs = [x509.load_der_x509_certificate(data)]
    except ValueError:
        raise KeyFileError(f"{path} is not an X.509 certificate file (PEM or DER)") from None
    return certs


def load_identity(cert_path: Path, key_path: Path, passphrase: bytes | None = None) -> SigningIdentity:
    """Read a signing key and its certificate chain; the key must belong to the first certificate."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    from sdk.keys import PASSPHRASE_ENV

    if passphrase is None and os.environ.get(PASSPHRASE_ENV):
        passphrase = os.environ[PASSPHRASE_ENV].encode()
    chain = load_certificates(cert_path)
    try:
        data = key_path.read_bytes()
    except FileNotFoundError:
        raise NotFound(f"signing key {key_path} does not exist") from None
    try:
        key = serialization.load_pem_private_key(data, password=passphrase)
    except TypeError:
        raise KeyFileError(
            f"signing key {key_path}: give its passphrase (${PASSPHRASE_ENV}), or leave it out"
        ) from None
    except ValueError:
        raise KeyFileError(f"{key_path} is not a PEM private key, or the passphrase is wrong") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise KeyFileError(f"signing key {key_path} is not an EC or RSA key (X.509 signing needs one)")
    pub = serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(serialization.Encoding.DER, pub) != chain[0].public_key().public_bytes(
        serialization.Encoding.DER, pub
    ):
        raise KeyFileError(f"signing key {key_path} does not belong to the certificate in {cert_path}")
    return SigningIdentity(key, tuple(chain))


class CertificateTrust:
    """Root certificates and CRLs; checks a signer's chain at its signing time."""

    def __init__(self, roots: list[x509.Certificate], crls: list[x509.CertificateRevocationList]) -> None:
        self.roots = list(roots)
        self.crls = list(crls)

    @classmethod
    def load_files(cls, files: list[Path]) -> CertificateTrust:
        """Read certificate files (*.pem, *.crt, *.cer) and CRLs (*.crl, PEM or DER)."""
        from cryptography import x509

        roots: list[x509.Certificate] = []
        crls: list[x509.CertificateRevocationList] = []
        for file in files:
            if file.suffix in CRL_SUFFIXES:
                data = file.read_bytes()
                try:
                    crl = x509.load_pem_x509_crl(data) if b"-----BEGIN" in data else x509.load_der_x509_crl(data)
                except ValueError:
                    raise KeyFileError(f"{file} is not a certificate revocation list") from None
                crls.append(crl)
            else:
                roots.extend(load_certificates(file))
        return cls(roots, crls)

    def __len__(self) -> int:
        return len(self.roots)

    @property
    def names(self) -> list[str]:
        """Subjects of the trusted roots."""
        return [subject_name(c) for c in self.roots]

    def validate(
        self, signer: x509.Certificate, others: list[x509.Certificate], at: datetime
    ) -> list[x509.Certificate]:
        """The chain from ``signer`` to a trusted root, valid at ``at`` and not revoked; else a one-line refusal."""
        from cryptography.x509.verification import ExtensionPolicy, PolicyBuilder, Store, VerificationError

        who = subject_name(signer)
        if not self.roots:
            raise UntrustedKey(f"signer {who} is not trusted: the trust store holds no root certificates")
        if at < signer.not_valid_before_utc or at > signer.not_valid_after_utc:
            raise SignerExpired(
                f"signer certificate {who} was not valid at signing time {at.isoformat()} "
                f"(valid {signer.not_valid_before_utc.isoformat()} to {signer.not_valid_after_utc.isoformat()})"
            )
        builder = (
            PolicyBuilder()
            .store(Store(self.roots))
            .time(at)
            # Package signing certificates carry no TLS names or EKUs: any end-entity extensions are allowed,
            # CAs must still be proper CAs (basic constraints, key usage).
            .extension_policies(ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=ExtensionPolicy.permit_all())
        )
        try:
            chain = list(builder.build_client_verifier().verify(signer, others).chain)
        except VerificationError as exc:
            raise UntrustedKey(
                f"signer {who} does not chain to a trusted root at signing time ({_short(exc)}); "
                f"trusted roots: {'; '.join(self.names)}"
            ) from None
        self._check_revocation(chain)
        return chain

    def _check_revocation(self, chain: list[x509.Certificate]) -> None:
        """Refuse if a CRL signed by a certificate's issuer lists it.

        Written here: cryptography's verifier reads no CRLs.
        """
        for cert, issuer in zip(chain, chain[1:], strict=False):
            for crl in self.crls:
                if crl.issuer != cert.issuer or not crl.is_signature_valid(issuer.public_key()):  # type: ignore[arg-type]
                    continue
                revoked = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
                if revoked is not None:
                    raise SignerRevoked(
                        f"signer certificate {subject_name(cert)} (serial {cert.serial_number:x}) was revoked "
                        f"on {revoked.revocation_date_utc.isoformat()} by {subject_name(issuer)}"
                    )


def _short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]
