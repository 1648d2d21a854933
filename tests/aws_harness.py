"""moto in server mode for S3 and SageMaker: real HTTP on a loopback port, real boto3, no patching."""

from __future__ import annotations

import io
import json
import logging
import tarfile
import urllib.request
from typing import Any

import boto3
from moto.server import ThreadedMotoServer

BUCKET = "ml-artifacts"
REGION = "eu-central-1"


def aws_client(service: str, url: str) -> Any:
    """A boto3 client of the moto server at ``url`` (test credentials, whatever the environment holds)."""
    return boto3.client(
        service, endpoint_url=url, region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing"
    )


def tarball(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def register_model_group(url: str, group: str, artifacts: list[tuple[str, bytes, str]], metrics: bool = True) -> None:
    """A bucket with the artifacts and a model package group with one version per artifact."""
    s3, sm = aws_client("s3", url), aws_client("sagemaker", url)
    try:
        s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass
    s3.put_object(
        Bucket=BUCKET,
        Key=f"{group}/metrics.json",
        Body=json.dumps({"regression_metrics": {"mae": {"value": 12.5, "standard_deviation": 0.4}}}).encode(),
    )
    sm.create_model_package_group(ModelPackageGroupName=group)
    for index, (key, body, status) in enumerate(artifacts, start=1):
        s3.put_object(Bucket=BUCKET, Key=key, Body=body)
        extra: dict[str, Any] = {}
        if metrics:
            extra["CustomerMetadataProperties"] = {"accuracy": "0.97", "owner": "data-science"}
            extra["ModelMetrics"] = {
                "ModelQuality": {
                    "Statistics": {"ContentType": "application/json", "S3Uri": f"s3://{BUCKET}/{group}/metrics.json"}
                }
            }
        sm.create_model_package(
            ModelPackageGroupName=group,
            ModelPackageDescription=f"{group} training run {index}",
            ModelApprovalStatus=status,
            InferenceSpecification={
                "Containers": [
                    {
                        "Image": "123456789012.dkr.ecr.eu-central-1.amazonaws.com/onnx:1",
                        "ModelDataUrl": f"s3://{BUCKET}/{key}",
                    }
                ],
                "SupportedContentTypes": ["application/json"],
                "SupportedResponseMIMETypes": ["application/json"],
            },
            **extra,
        )


def start_moto() -> tuple[ThreadedMotoServer, str]:
    """A moto server on a free loopback port, and its URL."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one log line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    return server, f"http://{host}:{port}"


def reset_moto(url: str) -> None:
    """Forget every bucket and model package."""
    urllib.request.urlopen(urllib.request.Request(f"{url}/moto-api/reset", method="POST"), timeout=10).close()


def offline_aws_env(tmp: str) -> dict[str, str]:
    """Environment with test credentials that reach nothing but the moto server (never the instance metadata)."""
    return {
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_CONFIG_FILE": f"{tmp}/no-aws-config",
        "AWS_SHARED_CREDENTIALS_FILE": f"{tmp}/no-aws-credentials",
    }


AWS_VARIABLES_TO_CLEAR = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL")
