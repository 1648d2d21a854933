"""The DI Software Package layout (OPC 10000-100 §8.7): metadata, content, supplement.

A ``.uadipkg`` holds ``META/package_metadata.json`` (§8.7.3: who made the package,
its type and revision), the payload under ``CONTENT/`` (the ONNX model and
ModelLine's manifest), documents under ``SUPPLEMENT/`` (the model card), and the
ASiC-E signature entries (``mimetype``, ``META-INF/``, §8.7.4, see asic.py).
"""

from __future__ import annotations

import json
from datetime import datetime
from functools import cache
from importlib import resources
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sdk.errors import ManifestInvalid
from sdk.package.manifest import MANIFEST_NAME, Manifest

SUFFIX = ".uadipkg"
LEGACY_SUFFIX = ".mlpkg"
METADATA_NAME = "META/package_metadata.json"
CONTENT = "CONTENT/"
SUPPLEMENT = "SUPPLEMENT/"
MANIFEST_ENTRY = CONTENT + MANIFEST_NAME
MODEL_CARD = SUPPLEMENT + "model_card.md"
TOP_FOLDERS = ("META/", CONTENT, SUPPLEMENT, "META-INF/")
PACKAGE_TYPE_APPLICATION = 1  # PackageType enumeration, OPC 10000-100 §8.7.3 (Application = 1)
SOFTWARE_SUBCLASS = "ModelLine ONNX model"
# ManufacturerUri when the author names none: one per model, as edge nodes show it in DI SoftwareVersionType
# (with SoftwareRevision it identifies the package, OPC 10000-100 §8.7.3).
MODEL_URI_PREFIX = "urn:modelline:model:"


class PackageMetadata(BaseModel):
    """META/package_metadata.json (OPC 10000-100 §8.7.3, Table 120), the fields ModelLine writes and reads."""

    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True)

    name: str = Field(alias="Name")
    description: str | None = Field(None, alias="Description")
    manufacturer_uri: str = Field(alias="ManufacturerUri")
    manufacturer: str = Field(alias="Manufacturer")
    package_revision: str = Field(alias="PackageRevision")
    package_type: int = Field(PACKAGE_TYPE_APPLICATION, alias="PackageType")
    software_sub_class: str | None = Field(None, alias="SoftwareSubClass")
    deploy_complete_package: bool | None = Field(None, alias="DeployCompletePackage")
    software_revision: str | None = Field(None, alias="SoftwareRevision")
    release_date: datetime | None = Field(None, alias="ReleaseDate")

    def to_bytes(self) -> bytes:
        """The file as stored: indented JSON with the spec's field names, no absent fields."""
        data = self.model_dump(mode="json", by_alias=True, exclude_none=True)
        return (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode()

    @property
    def patch_identifiers(self) -> list[str]:
        """DI PendingVersion PatchIdentifiers: a model package is always complete, never a patch."""
        return []


@cache
def metadata_schema() -> dict[str, Any]:
    """The DI 1.05 package_metadata.json schema stored beside this module (see its $comment)."""
    text = resources.files("sdk.package").joinpath("schema/package_metadata.schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def schema_problems(data: object) -> list[str]:
    """Every way ``data`` breaks the package_metadata.json schema, as short lines."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(metadata_schema(), format_checker=jsonschema.FormatChecker())
    return [f"{'/'.join(map(str, e.absolute_path)) or 'document'}: {e.message}" for e in validator.iter_errors(data)]


def parse_metadata(data: bytes) -> PackageMetadata:
    """Read and schema-check META/package_metadata.json; ManifestInvalid names the first problem."""
    try:
        raw = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ManifestInvalid(f"{METADATA_NAME} is not JSON ({exc})") from None
    problems = schema_problems(raw)
    if problems:
        raise ManifestInvalid(f"{METADATA_NAME} breaks the DI package metadata schema ({problems[0]})")
    try:
        return PackageMetadata.model_validate(raw)
    except ValidationError as exc:
        raise ManifestInvalid(f"{METADATA_NAME} is invalid ({exc.errors()[0]['msg']})") from None


def metadata_for(manifest: Manifest, manufacturer: str, manufacturer_uri: str | None) -> PackageMetadata:
    """The DI package metadata of a model package."""
    return PackageMetadata(
        name=manifest.name,
        description=manifest.description or None,
        manufacturer_uri=manufacturer_uri or MODEL_URI_PREFIX + manifest.name,
        manufacturer=manufacturer,
        package_revision=manifest.version,
        package_type=PACKAGE_TYPE_APPLICATION,
        software_sub_class=SOFTWARE_SUBCLASS,
        deploy_complete_package=True,
        software_revision=manifest.version,
        release_date=manifest.created,
    )


def check_consistent(metadata: PackageMetadata, manifest: Manifest) -> None:
    """The DI identity must name the same model and version as ModelLine's manifest."""
    if metadata.name != manifest.name or metadata.package_revision != manifest.version:
        raise ManifestInvalid(
            f"{METADATA_NAME} names {metadata.name} {metadata.package_revision}, "
            f"the manifest {manifest.name} {manifest.version}"
        )


def _range(lo: float | None, hi: float | None) -> str:
    if lo is None and hi is None:
        return "any"
    return f"{'' if lo is None else lo} to {'' if hi is None else hi}".strip()


def model_card(manifest: Manifest, signer: str) -> bytes:
    """A model card in plain words (Markdown): what the model does, its inputs and outputs, where it came from."""
    m = manifest
    lines = [
        f"# {m.name} {m.version}",
        "",
        m.description or "No description was given when this package was built.",
        "",
        "## Inputs",
        "",
        "| name | what it is | units | valid range |",
        "| --- | --- | --- | --- |",
    ]
    for f in m.input_features():
        lines.append(f"| {f.name} | {f.label or ''} | {f.units or ''} | {_range(f.valid.min, f.valid.max)} |")
    lines += ["", "## Outputs", "", "| name | what it is | units | valid range |", "| --- | --- | --- | --- |"]
    for t in m.outputs:
        lines.append(f"| {t.name} | {t.label or ''} | {t.units or ''} | {_range(t.valid.min, t.valid.max)} |")
    p = m.provenance
    lines += ["", "## Provenance", "", f"- Source: {p.source.value}" + (f" ({p.uri})" if p.uri else "")]
    if p.model_package_arn:
        lines.append(f"- Model registry entry: {p.model_package_arn} (status {p.approval_status or 'unknown'})")
    lines += [
        f"- Built {m.created.isoformat()} by {m.producer.name} {m.producer.version}",
        f"- ONNX IR {m.onnx.ir_version}, opsets "
        + ", ".join(f"{d or 'ai.onnx'} {v}" for d, v in sorted(m.onnx.opsets.items())),
        f"- Signed by {signer}" if signer else "- Not signed",
        "",
        "## Metrics",
        "",
    ]
    lines += [f"- {k}: {v:g}" for k, v in sorted(p.metrics.items())] or ["No metrics were recorded."]
    lines += [
        "",
        "## Checks",
        "",
        f"{len(m.samples)} sample input(s) with expected outputs are stored in the manifest; every edge node "
        "reproduces them before it uses the model.",
    ]
    if m.reference_stats:
        lines.append(f"Training statistics for {len(m.reference_stats)} feature(s) serve as the drift reference.")
    return ("\n".join(lines) + "\n").encode()
