"""The retraining dataset: stored prediction records joined with their ground truth, as CSV or Parquet.

One row per prediction record, in (device, pipeline, time, sequence) order:
``device, pipeline, sequence, time, source_time, model, version, status,
latency_ms, part_key``, then one ``input.<feature>`` column per model input and
one ``output.<name>`` column per output (a vector output as a JSON list), then
``feedback`` (the ground truth, empty where none arrived) and ``feedback_time``.
Columns are the union over the rows, in first-seen order, so a file spanning two
model versions with different interfaces still has one header.

CSV is written with the standard library; Parquet needs ``pyarrow`` (the
``parquet`` extra: ``pip install 'modelline[parquet]'``). ``upload`` puts the
file into S3 (or an S3-compatible store) with boto3, off the event loop.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from sdk.errors import UsageError
from sdk.sources.aws import aws_errors

FIXED = [
    "device",
    "pipeline",
    "sequence",
    "time",
    "source_time",
    "model",
    "version",
    "status",
    "latency_ms",
    "part_key",
]
TRAILING = ["feedback", "feedback_time"]


class ExportFormat(StrEnum):
    """File formats of an export."""

    CSV = "csv"
    PARQUET = "parquet"


class ExportRow(BaseModel):
    """One prediction record with its ground truth, as the store hands it to the exporter."""

    model_config = ConfigDict(frozen=True)

    device: str
    pipeline: str
    sequence: int
    time: datetime
    source_time: datetime | None = None
    model: str
    version: str
    status: int = 0
    latency_ms: float = 0.0
    part_key: str | None = None
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    feedback: float | None = None
    feedback_time: datetime | None = None

    def flat(self) -> dict[str, Any]:
        """Column -> value, vectors as JSON text and times as ISO 8601."""
        row: dict[str, Any] = {name: getattr(self, name) for name in FIXED}
        row.update({f"input.{k}": v for k, v in self.inputs.items()})
        row.update({f"output.{k}": json.dumps(v) if isinstance(v, list) else v for k, v in self.outputs.items()})
        row["feedback"], row["feedback_time"] = self.feedback, self.feedback_time
        return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in row.items()}


def columns(rows: list[dict[str, Any]]) -> list[str]:
    """The header: fixed columns, every input and output column in first-seen order, then feedback."""
    seen: dict[str, None] = {}
    for row in rows:
        for key in row:
            if key not in FIXED and key not in TRAILING:
                seen.setdefault(key, None)
    return FIXED + list(seen) + TRAILING


def format_of(path: Path, given: ExportFormat | None = None) -> ExportFormat:
    """The format asked for, else the one the file name ends with (.csv or .parquet)."""
    if given is not None:
        return given
    suffix = path.suffix.lower().lstrip(".")
    try:
        return ExportFormat(suffix)
    except ValueError:
        raise UsageError(f"{path}: say --format csv or --format parquet (or end the name with .csv/.parquet)") from None


def write(rows: Iterable[ExportRow], path: Path, fmt: ExportFormat) -> int:
    """Write ``rows`` to ``path`` (blocking: call it in a thread); returns the number of rows."""
    flat = [row.flat() for row in rows]
    header = columns(flat)
    tmp = path.with_name(path.name + ".part")
    if fmt is ExportFormat.CSV:
        with tmp.open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=header, restval="", extrasaction="raise")
            writer.writeheader()
            writer.writerows(flat)
    else:
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise UsageError(
                "Parquet export needs pyarrow: pip install 'modelline[parquet]' (or use --format csv)"
            ) from None
        table = pa.table({name: [row.get(name) for row in flat] for name in header})  # every row, every column
        pq.write_table(table, tmp)
    tmp.replace(path)  # a reader never sees half a file
    return len(flat)


def upload(path: Path, uri: str, client: Any) -> str:
    """Put ``path`` under ``s3://bucket/prefix`` (blocking: call it in a thread); returns the object's URI."""
    if not uri.startswith("s3://") or len(uri) <= len("s3://"):
        raise UsageError(f"{uri!r} is not an S3 location like s3://bucket/prefix")
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    key = f"{prefix.rstrip('/')}/{path.name}" if prefix.strip("/") else path.name
    with aws_errors(f"uploading {path.name} to s3://{bucket}/{key}"):
        client.upload_file(str(path), bucket, key)
    return f"s3://{bucket}/{key}"
