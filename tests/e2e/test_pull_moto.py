"""`modelline pull` against moto in server mode: real HTTP, real boto3, no patching."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from modelline.cli.main import main
from sdk.package.verify import verify_package
from tests.aws_harness import (
    BUCKET,
    REGION,
    aws_client,
    register_model_group,
    tarball,
)
from tests.conftest import Signer

pytestmark = pytest.mark.e2e


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any] | None, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    try:
        data = json.loads(captured.out) if captured.out.strip() else None
    except json.JSONDecodeError:
        data = None
    return code, data, captured.err


@pytest.fixture
def onnx_bytes(example: Path) -> bytes:
    return (example / "model.onnx").read_bytes()


def _pull_sm(url: str, signer: Signer, out: Path, *extra: str) -> list[str]:
    return [
        "pull",
        "sagemaker",
        "--endpoint-url",
        url,
        "--region",
        REGION,
        "--cert",
        str(signer.cert_path),
        "--key",
        str(signer.key_path),
        "-o",
        str(out),
        "--json",
        *extra,
    ]


def test_latest_approved_version_becomes_a_verified_package(
    aws: str, capsys: pytest.CaptureFixture[str], signer: Signer, tmp_path: Path, onnx_bytes: bytes, example: Path
) -> None:
    archive = tarball({"model.onnx": onnx_bytes, "code/inference.py": b"print('unused')\n"})
    register_model_group(
        aws,
        "pump-health",
        [("v1/model.tar.gz", archive, "Approved"), ("v2/model.tar.gz", archive, "PendingManualApproval")],
    )
    out = tmp_path / "pump.uadipkg"
    code, data, err = _cli(
        capsys,
        *_pull_sm(
            aws, signer, out, "--group", "pump-health", "--latest-approved", "--spec", str(example / "spec.toml")
        ),
    )
    assert code == 0, err
    assert data is not None and data["registry_version"] == 1 and data["approval_status"] == "Approved"

    manifest = verify_package(out, signer.trust).manifest
    assert (manifest.name, manifest.version) == ("pump-health", "1.0.0")
    p = manifest.provenance
    assert p.source == "sagemaker"
    assert p.model_package_arn and p.model_package_arn.endswith("model-package/pump-health/1")
    assert (p.model_package_group, p.model_package_version, p.approval_status) == ("pump-health", 1, "Approved")
    assert p.uri == f"s3://{BUCKET}/v1/model.tar.gz"
    assert p.metrics == {"accuracy": 0.97, "regression_metrics.mae": 12.5}
    assert manifest.description == "pump-health training run 1"
    assert manifest.inputs[0].features[0].units == "mm/s"


def test_unapproved_version_needs_an_explicit_flag(
    aws: str, capsys: pytest.CaptureFixture[str], signer: Signer, tmp_path: Path, onnx_bytes: bytes
) -> None:
    archive = tarball({"model.onnx": onnx_bytes})
    register_model_group(
        aws, "press", [("p1/model.tar.gz", archive, "Approved"), ("p2/model.tar.gz", archive, "Rejected")]
    )
    out = tmp_path / "press.uadipkg"
    code, _, err = _cli(capsys, *_pull_sm(aws, signer, out, "--group", "press", "--version", "2"))
    assert code == 2
    assert (
        err
        == "modelline: press version 2 is Rejected, not Approved: approve it in the registry, or pass --allow-unapproved\n"
    )
    assert not out.exists()
    code, data, err = _cli(
        capsys, *_pull_sm(aws, signer, out, "--group", "press", "--version", "2", "--allow-unapproved")
    )
    assert code == 0, err
    manifest = verify_package(out, signer.trust).manifest
    assert manifest.version == "2.0.0" and manifest.provenance.approval_status == "Rejected"


@pytest.mark.parametrize(
    ("setup", "argv", "code", "message"),
    [
        ("none", ["--group", "missing"], 4, "does not exist"),
        ("pending", ["--group", "line"], 4, "model package group 'line' has no Approved version"),
        ("ok", ["--group", "line", "--version", "9"], 4, "model package group 'line' has no version 9"),
        (
            "no-onnx",
            ["--group", "line"],
            4,
            "no ONNX model (*.onnx) inside s3://ml-artifacts/l/model.tar.gz; it holds: code/train.py, weights.bin",
        ),
        (
            "two-onnx",
            ["--group", "line"],
            2,
            "holds several ONNX models (a/model.onnx, b/model.onnx): choose one with --model-file",
        ),
        ("two-onnx", ["--group", "line", "--model-file", "c/model.onnx"], 4, "has no file 'c/model.onnx'"),
        ("unsafe", ["--group", "line"], 3, "package rejected: unsafe entry '../model.onnx' in the model archive"),
    ],
)
def test_registry_errors(
    aws: str,
    capsys: pytest.CaptureFixture[str],
    signer: Signer,
    tmp_path: Path,
    onnx_bytes: bytes,
    setup: str,
    argv: list[str],
    code: int,
    message: str,
) -> None:
    tarballs = {
        "ok": tarball({"model.onnx": onnx_bytes}),
        "pending": tarball({"model.onnx": onnx_bytes}),
        "no-onnx": tarball({"weights.bin": b"\x00" * 10, "code/train.py": b""}),
        "two-onnx": tarball({"a/model.onnx": onnx_bytes, "b/model.onnx": onnx_bytes}),
        "unsafe": tarball({"../model.onnx": onnx_bytes}),
    }
    if setup != "none":
        register_model_group(
            aws,
            "line",
            [("l/model.tar.gz", tarballs[setup], "PendingManualApproval" if setup == "pending" else "Approved")],
            metrics=False,
        )
    out = tmp_path / "x.uadipkg"
    got, data, err = _cli(capsys, *_pull_sm(aws, signer, out, *argv))
    assert got == code, err
    assert err.startswith("modelline: ") and message in err and err.count("\n") == 1
    assert data is not None and data["ok"] is False
    assert not out.exists()


def test_model_file_picks_one_of_several(
    aws: str, capsys: pytest.CaptureFixture[str], signer: Signer, tmp_path: Path, onnx_bytes: bytes
) -> None:
    register_model_group(
        aws,
        "line",
        [("l/model.tar.gz", tarball({"a/model.onnx": onnx_bytes, "./b/model.onnx": onnx_bytes}), "Approved")],
    )
    out = tmp_path / "x.uadipkg"
    code, _, err = _cli(capsys, *_pull_sm(aws, signer, out, "--group", "line", "--model-file", "b/model.onnx"))
    assert code == 0, err
    verify_package(out, signer.trust)


def test_no_credentials(
    aws: str, capsys: pytest.CaptureFixture[str], signer: Signer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    code, _, err = _cli(capsys, *_pull_sm(aws, signer, tmp_path / "x.uadipkg", "--group", "pump-health"))
    assert code == 5
    assert (
        err == "modelline: no AWS credentials found: set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY\n"
    )


def _pull_s3(url: str, signer: Signer, out: Path, uri: str, *extra: str) -> list[str]:
    return [
        "pull",
        "s3",
        uri,
        "--endpoint-url",
        url,
        "--region",
        REGION,
        "--cert",
        str(signer.cert_path),
        "--key",
        str(signer.key_path),
        "-o",
        str(out),
        "--json",
        *extra,
    ]


def test_s3_bare_onnx_and_tarball(
    aws: str, capsys: pytest.CaptureFixture[str], signer: Signer, tmp_path: Path, onnx_bytes: bytes
) -> None:
    s3 = aws_client("s3", aws)
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    s3.put_object(Bucket=BUCKET, Key="models/pump.onnx", Body=onnx_bytes)
    s3.put_object(Bucket=BUCKET, Key="models/pump.tar.gz", Body=tarball({"model/pump.onnx": onnx_bytes}))

    out = tmp_path / "bare.uadipkg"
    code, data, err = _cli(capsys, *_pull_s3(aws, signer, out, f"s3://{BUCKET}/models/pump.onnx"))
    assert code == 0, err
    manifest = verify_package(out, signer.trust).manifest
    assert (manifest.name, manifest.version) == ("pump", "1.0.0")
    assert (manifest.provenance.source, manifest.provenance.uri) == ("s3", f"s3://{BUCKET}/models/pump.onnx")

    out = tmp_path / "tar.uadipkg"
    code, data, err = _cli(
        capsys,
        *_pull_s3(aws, signer, out, f"s3://{BUCKET}/models/pump.tar.gz", "--name", "pump-health", "--version", "1.3.0"),
    )
    assert code == 0, err
    manifest = verify_package(out, signer.trust).manifest
    assert (manifest.name, manifest.version) == ("pump-health", "1.3.0")
    assert data is not None and data["sha256"] == verify_package(out, signer.trust).sha256


@pytest.mark.parametrize(
    ("uri", "code", "message"),
    [
        ("s3://no-such-bucket/model.onnx", 4, "modelline: S3 bucket 'no-such-bucket' does not exist\n"),
        (f"s3://{BUCKET}/missing.onnx", 4, f"modelline: s3://{BUCKET}/missing.onnx does not exist\n"),
        (
            "https://example.invalid/model.onnx",
            2,
            "modelline: 'https://example.invalid/model.onnx' is not an S3 object URI like s3://bucket/path/model.tar.gz\n",
        ),
    ],
)
def test_s3_errors(
    aws: str, capsys: pytest.CaptureFixture[str], signer: Signer, tmp_path: Path, uri: str, code: int, message: str
) -> None:
    aws_client("s3", aws).create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    got, _, err = _cli(capsys, *_pull_s3(aws, signer, tmp_path / "x.uadipkg", uri))
    assert (got, err) == (code, message)


def test_download_reports_progress_up_to_the_object_size(aws: str, tmp_path: Path) -> None:
    from sdk.sources.s3 import download

    s3 = aws_client("s3", aws)
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    body = bytes(range(256)) * 12_000  # about 3 MiB: several chunks
    s3.put_object(Bucket=BUCKET, Key="big.bin", Body=body)
    calls: list[tuple[int, int | None]] = []
    size = download(s3, f"s3://{BUCKET}/big.bin", tmp_path / "big.bin", lambda done, total: calls.append((done, total)))
    assert size == len(body) == (tmp_path / "big.bin").stat().st_size
    assert len(calls) >= 3
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    assert calls[-1] == (len(body), len(body))
