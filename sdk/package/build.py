"""Building a package: read the model, describe it, record samples, hash, sign, zip.

The result is a DI Software Package (OPC 10000-100 §8.7, see dipkg.py) signed by an
X.509 identity. Giving a bare Ed25519 key instead still writes the legacy flat
``.mlpkg`` (deprecated; kept one release for the tests and tools that read it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import onnxruntime as ort
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import ValidationError

from sdk import __version__
from sdk.certs import SigningIdentity, subject_name
from sdk.errors import BuildError, NotFound
from sdk.names import first_problem
from sdk.package import asic, dipkg, onnx_model
from sdk.package.archive import write_package
from sdk.package.cades import sign_detached
from sdk.package.manifest import (
    MANIFEST_NAME,
    SIGNATURE_NAME,
    ElementType,
    FileEntry,
    Manifest,
    Producer,
    Provenance,
    Range,
    Sample,
    TensorSpec,
    Tolerance,
)
from sdk.package.onnx_model import NUMPY_DTYPES, PortSignature
from sdk.package.signature import sign_manifest
from sdk.package.spec import PackageSpec, TensorOverride
from sdk.package.training_data import TrainingData
from sdk.package.zipwrite import FileFacts, file_facts

_log = logging.getLogger(__name__)

MODEL_FILE = "model.onnx"
_SAMPLE_SEED = 20240611


def utc_now() -> datetime:
    """The current time in UTC, whole seconds."""
    return datetime.now(UTC).replace(microsecond=0)


@dataclass(frozen=True)
class BuildResult:
    """What was written."""

    path: Path
    manifest: Manifest
    signed_by: str | None
    sha256: str
    size: int


def _tensor(port: PortSignature, override: TensorOverride | None, kind: str) -> TensorSpec:
    element_type = port.element_type
    if element_type is None:
        hint = (
            " (for scikit-learn classifiers convert with options={'zipmap': False})" if "map" in port.ort_type else ""
        )
        raise BuildError(f"{kind} {port.name!r} is a {port.ort_type}, not a tensor{hint}")
    o = override or TensorOverride()
    return TensorSpec(
        name=port.name,
        element_type=element_type,
        shape=port.shape,
        label=o.label,
        units=o.units,
        valid=Range(min=o.min, max=o.max),
        features=[f.to_feature() for f in o.features],
    )


def _describe(ports: Sequence[PortSignature], overrides: dict[str, TensorOverride], kind: str) -> list[TensorSpec]:
    known = {p.name for p in ports}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise BuildError(
            f"spec names {kind}(s) {', '.join(unknown)} but the model's {kind}s are {', '.join(sorted(known))}"
        )
    try:
        return [_tensor(p, overrides.get(p.name), kind) for p in ports]
    except ValueError as exc:  # pydantic: e.g. feature count does not fit the last dimension
        raise BuildError(f"spec does not fit the model: {exc}") from None


def _sample_input(tensor: TensorSpec, rows: np.ndarray | None, index: int, rng: np.random.Generator) -> np.ndarray:
    dtype = NUMPY_DTYPES[tensor.element_type]
    n_features = len(tensor.features) or None
    shape = onnx_model.one_sample_shape(tensor.shape, n_features)
    if rows is not None and n_features and int(np.prod(shape)) == n_features:
        return np.asarray(rows[index % rows.shape[0]].reshape(shape), dtype=dtype)
    if tensor.element_type is ElementType.BOOL:
        return np.asarray(rng.random(shape) > 0.5)
    ranges = [f.valid for f in tensor.features] if tensor.features else [tensor.valid]
    lows = np.array([r.min if r.min is not None else (r.max - 1.0 if r.max is not None else -1.0) for r in ranges])
    highs = np.array([r.max if r.max is not None else lows[i] + 2.0 for i, r in enumerate(ranges)])
    values = lows + (highs - lows) * rng.random(shape)  # broadcasts along the last axis
    return np.asarray(values, dtype=dtype)


def make_samples(
    session: ort.InferenceSession, inputs: Sequence[TensorSpec], data: TrainingData | None, count: int
) -> list[Sample]:
    """Sample inputs (training rows where the CSV has them, else values in the valid ranges) and outputs."""
    if count == 0 or any(t.element_type is ElementType.STRING for t in inputs):
        return []
    rng = np.random.default_rng(_SAMPLE_SEED)
    rows = {
        t.name: data.sample_rows([f.name for f in t.features], count) if data and t.features else None for t in inputs
    }
    samples = []
    for i in range(count):
        feeds = {t.name: _sample_input(t, rows[t.name], i, rng) for t in inputs}
        outputs = onnx_model.run(session, feeds)
        samples.append(
            Sample(
                inputs={k: v.tolist() for k, v in feeds.items()},
                outputs={k: v.tolist() for k, v in outputs.items()},
            )
        )
    return samples


def build_package(
    model_path: Path,
    out_path: Path,
    *,
    name: str,
    version: str,
    spec: PackageSpec | None = None,
    identity: SigningIdentity | None = None,
    private_key: Ed25519PrivateKey | None = None,
    provenance: Provenance | None = None,
    description: str | None = None,
    manufacturer: str | None = None,
    manufacturer_uri: str | None = None,
    clock: Callable[[], datetime] = utc_now,
) -> BuildResult:
    """Build ``out_path`` from an ONNX file: a DI package, signed when an identity is given.

    ``private_key`` (Ed25519) writes the deprecated flat .mlpkg instead.
    """
    if not model_path.is_file():
        raise NotFound(f"model file {model_path} does not exist")
    spec = spec or PackageSpec()
    # The model's size, CRC-32 and SHA-256 are taken in threads beside onnxruntime's load (it lets go of the GIL)
    with ThreadPoolExecutor(1, thread_name_prefix="facts") as pool:
        facts = pool.submit(file_facts, model_path)
        try:
            manifest = _describe_model(model_path, name, version, spec, provenance, description, clock, facts.result)
        finally:
            facts.cancel()
    if private_key is None:
        result = write_di_package(
            out_path,
            manifest,
            {MODEL_FILE: model_path},
            identity,
            manufacturer=manufacturer,
            manufacturer_uri=manufacturer_uri,
            signing_time=clock(),
            facts={MODEL_FILE: facts.result()},
        )
        _log.info("package %s %s built: %s (%d bytes)", name, version, out_path, result.size)
        return result

    manifest_bytes = manifest.to_bytes()
    signature = sign_manifest(manifest_bytes, private_key)
    members: list[tuple[str, bytes | Path]] = [
        (MANIFEST_NAME, manifest_bytes),
        (SIGNATURE_NAME, signature.to_bytes()),
        (MODEL_FILE, model_path),
    ]
    pkg_size, pkg_digest = write_package(out_path, members, facts={MODEL_FILE: facts.result()})
    _log.info("package %s %s built: %s (%d bytes)", name, version, out_path, pkg_size)
    return BuildResult(out_path, manifest, signature.key_id, pkg_digest, pkg_size)


def _describe_model(
    model_path: Path,
    name: str,
    version: str,
    spec: PackageSpec,
    provenance: Provenance | None,
    description: str | None,
    clock: Callable[[], datetime],
    facts: Callable[[], FileFacts],
) -> Manifest:
    """The manifest: the model's interface and samples as onnxruntime runs it, its ONNX facts, its file."""
    session = onnx_model.load_session(model_path, check_only=True)
    ports_in, ports_out = onnx_model.describe(session)
    inputs = _describe(ports_in, spec.inputs, "input")
    outputs = _describe(ports_out, spec.outputs, "output")
    try:
        onnx_info, doc = onnx_model.read_onnx_info(model_path, MODEL_FILE)
    except ValueError as exc:
        raise BuildError(str(exc)) from None

    feature_names = [f.name for t in inputs for f in t.features] or [t.name for t in inputs]
    data = TrainingData.read_csv(spec.training_csv, feature_names, spec.columns) if spec.training_csv else None
    reference = data.stats(spec.histogram_bins) if data else {}
    samples = make_samples(session, inputs, data, spec.sample_count)

    size, _, digest = facts()
    try:
        manifest = Manifest(
            name=name,
            version=version,
            created=clock(),
            description=description or spec.description or doc or "",
            producer=Producer(version=__version__),
            onnx=onnx_info,
            inputs=inputs,
            outputs=outputs,
            samples=samples,
            sample_tolerance=Tolerance(),
            reference_stats=reference,
            provenance=provenance or Provenance(uri=model_path.name),
            files=[FileEntry(path=MODEL_FILE, size=size, sha256=digest)],
        )
    except ValueError as exc:
        raise BuildError(_first_error(exc)) from None
    return manifest


def write_di_package(
    out_path: Path,
    manifest: Manifest,
    content: dict[str, Path],
    identity: SigningIdentity | None,
    *,
    manufacturer: str | None = None,
    manufacturer_uri: str | None = None,
    signing_time: datetime,
    facts: dict[str, FileFacts] | None = None,
) -> BuildResult:
    """Write a DI Software Package: metadata, manifest and ``content`` files, model card, author signature.

    ``facts``: the content files' sizes, CRC-32s and SHA-256s as taken before (by content name)."""
    signer = subject_name(identity.certificate) if identity else ""
    owner = manufacturer or _organization(identity) or "ModelLine"
    metadata = dipkg.metadata_for(manifest, owner, manufacturer_uri)
    files: dict[str, bytes | Path] = {
        dipkg.METADATA_NAME: metadata.to_bytes(),
        dipkg.MANIFEST_ENTRY: manifest.to_bytes(),
        **{dipkg.CONTENT + name: path for name, path in content.items()},
        dipkg.MODEL_CARD: dipkg.model_card(manifest, signer),
    }
    digests = {n: asic.sha256(data) for n, data in files.items() if isinstance(data, bytes)}
    for entry in manifest.files:
        digests[dipkg.CONTENT + entry.path] = bytes.fromhex(entry.sha256)
    members: list[tuple[str, bytes | Path]] = [(asic.MIMETYPE_NAME, asic.MIMETYPE), *files.items()]
    if identity is not None:
        members += signature_entries(digests, identity, asic.AUTHOR_NUMBER, signing_time)
    known = {dipkg.CONTENT + name: f for name, f in (facts or {}).items()}
    size, digest = write_package(out_path, members, stored=[asic.MIMETYPE_NAME], facts=known)
    return BuildResult(out_path, manifest, signer or None, digest, size)


def _organization(identity: SigningIdentity | None) -> str | None:
    from cryptography.x509.oid import NameOID

    if identity is None:
        return None
    attrs = identity.certificate.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    return str(attrs[0].value) if attrs else None


def signature_entries(
    digests: dict[str, bytes], identity: SigningIdentity, number: int, signing_time: datetime
) -> list[tuple[str, bytes | Path]]:
    """An ASiCManifest over ``digests`` (name -> SHA-256) and its CAdES signature, as package members."""
    manifest_xml = asic.write_manifest(asic.signature_name(number), digests)
    p7s = sign_detached(manifest_xml, identity, signing_time)
    return [(asic.manifest_name(number), manifest_xml), (asic.signature_name(number), p7s)]


def _first_error(exc: ValueError) -> str:
    return first_problem(exc) if isinstance(exc, ValidationError) else str(exc)
