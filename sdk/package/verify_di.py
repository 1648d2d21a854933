"""Checking a DI Software Package's ASiC-E signatures, metadata and files.

Order, so that each refusal names the real reason: the container (``mimetype``
first and stored, only signature files in META-INF), every signature (CMS over its
ASiCManifest, EN 319 122-1 / 319 162-1), trust in the author's chain (and an
approver's, when approval is required, OPC 10000-100 §8.7.4), the metadata schema
(§8.7.3) and the manifest, then every file against the signed digests.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sdk.certs import CertificateTrust, fingerprint, subject_name
from sdk.errors import (
    ApprovalMissing,
    FileMismatch,
    ManifestInvalid,
    NotAPackage,
    PackageRejected,
    SignatureMissing,
    SignerExpired,
)
from sdk.package import asic, dipkg
from sdk.package.archive import PackageArchive
from sdk.package.cades import CmsSigner, verify_detached
from sdk.package.manifest import Manifest

CLOCK_SKEW = timedelta(minutes=5)


@dataclass(frozen=True)
class SignatureReport:
    """One signature of a package: who, when, in what role, and whether a trust store accepted it."""

    number: int
    role: str  # "author" or "approver"
    subject: str
    issuer: str
    fingerprint: str
    signing_time: datetime
    chain: tuple[str, ...] = ()  # subjects from the signer to a trusted root, when checked
    trusted: bool | None = None  # None: not checked against a trust store
    problem: str = ""

    def as_dict(self) -> dict[str, object]:
        """For JSON output."""
        return {
            "number": self.number,
            "role": self.role,
            "subject": self.subject,
            "issuer": self.issuer,
            "fingerprint": self.fingerprint,
            "signing_time": self.signing_time.isoformat(),
            "chain": list(self.chain),
            "trusted": self.trusted,
            "problem": self.problem,
        }


@dataclass(frozen=True)
class SignedEntry:
    """An ASiCManifest with its checked CMS signature."""

    number: int
    manifest: asic.AsicManifest
    signer: CmsSigner


def check_container(archive: PackageArchive) -> None:
    """``mimetype`` must be the first entry, stored, with the ASiC-E media type (EN 319 162-1 §4.4.1)."""
    first = archive.first_entry
    if first is None or first.filename != asic.MIMETYPE_NAME or first.compress_type != 0 or first.extra:
        raise NotAPackage("the file is not an ASiC-E container: 'mimetype' must be the first entry, stored")
    if archive.read_metadata(asic.MIMETYPE_NAME) != asic.MIMETYPE:
        raise NotAPackage(f"the file is not an ASiC-E container: mimetype is not {asic.MIMETYPE.decode()}")


def data_names(archive: PackageArchive) -> set[str]:
    """Every file a signature must cover: all but ``mimetype`` and META-INF/."""
    return {n for n in archive.names if n != asic.MIMETYPE_NAME and not n.startswith(asic.META_INF)}


def read_signatures(archive: PackageArchive) -> list[SignedEntry]:
    """Every ASiCManifest with its CMS signature checked (not yet trusted); author first."""
    numbers: dict[int, str] = {}
    for name in sorted(n for n in archive.names if n.startswith(asic.META_INF)):
        number = asic.manifest_number(name)
        if number is not None:
            numbers[number] = name
        elif not asic.is_signature_entry(name):
            raise FileMismatch(f"file {name!r} in META-INF is neither an ASiCManifest nor a signature")
    if asic.AUTHOR_NUMBER not in numbers:
        raise SignatureMissing(f"package is not signed (no {asic.manifest_name(asic.AUTHOR_NUMBER)})")
    entries = []
    signature_files = {n for n in archive.names if asic.is_signature_entry(n)}
    for number, name in sorted(numbers.items()):
        data = archive.read_metadata(name) or b""
        manifest = asic.parse_manifest(data, name)
        if manifest.signature_uri != asic.signature_name(number) or manifest.signature_uri not in archive.names:
            raise SignatureMissing(f"{name} names signature {manifest.signature_uri!r}, which the package lacks")
        signature_files.discard(manifest.signature_uri)
        p7s = archive.read_metadata(manifest.signature_uri) or b""
        entries.append(SignedEntry(number, manifest, verify_detached(p7s, data, manifest.signature_uri)))
    if signature_files:
        raise FileMismatch(f"signature {sorted(signature_files)[0]!r} has no ASiCManifest")
    return entries


def _check_coverage(entries: list[SignedEntry], data: set[str]) -> None:
    author = entries[0]
    covered = set(author.manifest.objects)
    extra, missing = sorted(data - covered), sorted(covered - data)
    if extra:
        raise FileMismatch(f"file {extra[0]!r} is in the package but not in the signed ASiCManifest")
    if missing:
        raise FileMismatch(f"file {missing[0]!r} is in the signed ASiCManifest but not in the package")
    endorsed = data | {asic.manifest_name(author.number), asic.signature_name(author.number)}
    for entry in entries[1:]:
        lacking = sorted(endorsed - set(entry.manifest.objects))
        if lacking:
            raise FileMismatch(f"approval signature {entry.number:03d} does not cover {lacking[0]!r}")


def check_digests(
    archive: PackageArchive, entries: list[SignedEntry], digests: dict[str, bytes], small_only: bool = False
) -> None:
    """Every file every manifest lists must have the signed SHA-256; ``digests`` holds (and keeps) those hashed.

    ``small_only`` checks all but the model files under CONTENT/, which are hashed as they are unpacked.
    """
    for entry in entries:
        for uri, obj in entry.manifest.objects.items():
            if small_only and uri.startswith(dipkg.CONTENT) and uri != dipkg.MANIFEST_ENTRY:
                continue
            if uri not in digests:
                if uri not in archive.names:
                    raise FileMismatch(f"file {uri!r} is in ASiCManifest {entry.number:03d} but not in the package")
                digests[uri] = asic.sha256(archive.read_metadata(uri) or b"")
            if digests[uri] != obj.sha256:
                raise FileMismatch(f"file {uri!r} does not match its signed digest (changed after signing)")


def report(entry: SignedEntry) -> SignatureReport:
    """The untrusted facts of one signature."""
    cert = entry.signer.certificate
    return SignatureReport(
        number=entry.number,
        role="author" if entry.number == asic.AUTHOR_NUMBER else "approver",
        subject=subject_name(cert),
        issuer=cert.issuer.rfc4514_string(),
        fingerprint=fingerprint(cert),
        signing_time=entry.signer.signing_time,
    )


def trust_check(entry: SignedEntry, trust: CertificateTrust, now: datetime) -> SignatureReport:
    """Validate a signer's chain at its signing time; raises the specific refusal."""
    base = report(entry)
    if entry.signer.signing_time > now + CLOCK_SKEW:
        raise SignerExpired(f"signature {entry.number:03d} claims a signing time in the future ({base.signing_time})")
    chain = trust.validate(entry.signer.certificate, entry.signer.others, entry.signer.signing_time)
    return SignatureReport(**{**base.__dict__, "chain": tuple(subject_name(c) for c in chain), "trusted": True})


def check_trust(
    entries: list[SignedEntry], author_trust: CertificateTrust, approval: CertificateTrust | None
) -> list[SignatureReport]:
    """The author must be trusted; with ``approval``, at least one approver must chain to it."""
    now = datetime.now(UTC)
    reports = [trust_check(entries[0], author_trust, now)]
    approved = False
    reasons = []
    for entry in entries[1:]:
        if approval is None:
            reports.append(report(entry))
            continue
        try:
            reports.append(trust_check(entry, approval, now))
            approved = True
        except PackageRejected as exc:
            reasons.append(f"approval {entry.number:03d}: {exc}")
            reports.append(SignatureReport(**{**report(entry).__dict__, "trusted": False, "problem": str(exc)}))
    if approval is not None and not approved:
        why = "; ".join(reasons) if reasons else "the package carries only the author's signature"
        raise ApprovalMissing(f"approval required and not given: {why}")
    return reports


def read_di_metadata(archive: PackageArchive) -> tuple[dipkg.PackageMetadata, bytes, Manifest]:
    """package_metadata.json (schema-checked) and the ModelLine manifest; ManifestInvalid on a problem."""
    from sdk.package.verify import parse_manifest

    metadata_bytes = archive.read_metadata(dipkg.METADATA_NAME)
    if metadata_bytes is None:
        raise ManifestInvalid(f"package has no {dipkg.METADATA_NAME}")
    metadata = dipkg.parse_metadata(metadata_bytes)
    manifest_bytes = archive.read_metadata(dipkg.MANIFEST_ENTRY)
    if manifest_bytes is None:
        raise ManifestInvalid(f"package has no {dipkg.MANIFEST_ENTRY}")
    manifest = parse_manifest(manifest_bytes)
    dipkg.check_consistent(metadata, manifest)
    return metadata, manifest_bytes, manifest


def check_content_list(archive: PackageArchive, manifest: Manifest) -> None:
    """CONTENT/ holds the manifest and exactly the files it lists, of the listed sizes."""
    listed = {dipkg.CONTENT + f.path for f in manifest.files}
    present = {n for n in archive.names if n.startswith(dipkg.CONTENT)} - {dipkg.MANIFEST_ENTRY}
    extra, missing = sorted(present - listed), sorted(listed - present)
    if extra:
        raise FileMismatch(f"file {extra[0]!r} is in the package but not in the manifest")
    if missing:
        raise FileMismatch(f"file {missing[0]!r} is in the manifest but not in the package")
    for entry in manifest.files:
        declared = archive.declared_size(dipkg.CONTENT + entry.path)
        if declared != entry.size:
            raise FileMismatch(f"file {entry.path!r} is {declared} bytes, the manifest says {entry.size}")


def extract_content(archive: PackageArchive, manifest: Manifest, directory: Path) -> dict[str, bytes]:
    """Unpack the manifest's files into ``directory`` (flat), checking each; returns their SHA-256 by entry name."""
    digests = {}
    for entry in manifest.files:
        size, digest = archive.extract(dipkg.CONTENT + entry.path, directory, entry.path)
        if size != entry.size:
            raise FileMismatch(f"file {entry.path!r} is {size} bytes, the manifest says {entry.size}")
        if digest != entry.sha256:
            raise FileMismatch(
                f"file {entry.path!r} does not match its SHA-256 in the manifest (changed after signing)"
            )
        digests[dipkg.CONTENT + entry.path] = bytes.fromhex(digest)
    return digests


def verify_di(
    archive: PackageArchive,
    trust: CertificateTrust,
    approval: CertificateTrust | None,
    directory: Path,
) -> tuple[dipkg.PackageMetadata, bytes, Manifest, list[SignatureReport]]:
    """Every DI check but onnxruntime's; the model files end up in ``directory``."""
    check_container(archive)
    entries = read_signatures(archive)
    _check_coverage(entries, data_names(archive))
    reports = check_trust(entries, trust, approval)
    digests: dict[str, bytes] = {}
    check_digests(archive, entries, digests, small_only=True)  # nothing signed is parsed before its digest matched
    metadata, manifest_bytes, manifest = read_di_metadata(archive)
    check_content_list(archive, manifest)
    digests.update(extract_content(archive, manifest, directory))
    check_digests(archive, entries, digests)
    return metadata, manifest_bytes, manifest, reports


def inspect_signatures(archive: PackageArchive) -> list[SignatureReport]:
    """Signatures as the package states them, for ``package inspect`` (CMS checked, trust not)."""
    try:
        return [report(e) for e in read_signatures(archive)]
    except SignatureMissing:
        return []
