"""ASiC-E containers with CAdES signatures (ETSI EN 319 162-1), as OPC 10000-100 §8.7.4 signs a Software Package.

The container's first entry is ``mimetype`` (stored, no extra field) with
``application/vnd.etsi.asic-e+zip`` (EN 319 162-1 §4.4.1). Each CAdES signature
``META-INF/signatureNNN.p7s`` signs one ``META-INF/ASiCManifestNNN.xml`` that lists
the files it covers with their SHA-256 digests (§4.4.3.2, Annex A.4): several
signatures live side by side, each with its own manifest, so an approval signature
is added without touching the author's. Number 001 is the author's; approvers'
manifests list every file, the author's manifest and signature included.
"""

from __future__ import annotations

import base64
import hashlib
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from sdk.errors import SignatureInvalid

MIMETYPE_NAME = "mimetype"
MIMETYPE = b"application/vnd.etsi.asic-e+zip"
META_INF = "META-INF/"
ASIC_NS = "http://uri.etsi.org/02918/v1.2.1#"
DS_NS = "http://www.w3.org/2000/09/xmldsig#"
SHA256_URI = "http://www.w3.org/2001/04/xmlenc#sha256"
AUTHOR_NUMBER = 1
_MANIFEST = re.compile(r"META-INF/ASiCManifest(\d{3})\.xml")
_SIGNATURE = re.compile(r"META-INF/signature(\d{3})\.p7s")


def manifest_name(number: int) -> str:
    """The ASiCManifest entry of signature ``number``."""
    return f"META-INF/ASiCManifest{number:03d}.xml"


def signature_name(number: int) -> str:
    """The CAdES signature entry ``number``."""
    return f"META-INF/signature{number:03d}.p7s"


def manifest_number(name: str) -> int | None:
    """The number in an ASiCManifest entry name, or None for other names."""
    match = _MANIFEST.fullmatch(name)
    return int(match.group(1)) if match else None


def is_signature_entry(name: str) -> bool:
    """Whether ``name`` is a CAdES signature entry."""
    return _SIGNATURE.fullmatch(name) is not None


@dataclass(frozen=True)
class DataObject:
    """One file an ASiCManifest covers."""

    uri: str
    mime_type: str
    sha256: bytes


@dataclass(frozen=True)
class AsicManifest:
    """A parsed ASiCManifest: the signature it belongs to and the files it covers."""

    signature_uri: str
    objects: dict[str, DataObject]


def media_type(name: str) -> str:
    """The media type written for a file of a package."""
    if name.endswith(".json"):
        return "application/json"
    if name.endswith(".md"):
        return "text/markdown"
    if name.endswith(".xml"):
        return "text/xml"
    if name.endswith(".p7s"):
        return "application/pkcs7-signature"
    return "application/octet-stream"


def write_manifest(signature_uri: str, files: dict[str, bytes]) -> bytes:
    """ASiCManifest XML for ``files`` (name -> SHA-256 digest), in name order."""
    ET.register_namespace("asic", ASIC_NS)
    ET.register_namespace("ds", DS_NS)
    root = ET.Element(f"{{{ASIC_NS}}}ASiCManifest")
    ET.SubElement(root, f"{{{ASIC_NS}}}SigReference", URI=signature_uri, MimeType="application/pkcs7-signature")
    for name in sorted(files):
        ref = ET.SubElement(root, f"{{{ASIC_NS}}}DataObjectReference", URI=name, MimeType=media_type(name))
        ET.SubElement(ref, f"{{{DS_NS}}}DigestMethod", Algorithm=SHA256_URI)
        ET.SubElement(ref, f"{{{DS_NS}}}DigestValue").text = base64.b64encode(files[name]).decode()
    ET.indent(root)
    xml: bytes = ET.tostring(root, encoding="UTF-8", xml_declaration=True)
    return xml + b"\n"


def parse_manifest(data: bytes, where: str) -> AsicManifest:
    """Read an ASiCManifest; SignatureInvalid when it is not one this format writes."""
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise SignatureInvalid(f"{where} declares a DOCTYPE or entities, which ASiC manifests never need")
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise SignatureInvalid(f"{where} is not well-formed XML ({exc})") from None
    if root.tag != f"{{{ASIC_NS}}}ASiCManifest":
        raise SignatureInvalid(f"{where} is not an ASiCManifest")
    refs = root.findall(f"{{{ASIC_NS}}}SigReference")
    if len(refs) != 1 or not refs[0].get("URI"):
        raise SignatureInvalid(f"{where} must name exactly one signature (SigReference)")
    objects: dict[str, DataObject] = {}
    for ref in root.findall(f"{{{ASIC_NS}}}DataObjectReference"):
        uri = ref.get("URI") or ""
        method = ref.find(f"{{{DS_NS}}}DigestMethod")
        value = ref.find(f"{{{DS_NS}}}DigestValue")
        if method is None or method.get("Algorithm") != SHA256_URI or value is None or not value.text:
            raise SignatureInvalid(f"{where}: {uri!r} has no SHA-256 digest")
        try:
            digest = base64.b64decode(value.text.strip(), validate=True)
        except ValueError:
            raise SignatureInvalid(f"{where}: the digest of {uri!r} is not base64") from None
        if not uri or uri in objects or len(digest) != 32:
            raise SignatureInvalid(f"{where}: reference {uri!r} is empty, repeated or not a SHA-256 digest")
        objects[uri] = DataObject(uri, ref.get("MimeType") or "", digest)
    if not objects:
        raise SignatureInvalid(f"{where} covers no files")
    return AsicManifest(refs[0].get("URI") or "", objects)


def sha256(data: bytes) -> bytes:
    """Raw SHA-256 digest."""
    return hashlib.sha256(data).digest()
