"""Verifying a package before it is stored, installed or loaded.

A DI Software Package (.uadipkg) is checked by verify_di.py; the deprecated flat
.mlpkg by the checks below, for one more release. For an .mlpkg, the order is
chosen so that each refusal names the real reason: the zip itself
(entries, sizes), then the signature over the manifest bytes (was the manifest
changed, is the signer trusted), then the manifest schema, then every file
against the manifest (missing, extra, size, SHA-256), then onnxruntime (loads,
same interface, reproduces the sample outputs).
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import onnxruntime as ort
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import ValidationError

from sdk.errors import (
    ApprovalMissing,
    FileMismatch,
    InterfaceMismatch,
    ManifestInvalid,
    SampleMismatch,
    SignatureMissing,
    UsageError,
)
from sdk.keys import TrustStore
from sdk.names import first_problem
from sdk.package import dipkg, onnx_model
from sdk.package.archive import (
    DEFAULT_LIMITS,
    Limits,
    PackageArchive,
    private_dir,
    sha256_file,
    write_package,
)
from sdk.package.manifest import MANIFEST_NAME, RESERVED_NAMES, SIGNATURE_NAME, Manifest, TensorSpec
from sdk.package.signature import Signature, sign_manifest, verify_manifest
from sdk.package.stream import Received, read_through
from sdk.package.verify_di import (
    SignatureReport,
    check_trust,
    inspect_signatures,
    read_di_metadata,
    read_signatures,
    verify_di,
)

LEGACY_NOTE = ".mlpkg packages are deprecated: convert with `modelline package convert`"


@dataclass(frozen=True)
class PackageInfo:
    """What a package says about itself, before or after verification."""

    path: Path
    manifest: Manifest
    manifest_bytes: bytes
    signature: Signature | None
    sha256: str  # of the package file as transferred (the DI software update Hash)
    size: int
    metadata: dipkg.PackageMetadata | None = None  # None for a legacy .mlpkg
    signatures: tuple[SignatureReport, ...] = ()

    @property
    def legacy(self) -> bool:
        """Whether this is a deprecated flat .mlpkg."""
        return self.metadata is None


@dataclass(frozen=True)
class VerifiedPackage(PackageInfo):
    """A package that passed every check; ``directory`` holds its files if they were kept."""

    signer: str = ""
    directory: Path | None = None

    @property
    def model_path(self) -> Path:
        """The verified model file (only when the files were kept)."""
        if self.directory is None:
            raise RuntimeError("the package files were not kept; verify with into=...")
        return self.directory / self.manifest.onnx.model_file


def parse_manifest(data: bytes) -> Manifest:
    """Parse manifest bytes; ManifestInvalid names the first schema error."""
    try:
        return Manifest.model_validate_json(data)
    except ValidationError as exc:
        raise ManifestInvalid(f"manifest.json is invalid ({first_problem(exc, 'document')})") from None


def _require_signature(signature: Signature | None) -> Signature:
    if signature is None:
        raise SignatureMissing("package is not signed (no signature.json)")
    return signature


def _read_metadata(archive: PackageArchive) -> tuple[bytes, Signature | None]:
    manifest_bytes = archive.read_metadata(MANIFEST_NAME)
    if manifest_bytes is None:
        raise ManifestInvalid("package has no manifest.json")
    signature_bytes = archive.read_metadata(SIGNATURE_NAME)
    return manifest_bytes, Signature.parse(signature_bytes) if signature_bytes is not None else None


def read_package(path: Path, limits: Limits = DEFAULT_LIMITS) -> PackageInfo:
    """Read a package's manifest and signatures without trusting them (for inspect)."""
    with PackageArchive(path, limits) as archive:
        if archive.is_di:
            metadata, manifest_bytes, manifest = read_di_metadata(archive)
            reports = tuple(inspect_signatures(archive))
            size, digest = sha256_file(path)
            return PackageInfo(path, manifest, manifest_bytes, None, digest, size, metadata, reports)
        manifest_bytes, signature = _read_metadata(archive)
        manifest = parse_manifest(manifest_bytes)
    size, digest = sha256_file(path)
    return PackageInfo(path, manifest, manifest_bytes, signature, digest, size)


def _check_file_list(archive: PackageArchive, manifest: Manifest) -> None:
    listed = {f.path for f in manifest.files}
    present = archive.names - RESERVED_NAMES
    extra = sorted(present - listed)
    if extra:
        raise FileMismatch(f"file {extra[0]!r} is in the package but not in the manifest")
    missing = sorted(listed - present)
    if missing:
        raise FileMismatch(f"file {missing[0]!r} is in the manifest but not in the package")
    for entry in manifest.files:
        if archive.declared_size(entry.path) != entry.size:
            raise FileMismatch(
                f"file {entry.path!r} is {archive.declared_size(entry.path)} bytes, the manifest says {entry.size}"
            )


def _extract_and_hash(archive: PackageArchive, manifest: Manifest, directory: Path) -> None:
    for entry in manifest.files:
        size, digest = archive.extract(entry.path, directory)
        if size != entry.size:
            raise FileMismatch(f"file {entry.path!r} is {size} bytes, the manifest says {entry.size}")
        if digest != entry.sha256:
            raise FileMismatch(
                f"file {entry.path!r} does not match its SHA-256 in the manifest (changed after signing)"
            )


def _same_interface(kind: str, declared: list[TensorSpec], actual: list[onnx_model.PortSignature]) -> None:
    want = [(t.name, t.element_type, t.shape) for t in declared]
    have = [(p.name, p.element_type, p.shape) for p in actual]
    if want != have:

        def fmt(items: Sequence[tuple[object, object, object]]) -> str:
            return ", ".join(f"{n} {getattr(e, 'value', e)}{s}" for n, e, s in items)

        raise InterfaceMismatch(f"model {kind}s are [{fmt(have)}], the manifest says [{fmt(want)}]")


def check_model(model_path: Path, manifest: Manifest, run_samples: bool = True) -> None:
    """Load the model with onnxruntime, compare its interface and sample outputs with the manifest."""
    check_session(onnx_model.load_session(model_path, check_only=True), manifest, run_samples)


def check_session(session: ort.InferenceSession, manifest: Manifest, run_samples: bool = True) -> None:
    """Compare a loaded session's interface and sample outputs with the manifest."""
    actual_in, actual_out = onnx_model.describe(session)
    _same_interface("input", manifest.inputs, actual_in)
    _same_interface("output", manifest.outputs, actual_out)
    if run_samples:
        problems = onnx_model.check_samples(session, manifest.samples, manifest.inputs, manifest.sample_tolerance)
        if problems:
            raise SampleMismatch(f"model does not reproduce its samples: {problems[0]}")


def _no_legacy_approval(approval: TrustStore | None) -> None:
    if approval is not None:
        raise ApprovalMissing("approval required and not given: a legacy .mlpkg carries no approval signature")


def verify_package(
    path: Path,
    trust: TrustStore,
    *,
    into: Path | None = None,
    limits: Limits = DEFAULT_LIMITS,
    run_samples: bool = True,
    load_model: bool = True,
    approval: TrustStore | None = None,
    received: Received | None = None,
) -> VerifiedPackage:
    """Check everything; raise the specific PackageRejected subclass on the first failure.

    ``trust`` must accept the author's signature; with ``approval``, a DI package must
    also carry an approval signature that chains to it (OPC 10000-100 §8.7.4), and a
    legacy .mlpkg, which cannot, is refused.

    The files are unpacked into a private folder: ``into`` (created with mode 0700,
    kept on success) or a temporary one that is removed before returning. Nothing
    is left behind on failure.
    ``load_model=False`` leaves the onnxruntime checks to a caller that loads
    the model itself (``check_session``), so that it is loaded once.
    ``received``: the file's size and SHA-256 as the caller hashed them while writing the file (a transfer
    hashes its chunks as they arrive, sdk.opcua.filetype), so that the file is not read once more to hash it
    (the size is checked against the file), and its stored entries as they passed (sdk.package.stream), so that
    the model is not read again to unpack and hash it: each is checked against the signed digests as usual.
    Without it the file is read through once in the same way (``read_through``) before the checks.
    """
    if into is not None:
        if into.exists():
            raise FileExistsError(f"{into} already exists")
        into.parent.mkdir(parents=True, exist_ok=True)
        into.mkdir(mode=0o700)
        directory = into
    else:
        directory = private_dir()
    streamed = directory / ".streamed"
    try:
        if received is None and path.is_file():
            received = read_through(path, streamed)
        metadata: dipkg.PackageMetadata | None = None
        reports: list[SignatureReport] = []
        signature: Signature | None = None
        approval = approval if approval is not None else trust.approval
        with PackageArchive(path, limits, received.entries if received else ()) as archive:
            if archive.is_di:
                approval_certs = approval.certificates if approval is not None else None
                metadata, manifest_bytes, manifest, reports = verify_di(
                    archive, trust.certificates, approval_certs, directory
                )
                signer = reports[0].subject
            else:
                _no_legacy_approval(approval)
                manifest_bytes, signature = _read_metadata(archive)
                signer = verify_manifest(manifest_bytes, _require_signature(signature), trust)
                manifest = parse_manifest(manifest_bytes)
                _check_file_list(archive, manifest)
                _extract_and_hash(archive, manifest, directory)
        if load_model:
            check_model(directory / manifest.onnx.model_file, manifest, run_samples)
        if received is not None and received.digest.size == path.stat().st_size:
            size, digest = received.digest
        else:
            size, digest = sha256_file(path)
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    if into is None:
        shutil.rmtree(directory, ignore_errors=True)
    else:
        shutil.rmtree(streamed, ignore_errors=True)
    return VerifiedPackage(
        path,
        manifest,
        manifest_bytes,
        signature,
        digest,
        size,
        metadata,
        tuple(reports),
        signer=signer,
        directory=into,
    )


def check_signers(path: Path, trust: TrustStore, limits: Limits = DEFAULT_LIMITS) -> None:
    """Check only the signatures and the signers' chains (with the trust store's current CRLs) of a package
    that was verified in full before: for re-checking an installed package when trust changes.
    Raises the PackageRejected subclass that a full verification would raise for them.
    """
    with PackageArchive(path, limits) as archive:
        if archive.is_di:
            entries = read_signatures(archive)
            approval = trust.approval.certificates if trust.approval is not None else None
            check_trust(entries, trust.certificates, approval)
            return
        _no_legacy_approval(trust.approval)
        manifest_bytes, signature = _read_metadata(archive)
        verify_manifest(manifest_bytes, _require_signature(signature), trust)


def sign_package(path: Path, private_key: Ed25519PrivateKey, out_path: Path | None = None) -> Signature:
    """(Re-)sign an existing legacy .mlpkg's manifest; writes ``out_path`` (default: in place)."""
    with PackageArchive(path) as archive:
        if archive.is_di:
            raise UsageError("a DI package keeps its author's signature: add one with 'modelline package approve'")
        manifest_bytes, _ = _read_metadata(archive)
        parse_manifest(manifest_bytes)
        staging = private_dir()
        try:
            names = sorted(archive.names - RESERVED_NAMES)
            for name in names:
                archive.extract(name, staging)
            signature = sign_manifest(manifest_bytes, private_key)
            members: list[tuple[str, bytes | Path]] = [
                (MANIFEST_NAME, manifest_bytes),
                (SIGNATURE_NAME, signature.to_bytes()),
            ]
            members += [(name, staging / name) for name in names]
            write_package(out_path or path, members)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return signature
