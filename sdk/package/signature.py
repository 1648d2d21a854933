"""The detached signature over a package's manifest bytes (signature.json).

An Ed25519 signature over the exact bytes of manifest.json, nothing prepended, so
any Ed25519 tool can check it too, e.g.::

    python3 -c "import json,base64,sys; sys.stdout.buffer.write(
        base64.b64decode(json.load(open('signature.json'))['signature']))" > sig.bin
    openssl pkeyutl -verify -pubin -inkey signing.pub -rawin -in manifest.json -sigfile sig.bin
"""

from __future__ import annotations

import base64
import binascii
from typing import Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import BaseModel, ConfigDict, ValidationError

from sdk.errors import SignatureInvalid, UntrustedKey
from sdk.keys import TrustStore, key_id
from sdk.names import first_problem


class Signature(BaseModel):
    """signature.json: who signed the manifest, and the signature itself."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["modelline-signature/1"] = "modelline-signature/1"
    algorithm: Literal["Ed25519"] = "Ed25519"
    key_id: str
    signature: str  # base64 of the 64 signature bytes

    def to_bytes(self) -> bytes:
        """The signature file as stored in the package."""
        return (self.model_dump_json(indent=2) + "\n").encode()

    @classmethod
    def parse(cls, data: bytes) -> Signature:
        """Read signature.json; SignatureInvalid when it is not one."""
        try:
            return cls.model_validate_json(data)
        except ValidationError as exc:
            raise SignatureInvalid(f"signature.json is malformed ({first_problem(exc, 'file')})") from None


def sign_manifest(manifest_bytes: bytes, private_key: Ed25519PrivateKey) -> Signature:
    """Sign the exact manifest bytes."""
    raw = private_key.sign(manifest_bytes)
    return Signature(key_id=key_id(private_key.public_key()), signature=base64.b64encode(raw).decode())


def verify_manifest(manifest_bytes: bytes, signature: Signature, trust: TrustStore) -> str:
    """Check the signature against the trust store; returns the signer's key id."""
    public_key = trust.get(signature.key_id)
    if public_key is None:
        trusted = ", ".join(trust.key_ids) or "none"
        raise UntrustedKey(  # the trust store's keys, not its folder: on a server that is a path of the server
            f"signed by key {signature.key_id}, which is not in the trust store (trusted keys: {trusted})"
        )
    try:
        raw = base64.b64decode(signature.signature, validate=True)
        public_key.verify(raw, manifest_bytes)
    except (InvalidSignature, binascii.Error, ValueError):
        raise SignatureInvalid(
            f"signature does not match the manifest (key {signature.key_id}): the manifest or "
            "signature was changed after signing"
        ) from None
    return signature.key_id
