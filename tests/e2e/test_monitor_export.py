"""The retraining dataset file: every row and column back as written, CSV and Parquet, and uploaded to S3 (moto)."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from gateway.monitor.export import ExportFormat, ExportRow, format_of, upload, write
from sdk.errors import UsageError
from tests.aws_harness import REGION, aws_client

T0 = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)


def _rows() -> list[ExportRow]:
    rows = [
        ExportRow(
            device="edge-1",
            pipeline="main",
            sequence=i + 1,
            time=T0 + timedelta(seconds=i),
            model="pump-health",
            version="1.0.0",
            inputs={"speed": 1400.0 + i, "flow_rate": 118.0},
            outputs={"remaining_life": 900.0 - i, "probabilities": [0.1, 0.9]},
            feedback=890.0 if i == 1 else None,
            feedback_time=T0 + timedelta(hours=2) if i == 1 else None,
            part_key=f"SN-{i}",
        )
        for i in range(3)
    ]
    # a later version with one more input: one header for both
    rows.append(
        ExportRow(
            device="edge-2",
            pipeline="main",
            sequence=7,
            time=T0,
            model="pump-health",
            version="1.1.0",
            status=0x80AB0000,
            inputs={"speed": None, "flow_rate": 117.0, "vibration_rms": 2.0},
            outputs={"remaining_life": None, "probabilities": None},
        )
    )
    return rows


def test_csv_holds_every_row_and_column(tmp_path: Path) -> None:
    path = tmp_path / "dataset.csv"
    assert write(_rows(), path, format_of(path)) == 4
    with path.open(newline="") as f:
        got = list(csv.DictReader(f))
    assert list(got[0]) == [
        "device", "pipeline", "sequence", "time", "source_time", "model", "version", "status", "latency_ms",
        "part_key", "input.speed", "input.flow_rate", "output.remaining_life", "output.probabilities",
        "input.vibration_rms", "feedback", "feedback_time",
    ]  # fmt: skip
    assert [r["sequence"] for r in got] == ["1", "2", "3", "7"]
    assert got[1]["feedback"] == "890.0" and got[0]["feedback"] == ""
    assert json.loads(got[0]["output.probabilities"]) == [0.1, 0.9]
    assert got[3]["input.vibration_rms"] == "2.0" and got[0]["input.vibration_rms"] == ""
    assert got[3]["status"] == str(0x80AB0000) and got[3]["input.speed"] == ""
    assert not list(tmp_path.glob("*.part"))


def test_parquet_holds_every_row(tmp_path: Path) -> None:
    path = tmp_path / "dataset.parquet"
    assert write(_rows(), path, format_of(path)) == 4
    table = pq.read_table(path)
    assert table.num_rows == 4
    data = table.to_pydict()
    assert data["sequence"] == [1, 2, 3, 7] and data["feedback"][1] == 890.0 and data["feedback"][0] is None
    assert data["input.vibration_rms"] == [None, None, None, 2.0]


def test_format_comes_from_the_name_or_is_asked_for(tmp_path: Path) -> None:
    assert format_of(tmp_path / "x.PARQUET") is ExportFormat.PARQUET
    assert format_of(tmp_path / "x.txt", ExportFormat.CSV) is ExportFormat.CSV
    with pytest.raises(UsageError, match="--format csv"):
        format_of(tmp_path / "x.txt")


def test_upload_to_s3(aws: str, tmp_path: Path) -> None:
    s3 = aws_client("s3", aws)
    s3.create_bucket(Bucket="retraining", CreateBucketConfiguration={"LocationConstraint": REGION})
    path = tmp_path / "pump-2026-11-30.csv"
    write(_rows(), path, ExportFormat.CSV)
    uri = upload(path, "s3://retraining/pump-health/", s3)
    assert uri == "s3://retraining/pump-health/pump-2026-11-30.csv"
    body = s3.get_object(Bucket="retraining", Key="pump-health/pump-2026-11-30.csv")["Body"].read()
    assert body == path.read_bytes()
    with pytest.raises(UsageError, match="S3 location"):
        upload(path, "https://example/x", s3)
