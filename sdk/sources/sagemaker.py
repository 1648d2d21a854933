"""Finding a model package version in the SageMaker Model Registry."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from sdk.errors import NotFound, UsageError
from sdk.sources.aws import aws_errors
from sdk.sources.s3 import parse_s3_uri

_log = logging.getLogger(__name__)

APPROVED = "Approved"


@dataclass(frozen=True)
class RegistryModel:
    """One model package version and what the registry says about it."""

    arn: str
    group: str
    version: int
    approval_status: str
    model_data_url: str
    description: str = ""
    metrics: dict[str, float] = field(default_factory=dict)


def _versions(client: Any, group: str, approved_only: bool) -> list[dict[str, Any]]:
    kwargs: dict[str, Any] = {"ModelPackageGroupName": group, "SortBy": "CreationTime", "SortOrder": "Descending"}
    if approved_only:
        kwargs["ModelApprovalStatus"] = APPROVED
    out: list[dict[str, Any]] = []
    for page in client.get_paginator("list_model_packages").paginate(**kwargs):
        out.extend(page.get("ModelPackageSummaryList", []))
    return out


def _flatten(prefix: str, value: Any, out: dict[str, float]) -> None:
    if isinstance(value, bool):
        return
    if isinstance(value, int | float):
        out[prefix] = float(value)
    elif isinstance(value, dict):
        # SageMaker model quality statistics nest each metric as {"value": x, "standard_deviation": y}
        if "value" in value and isinstance(value["value"], int | float):
            out[prefix] = float(value["value"])
            return
        for key, inner in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), inner, out)


def _metrics(client_s3: Any, description: dict[str, Any]) -> dict[str, float]:
    """Numbers from CustomerMetadataProperties and the model quality statistics report, if any."""
    metrics: dict[str, float] = {}
    for key, text in (description.get("CustomerMetadataProperties") or {}).items():
        try:
            metrics[key] = float(text)
        except (TypeError, ValueError):
            continue
    stats = (description.get("ModelMetrics") or {}).get("ModelQuality", {}).get("Statistics", {}).get("S3Uri")
    if stats:
        bucket, key = parse_s3_uri(stats)
        with aws_errors(f"reading model metrics {stats}"):
            body = client_s3.get_object(Bucket=bucket, Key=key)["Body"].read(1 << 20)
        try:
            _flatten("", json.loads(body), metrics)
        except json.JSONDecodeError:
            _log.warning("model metrics %s are not JSON; left out", stats)
    return metrics


def find_model(
    client: Any,
    client_s3: Any,
    group: str,
    version: int | None = None,
    allow_unapproved: bool = False,
) -> RegistryModel:
    """The named version, or the newest Approved one; unapproved versions only when allowed."""
    with aws_errors(f"looking up model package group {group!r}"):
        client.describe_model_package_group(ModelPackageGroupName=group)
        if version is None:
            summaries = _versions(client, group, approved_only=True)
            if not summaries:
                raise NotFound(f"model package group {group!r} has no Approved version")
            summary = max(summaries, key=lambda s: s.get("ModelPackageVersion", 0))
        else:
            matches = [
                s for s in _versions(client, group, approved_only=False) if s.get("ModelPackageVersion") == version
            ]
            if not matches:
                raise NotFound(f"model package group {group!r} has no version {version}")
            summary = matches[0]
        arn = summary["ModelPackageArn"]
        description = client.describe_model_package(ModelPackageName=arn)
    status = description.get("ModelApprovalStatus", "PendingManualApproval")
    if status != APPROVED and not allow_unapproved:
        raise UsageError(
            f"{group} version {summary.get('ModelPackageVersion')} is {status}, not Approved: "
            "approve it in the registry, or pass --allow-unapproved"
        )
    containers = (description.get("InferenceSpecification") or {}).get("Containers") or []
    urls = [c["ModelDataUrl"] for c in containers if c.get("ModelDataUrl")]
    if not urls:
        raise NotFound(f"{arn} has no ModelDataUrl in its inference specification")
    return RegistryModel(
        arn=arn,
        group=group,
        version=int(description.get("ModelPackageVersion") or summary.get("ModelPackageVersion") or 0),
        approval_status=status,
        model_data_url=urls[0],
        description=description.get("ModelPackageDescription", "") or "",
        metrics=_metrics(client_s3, description),
    )
