"""A small plant PKI for tests: a CA, certificates it issues, and its CRL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from sdk.certs import SigningIdentity, signing_certificate
from sdk.keys import TrustStore


class Pki:
    """A plant CA with an issued signer, and its CRL."""

    def __init__(self, root: Path, name: str = "Plant CA") -> None:
        self.folder = root / name.replace(" ", "-")
        self.folder.mkdir()
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.name = x509.Name.from_rfc4514_string(f"CN={name}")
        self.cert = signing_certificate(self.name, self.key.public_key(), self.name, self.key, ca=True, days=3650)
        (self.folder / "root.pem").write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, cn: str, **kw: object) -> SigningIdentity:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name.from_rfc4514_string(f"CN={cn}")
        cert = signing_certificate(subject, key.public_key(), self.name, self.key, **kw)  # type: ignore[arg-type]
        return SigningIdentity(key, (cert, self.cert))

    def revoke(self, *certs: x509.Certificate) -> None:
        now = datetime.now(UTC)
        builder = x509.CertificateRevocationListBuilder().issuer_name(self.name)
        builder = builder.last_update(now - timedelta(minutes=1)).next_update(now + timedelta(days=7))
        for cert in certs:
            revoked = x509.RevokedCertificateBuilder().serial_number(cert.serial_number)
            builder = builder.add_revoked_certificate(revoked.revocation_date(now - timedelta(seconds=30)).build())
        crl = builder.sign(self.key, hashes.SHA256())
        (self.folder / "plant.crl").write_bytes(crl.public_bytes(serialization.Encoding.PEM))

    @property
    def trust(self) -> TrustStore:
        return TrustStore.load(self.folder)
