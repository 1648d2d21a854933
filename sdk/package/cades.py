"""CAdES baseline B-B detached signatures (ETSI EN 319 122-1) over an ASiC manifest.

A signature file is a DER CMS SignedData (RFC 5652) without encapsulated content,
one SignerInfo, the signer's certificate chain in ``certificates``, and the signed
attributes CAdES-B-B asks for (EN 319 122-1 §5.1, §5.2.1-§5.2.2): content-type,
message-digest, signing-time and signing-certificate-v2 (RFC 5035).

Written by hand here, on asn1crypto's CMS structures: cryptography's
``PKCS7SignatureBuilder`` cannot add signing-certificate-v2 (it writes a fixed set of
signed attributes) and has no API to check a detached signature, so both the
SignedData and its check are assembled here; the private-key operations and
certificate parsing are cryptography's.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime

from asn1crypto import algos, cms, core, tsp
from asn1crypto import x509 as ax509
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from sdk.certs import SigningIdentity
from sdk.errors import SignatureInvalid

MIME_TYPE = "application/pkcs7-signature"


@dataclass(frozen=True)
class CmsSigner:
    """Who signed, as the CMS says (not yet checked against a trust store)."""

    certificate: x509.Certificate
    others: list[x509.Certificate]
    signing_time: datetime


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def _signed_attributes(content: bytes, cert: x509.Certificate, signing_time: datetime) -> cms.CMSAttributes:
    cert_der = _der(cert)
    issuer = ax509.Certificate.load(cert_der).issuer
    ess = tsp.SigningCertificateV2(
        {
            "certs": [
                tsp.ESSCertIDv2(
                    {
                        "hash_algorithm": algos.DigestAlgorithm({"algorithm": "sha256"}),
                        "cert_hash": hashlib.sha256(cert_der).digest(),
                        "issuer_serial": {
                            "issuer": [ax509.GeneralName({"directory_name": issuer})],
                            "serial_number": cert.serial_number,
                        },
                    }
                )
            ]
        }
    )
    attrs = [
        cms.CMSAttribute({"type": "content_type", "values": ["data"]}),
        cms.CMSAttribute({"type": "signing_time", "values": [cms.Time({"utc_time": signing_time})]}),
        cms.CMSAttribute({"type": "message_digest", "values": [hashlib.sha256(content).digest()]}),
        cms.CMSAttribute({"type": "signing_certificate_v2", "values": [ess]}),
    ]
    # DER orders a SET OF by the encodings of its members; verifiers (OpenSSL) re-encode and would differ otherwise.
    attrs.sort(key=lambda a: a.dump())
    return cms.CMSAttributes(attrs)


def sign_detached(content: bytes, identity: SigningIdentity, signing_time: datetime) -> bytes:
    """A DER CAdES-B-B detached signature over ``content``, carrying the identity's chain."""
    cert = identity.certificate
    attrs = _signed_attributes(content, cert, signing_time.astimezone(UTC).replace(microsecond=0))
    to_sign = attrs.dump()  # a SET OF (tag 0x31), as RFC 5652 §5.4 says the signature covers
    key = identity.private_key
    if isinstance(key, ec.EllipticCurvePrivateKey):
        signature = key.sign(to_sign, ec.ECDSA(hashes.SHA256()))
        sig_alg = "sha256_ecdsa"
    elif isinstance(key, rsa.RSAPrivateKey):
        signature = key.sign(to_sign, padding.PKCS1v15(), hashes.SHA256())
        sig_alg = "sha256_rsa"
    else:  # load_identity only returns EC and RSA keys
        raise TypeError(f"unsupported signing key {type(key).__name__}")
    cert_asn1 = ax509.Certificate.load(_der(cert))
    signer_info = cms.SignerInfo(
        {
            "version": "v1",
            "sid": cms.SignerIdentifier(
                {
                    "issuer_and_serial_number": cms.IssuerAndSerialNumber(
                        {"issuer": cert_asn1.issuer, "serial_number": cert.serial_number}
                    )
                }
            ),
            "digest_algorithm": algos.DigestAlgorithm({"algorithm": "sha256"}),
            "signed_attrs": attrs,
            "signature_algorithm": algos.SignedDigestAlgorithm({"algorithm": sig_alg}),
            "signature": signature,
        }
    )
    signed_data = cms.SignedData(
        {
            "version": "v1",
            "digest_algorithms": [algos.DigestAlgorithm({"algorithm": "sha256"})],
            "encap_content_info": {"content_type": "data"},  # detached: no eContent
            "certificates": [ax509.Certificate.load(_der(c)) for c in identity.chain],
            "signer_infos": [signer_info],
        }
    )
    der: bytes = cms.ContentInfo({"content_type": "signed_data", "content": signed_data}).dump()
    return der


def _attr(attrs: cms.CMSAttributes, name: str, where: str) -> core.Asn1Value:
    values = [a["values"] for a in attrs if a["type"].native == name]
    if len(values) != 1 or len(values[0]) != 1:
        raise SignatureInvalid(f"{where}: the signature must carry exactly one {name} attribute (CAdES-B-B)")
    return values[0][0]


def verify_detached(signature: bytes, content: bytes, where: str) -> CmsSigner:
    """Check a detached CAdES-B-B signature over ``content``; the trust decision is the caller's."""
    try:
        return _verify(signature, content, where)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:  # asn1crypto's parse errors
        raise SignatureInvalid(f"{where} is not a valid CMS signature ({type(exc).__name__})") from None


def _verify(signature: bytes, content: bytes, where: str) -> CmsSigner:
    info = cms.ContentInfo.load(signature, strict=True)
    if info["content_type"].native != "signed_data":
        raise SignatureInvalid(f"{where} is not a CMS SignedData")
    sd = info["content"]
    infos = sd["signer_infos"]
    certs = [x509.load_der_x509_certificate(c.chosen.dump()) for c in sd["certificates"] or []]
    if len(infos) != 1:
        raise SignatureInvalid(f"{where} must hold exactly one signer (it holds {len(infos)})")
    si = infos[0]
    if sd["encap_content_info"]["content"].native is not None:
        raise SignatureInvalid(f"{where} must be a detached signature")
    if si["digest_algorithm"]["algorithm"].native != "sha256":
        raise SignatureInvalid(f"{where}: the digest algorithm is not SHA-256")
    sid = si["sid"].chosen
    if not isinstance(sid, cms.IssuerAndSerialNumber):
        raise SignatureInvalid(f"{where}: the signer is not named by issuer and serial number")
    serial, issuer = sid["serial_number"].native, sid["issuer"].dump()
    cert = next((c for c in certs if c.serial_number == serial and _der_name(c) == issuer), None)
    if cert is None:
        raise SignatureInvalid(f"{where} does not carry the signer's certificate")
    attrs = si["signed_attrs"]
    if not attrs:
        raise SignatureInvalid(f"{where} has no signed attributes (CAdES-B-B needs them)")
    if _attr(attrs, "content_type", where).native != "data":
        raise SignatureInvalid(f"{where}: signed content type is not id-data")
    if _attr(attrs, "message_digest", where).native != hashlib.sha256(content).digest():
        raise SignatureInvalid(f"{where}: the signed manifest was changed after signing (message digest differs)")
    ids = _attr(attrs, "signing_certificate_v2", where)["certs"]
    if not ids or ids[0]["cert_hash"].native != hashlib.sha256(_der(cert)).digest():
        raise SignatureInvalid(f"{where}: signing-certificate-v2 does not name the signer's certificate")
    signing_time = _attr(attrs, "signing_time", where).native
    to_verify = b"\x31" + attrs.dump()[1:]  # the [0] IMPLICIT tag back to SET OF (RFC 5652 §5.4)
    _check_signature(cert, si["signature"].native, to_verify, si["signature_algorithm"].signature_algo, where)
    return CmsSigner(cert, [c for c in certs if c is not cert], signing_time)


def _der_name(cert: x509.Certificate) -> bytes:
    name: bytes = ax509.Certificate.load(_der(cert)).issuer.dump()
    return name


def _check_signature(cert: x509.Certificate, signature: bytes, data: bytes, algo: str, where: str) -> None:
    key = cert.public_key()
    try:
        if isinstance(key, ec.EllipticCurvePublicKey) and algo == "ecdsa":
            key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
        elif isinstance(key, rsa.RSAPublicKey) and algo == "rsassa_pkcs1v15":
            key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
        else:
            raise SignatureInvalid(f"{where}: signature algorithm {algo} does not fit the signer's key")
    except InvalidSignature:
        raise SignatureInvalid(f"{where}: the signature does not verify with the signer's certificate") from None
