"""The package manifest: what a model is, what it takes and gives, and the hash of every file.

The manifest is the one document that is signed. It pins every other file in the
package by SHA-256 and size, so a valid signature over its exact bytes covers the
whole package.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, field_validator, model_validator

FORMAT_VERSION: Literal[1] = 1
MANIFEST_NAME = "manifest.json"
SIGNATURE_NAME = "signature.json"
RESERVED_NAMES = frozenset({MANIFEST_NAME, SIGNATURE_NAME})

# Semantic Versioning 2.0.0, the regular expression the spec itself recommends (semver.org, FAQ).
_SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)
MAX_VERSION_LENGTH = 64  # a version is a browse name and part of a NodeId
# Model and feature names become OPC UA browse names and file names: keep them plain.
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ElementType(StrEnum):
    """Tensor element types ModelLine can feed from and publish to OPC UA tags."""

    FLOAT32 = "float32"
    FLOAT64 = "float64"
    INT8 = "int8"
    INT16 = "int16"
    INT32 = "int32"
    INT64 = "int64"
    UINT8 = "uint8"
    UINT16 = "uint16"
    UINT32 = "uint32"
    UINT64 = "uint64"
    BOOL = "bool"
    STRING = "string"


Dim = int | str | None
"""One tensor dimension: a fixed size, a symbolic name (e.g. "batch"), or None when unknown."""


def check_name(value: str, what: str) -> str:
    """Return ``value`` if it is a plain name usable as an OPC UA browse name and file name."""
    if not isinstance(value, str) or not _NAME.fullmatch(value):  # fullmatch: '$' lets a final newline in
        raise ValueError(
            f"{what} {value!r} must start with a letter and hold only letters, digits, '_', '.', '-' "
            "(at most 64 characters)"
        )
    return value


def check_version(value: str) -> str:
    """Return ``value`` if it is a semantic version (semver.org 2.0.0) of at most 64 characters."""
    if not isinstance(value, str) or len(value) > MAX_VERSION_LENGTH or not _SEMVER.fullmatch(value):
        raise ValueError(
            f"version {str(value)[:80]!r} is not a semantic version like 1.2.0 "
            f"(at most {MAX_VERSION_LENGTH} characters)"
        )
    return value


class Range(_Model):
    """Valid range of a value; readings outside it are out of range for the model."""

    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"range min {self.min} is above max {self.max}")
        return self


class Feature(_Model):
    """One named feature along the last axis of an input tensor (usually one sensor tag)."""

    name: str
    label: str | None = None
    units: str | None = None
    valid: Range = Range()

    @field_validator("name")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        return check_name(value, "feature name")


class TensorSpec(_Model):
    """An input or output tensor as the ONNX graph declares it, plus what a person needs to read it."""

    name: str
    element_type: ElementType
    shape: list[Dim]
    label: str | None = None
    units: str | None = None
    valid: Range = Range()
    features: list[Feature] = Field(
        default_factory=list,
        description="Names of the entries along the last axis; empty when the tensor is one value.",
    )

    @model_validator(mode="after")
    def _features_fit(self) -> TensorSpec:
        names = [f.name for f in self.features]
        if len(set(names)) != len(names):
            raise ValueError(f"tensor {self.name!r}: feature names repeat")
        if self.features and self.shape and isinstance(self.shape[-1], int):
            if self.shape[-1] != len(self.features):
                raise ValueError(
                    f"tensor {self.name!r}: last dimension is {self.shape[-1]} "
                    f"but {len(self.features)} features are named"
                )
        return self


class Sample(_Model):
    """Inputs and the outputs onnxruntime produced for them when the package was built."""

    inputs: dict[str, JsonValue] = Field(description="Per input tensor, nested lists in its shape.")
    outputs: dict[str, JsonValue] = Field(description="Per output tensor, nested lists in its shape.")


class Tolerance(_Model):
    """How close a fresh run must come to a sample output: |a - b| <= atol + rtol * |b|."""

    rtol: float = 1e-4
    atol: float = 1e-5


class FeatureStats(_Model):
    """Training reference statistics of one input feature, for drift detection."""

    count: int
    mean: float
    std: float
    min: float
    max: float
    bin_edges: list[float]
    frequencies: list[float] = Field(description="Share of training rows in each bin; sums to 1.")

    @model_validator(mode="after")
    def _bins(self) -> FeatureStats:
        if len(self.bin_edges) != len(self.frequencies) + 1:
            raise ValueError("bin_edges must have one more entry than frequencies")
        return self


class SourceKind(StrEnum):
    """Where the model file came from."""

    LOCAL = "local"
    S3 = "s3"
    SAGEMAKER = "sagemaker"


class Provenance(_Model):
    """Where the model came from and what the data scientists said about it."""

    source: SourceKind = SourceKind.LOCAL
    uri: str | None = Field(None, description="Local file name, s3:// URI of the artifact.")
    model_package_arn: str | None = None
    model_package_group: str | None = None
    model_package_version: int | None = None
    approval_status: str | None = None
    metrics: dict[str, float] = Field(default_factory=dict)


class FileEntry(_Model):
    """A file in the package other than the manifest and the signature."""

    path: str
    size: int = Field(ge=0)
    sha256: str

    @field_validator("sha256")
    @classmethod
    def _hex(cls, value: str) -> str:
        if not _SHA256.fullmatch(value):
            raise ValueError("sha256 must be 64 lower-case hex digits")
        return value

    @field_validator("path")
    @classmethod
    def _plain(cls, value: str) -> str:
        if "/" in value or "\\" in value or value in RESERVED_NAMES or value.startswith("."):
            raise ValueError(f"file path {value!r} must be a plain file name")
        return value


class OnnxInfo(_Model):
    """What the ONNX file says about itself."""

    model_file: str
    ir_version: int
    opsets: dict[str, int] = Field(description="Operator set version per domain ('' is ai.onnx).")
    producer_name: str = ""
    producer_version: str = ""


class Producer(_Model):
    """The tool that built the package."""

    name: str = "modelline"
    version: str


class Manifest(_Model):
    """manifest.json: the signed description of a ModelLine package (format version 1)."""

    format_version: Literal[1] = FORMAT_VERSION
    name: str
    version: str
    created: datetime
    description: str = ""
    producer: Producer
    onnx: OnnxInfo
    inputs: Annotated[list[TensorSpec], Field(min_length=1)]
    outputs: Annotated[list[TensorSpec], Field(min_length=1)]
    samples: list[Sample] = Field(default_factory=list)
    sample_tolerance: Tolerance = Tolerance()
    reference_stats: dict[str, FeatureStats] = Field(
        default_factory=dict, description="Per input feature name, from the training data."
    )
    provenance: Provenance = Provenance()
    files: Annotated[list[FileEntry], Field(min_length=1)]

    @field_validator("name")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        return check_name(value, "model name")

    @field_validator("version")
    @classmethod
    def _semver(cls, value: str) -> str:
        return check_version(value)

    @field_validator("created")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("created must carry a time zone")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Manifest:
        paths = [f.path for f in self.files]
        if len(set(paths)) != len(paths):
            raise ValueError("files lists a path twice")
        if self.onnx.model_file not in paths:
            raise ValueError(f"model file {self.onnx.model_file!r} is not listed in files")
        for kind, tensors in (("input", self.inputs), ("output", self.outputs)):
            names = [t.name for t in tensors]
            if len(set(names)) != len(names):
                raise ValueError(f"{kind} names repeat")
        return self

    def file(self, path: str) -> FileEntry:
        """The entry for ``path``; KeyError if the manifest does not list it."""
        for entry in self.files:
            if entry.path == path:
                return entry
        raise KeyError(path)

    def input_features(self) -> list[Feature]:
        """Every input feature, in tensor order; a tensor without named features counts as one."""
        out: list[Feature] = []
        for tensor in self.inputs:
            if tensor.features:
                out.extend(tensor.features)
            else:
                out.append(Feature(name=tensor.name, label=tensor.label, units=tensor.units, valid=tensor.valid))
        return out

    def to_bytes(self) -> bytes:
        """The manifest as it is stored and signed: indented JSON, UTF-8, trailing newline."""
        return (self.model_dump_json(indent=2, exclude_none=False) + "\n").encode("utf-8")
