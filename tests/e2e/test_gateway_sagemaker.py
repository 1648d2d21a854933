"""The gateway's optional SageMaker Model Registry sync, against moto in server mode."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.app import Gateway
from tests.aws_harness import REGION, register_model_group, tarball
from tests.conftest import Signer
from tests.opcua_servers import free_port
from tests.tls import GatewaySettings

pytestmark = pytest.mark.e2e


@pytest.mark.timeout(120)
async def test_new_approved_versions_are_imported_once(aws: str, tmp_path: Path, signer: Signer, example: Path) -> None:
    onnx = (example / "model.onnx").read_bytes()
    register_model_group(
        aws,
        "press-line",
        [
            ("p1/model.tar.gz", tarball({"model.onnx": onnx}), "Approved"),
            ("p2/model.tar.gz", tarball({"model.onnx": onnx}), "PendingManualApproval"),
        ],
    )
    settings = GatewaySettings(
        endpoint=f"opc.tcp://127.0.0.1:{free_port()}/gateway/",
        data_dir=tmp_path / "gw",
        trust_dir=signer.trust_dir,
        sagemaker_groups=["press-line", "no-such-group"],
        sagemaker_region=REGION,
        sagemaker_endpoint_url=aws,
        sagemaker_interval_s=3600,
        signing_key=signer.files.private_path,
    )
    async with Gateway(settings) as gateway:
        first = await gateway.sync_sagemaker()
        assert first in ([], ["press-line 1.0.0"])  # the scheduler's first run may have imported it already
        records = await gateway.store.model_versions()
        assert [(r.name, r.version, r.signer) for r in records] == [("press-line", "1.0.0", signer.files.key_id)]
        assert await gateway.sync_sagemaker() == []  # nothing new: nothing imported, the missing group only logged
        import boto3

        sm = boto3.client("sagemaker", endpoint_url=aws, region_name=REGION)
        sm.update_model_package(
            ModelPackageArn=sm.list_model_packages(ModelPackageGroupName="press-line", SortBy="CreationTime")[
                "ModelPackageSummaryList"
            ][-1]["ModelPackageArn"],
            ModelApprovalStatus="Approved",
        )
        assert await gateway.sync_sagemaker() == ["press-line 2.0.0"]
        assert [r.version for r in await gateway.store.model_versions()] == ["1.0.0", "2.0.0"]
