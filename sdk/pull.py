"""Pulling a model from S3 or the SageMaker Model Registry into a signed package."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sdk.certs import SigningIdentity
from sdk.package.archive import private_dir
from sdk.package.build import BuildResult, build_package
from sdk.package.manifest import Provenance, SourceKind
from sdk.package.spec import PackageSpec
from sdk.sources import s3
from sdk.sources.artifact import extract_model
from sdk.sources.aws import AwsOptions
from sdk.sources.sagemaker import RegistryModel, find_model


@dataclass(frozen=True)
class PullTarget:
    """What to build from the pulled model."""

    out_path: Path
    private_key: Ed25519PrivateKey | None  # deprecated: writes a legacy .mlpkg
    spec: PackageSpec | None = None
    name: str | None = None
    version: str | None = None
    model_file: str | None = None  # path of the .onnx inside a tar archive
    identity: SigningIdentity | None = None  # X.509 signer of a DI package


def _build_from(
    uri: str,
    aws: AwsOptions,
    target: PullTarget,
    name: str,
    version: str,
    provenance: Provenance,
    description: str | None,
    progress: s3.Progress | None,
) -> BuildResult:
    work = private_dir()
    try:
        artifact = work / "artifact"
        s3.download(aws.client("s3"), uri, artifact, progress)
        unpacked = work / "unpacked"
        unpacked.mkdir()
        model = extract_model(artifact, unpacked, target.model_file, source=uri)
        return build_package(
            model,
            target.out_path,
            name=name,
            version=version,
            spec=target.spec,
            private_key=target.private_key,
            identity=target.identity,
            provenance=provenance,
            description=description,
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


def pull_s3(uri: str, aws: AwsOptions, target: PullTarget, progress: s3.Progress | None = None) -> BuildResult:
    """Package the ONNX model found at an S3 URI (a .onnx object or a model.tar.gz)."""
    s3.parse_s3_uri(uri)
    name = target.name or Path(s3.parse_s3_uri(uri)[1]).name.split(".")[0]
    version = target.version or "1.0.0"
    return _build_from(uri, aws, target, name, version, Provenance(source=SourceKind.S3, uri=uri), None, progress)


def pull_sagemaker(
    group: str,
    aws: AwsOptions,
    target: PullTarget,
    version: int | None = None,
    allow_unapproved: bool = False,
    progress: s3.Progress | None = None,
) -> tuple[RegistryModel, BuildResult]:
    """Package a model package version from the registry (default: the newest Approved one)."""
    found = find_model(aws.client("sagemaker"), aws.client("s3"), group, version, allow_unapproved)
    provenance = Provenance(
        source=SourceKind.SAGEMAKER,
        uri=found.model_data_url,
        model_package_arn=found.arn,
        model_package_group=found.group,
        model_package_version=found.version,
        approval_status=found.approval_status,
        metrics=found.metrics,
    )
    result = _build_from(
        found.model_data_url,
        aws,
        target,
        target.name or group,
        target.version or f"{found.version}.0.0",
        provenance,
        found.description or None,
        progress,
    )
    return found, result
