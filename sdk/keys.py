"""Signing keys and the trust store.

A trust store folder holds root certificates (*.pem, *.crt, *.cer) with their CRLs
(*.crl): X.509 signers of DI packages must chain to one of them (sdk/certs.py). It
may also hold legacy Ed25519 public keys (*.pub), which check the deprecated
.mlpkg packages for one more release.

Legacy keys are Ed25519 in standard PEM files (PKCS#8 private, SubjectPublicKeyInfo
public), so plant IT can inspect them with openssl. A key id is the first 16
bytes of the SHA-256 of the raw 32-byte public key, in hex: stable for the key,
whatever its file is called.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sdk.errors import KeyFileError, NotFound, UsageError

PRIVATE_SUFFIX = ".key"
PUBLIC_SUFFIX = ".pub"
PASSPHRASE_ENV = "MODELLINE_KEY_PASSPHRASE"

if TYPE_CHECKING:  # cryptography loads when a key is used, so that `modelline --help` starts at once
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

    from sdk.certs import CertificateTrust


def key_id(public_key: Ed25519PublicKey) -> str:
    """The stable fingerprint of a public key: 32 hex digits."""
    from cryptography.hazmat.primitives import serialization

    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:32]


@dataclass(frozen=True)
class KeyFiles:
    """Where ``generate_key_pair`` wrote a key pair, and its id."""

    private_path: Path
    public_path: Path
    key_id: str


def generate_key_pair(out_dir: Path, name: str = "signing", passphrase: bytes | None = None) -> KeyFiles:
    """Write ``<name>.key`` (mode 0600, encrypted if a passphrase is given) and ``<name>.pub``.

    Refuses to overwrite an existing private key: losing one means re-signing every package.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    private_path = out_dir / f"{name}{PRIVATE_SUFFIX}"
    public_path = out_dir / f"{name}{PUBLIC_SUFFIX}"
    if private_path.exists():
        raise UsageError(f"{private_path} already exists; choose another --name or folder")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
    )
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    # Create with 0600 from the start, never world-readable for an instant.
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    public = key.public_key()
    public_path.write_bytes(
        public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return KeyFiles(private_path, public_path, key_id(public))


def load_private_key(path: Path, passphrase: bytes | None = None) -> Ed25519PrivateKey:
    """Read an Ed25519 private key; the passphrase falls back to $MODELLINE_KEY_PASSPHRASE."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    if passphrase is None and os.environ.get(PASSPHRASE_ENV):
        passphrase = os.environ[PASSPHRASE_ENV].encode()
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise NotFound(f"signing key {path} does not exist") from None
    except OSError as exc:
        raise KeyFileError(f"cannot read signing key {path}: {exc.strerror}") from None
    try:
        key = serialization.load_pem_private_key(data, password=passphrase)
    except TypeError:
        if passphrase is None:
            raise KeyFileError(
                f"signing key {path} is encrypted: give its passphrase (--passphrase-file or ${PASSPHRASE_ENV})"
            ) from None
        raise KeyFileError(f"signing key {path} is not encrypted: leave out the passphrase") from None
    except (ValueError, UnsupportedAlgorithm):
        raise KeyFileError(f"{path} is not a PEM private key, or the passphrase is wrong") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"signing key {path} is not an Ed25519 key")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    """Read an Ed25519 public key from a PEM file."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except FileNotFoundError:
        raise NotFound(f"public key {path} does not exist") from None
    except (ValueError, UnsupportedAlgorithm):
        raise KeyFileError(f"{path} is not a PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise KeyFileError(f"public key {path} is not an Ed25519 key")
    return key


class TrustStore:
    """What a verifier accepts: root certificates with CRLs, and legacy Ed25519 keys by key id."""

    def __init__(
        self, keys: dict[str, Ed25519PublicKey], source: str = "", certificates: CertificateTrust | None = None
    ) -> None:
        from sdk.certs import CertificateTrust

        self._keys = dict(keys)
        self.source = source
        self.certificates = certificates or CertificateTrust([], [])
        self.approval: TrustStore | None = None

    def requiring_approval(self, approval: TrustStore | None) -> TrustStore:
        """This store, also requiring an approval signature that chains to ``approval`` (None: no approval)."""
        policy = TrustStore(self._keys, self.source, self.certificates)
        policy.approval = approval
        return policy

    @classmethod
    def load_policy(cls, trust_dir: Path, approval_dir: Path | None) -> TrustStore:
        """The author trust store of ``trust_dir``, requiring approval by ``approval_dir`` when given."""
        trust = cls.load(trust_dir)
        return trust.requiring_approval(cls.load(approval_dir) if approval_dir is not None else None)

    @classmethod
    def load(cls, path: Path) -> TrustStore:
        """Load a folder (or one file) of root certificates, CRLs and legacy ``*.pub`` keys."""
        from sdk.certs import CERT_SUFFIXES, CRL_SUFFIXES, CertificateTrust

        if not path.exists():
            raise NotFound(f"trust store {path} does not exist")
        files = [path] if path.is_file() else sorted(p for p in path.iterdir() if p.is_file())
        keys = {}
        for file in (f for f in files if f.suffix == PUBLIC_SUFFIX):
            key = load_public_key(file)
            keys[key_id(key)] = key
        certificates = CertificateTrust.load_files([f for f in files if f.suffix in CERT_SUFFIXES + CRL_SUFFIXES])
        if not keys and not len(certificates):
            raise KeyFileError(
                f"trust store {path} holds no root certificates ({', '.join('*' + s for s in CERT_SUFFIXES)}) "
                f"or public keys (*{PUBLIC_SUFFIX})"
            )
        return cls(keys, source=str(path), certificates=certificates)

    def get(self, kid: str) -> Ed25519PublicKey | None:
        """The trusted key with this id, or None."""
        return self._keys.get(kid)

    def __contains__(self, kid: object) -> bool:
        return kid in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    @property
    def key_ids(self) -> list[str]:
        """Ids of all trusted keys."""
        return sorted(self._keys)
