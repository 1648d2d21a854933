"""The retraining dataset: stored prediction records joined with their ground truth, as CSV or Parquet.

One row per prediction record, in (device, pipeline, time, sequence) order:
``device, pipeline, sequence, time, source_time, model, version, status,
latency_ms, part_key``, then one ``input.<feature>`` column per model input and
one ``output.<name>`` column per output (a vector output as a JSON list), then
``feedback`` (the ground truth, empty where none arrived) and ``feedback_time``.
Columns are the union over the rows, in first-seen order, so a file spanning two
model versions with different interfaces still has one header.

A big export streams: ``Layout.observe`` learns the header (and each column's
Parquet type) in a first pass over the rows, then ``write`` takes the rows again
as an iterable and writes them chunk by chunk without holding them all.

CSV is written with the standard library; Parquet needs ``pyarrow`` (the
``parquet`` extra: ``pip install 'modelline[parquet]'``). ``upload`` puts the
file into S3 (or an S3-compatible store) with boto3, off the event loop.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from sdk.errors import UsageError

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


_NUMBER = "double"
_TEXT = "string"
_FIXED_TYPES = {"sequence": "int64", "status": "int64", "latency_ms": _NUMBER}


class Layout:
    """The header and column types of an export, learnt from its rows one at a time (a first pass)."""

    def __init__(self) -> None:
        self._kinds: dict[str, str | None] = {}  # column -> "double", "bool", "string", or None (only empty cells)
        self.rows = 0

    def observe(self, row: dict[str, Any]) -> None:
        """Take one flat row (``ExportRow.flat``) into account."""
        self.rows += 1
        for key, value in row.items():
            if key in FIXED or key in TRAILING:
                continue
            kind = (
                None
                if value is None
                else "bool"
                if isinstance(value, bool)
                else (_NUMBER if isinstance(value, int | float) else _TEXT)
            )
            known = self._kinds.setdefault(key, kind)
            if kind is not None and known != kind:
                self._kinds[key] = kind if known is None else _TEXT

    @property
    def header(self) -> list[str]:
        """Fixed columns, every input and output column in first-seen order, then feedback."""
        return FIXED + list(self._kinds) + TRAILING

    def arrow_type(self, column: str) -> str:
        """The Parquet (Arrow) type name of a column."""
        if column in _FIXED_TYPES or column == "feedback":
            return _FIXED_TYPES.get(column, _NUMBER)
        return self._kinds.get(column) or _TEXT


def format_of(path: Path, given: ExportFormat | None = None) -> ExportFormat:
    """The format asked for, else the one the file name ends with (.csv or .parquet)."""
    if given is not None:
        return given
    suffix = path.suffix.lower().lstrip(".")
    try:
        return ExportFormat(suffix)
    except ValueError:
        raise UsageError(f"{path}: say --format csv or --format parquet (or end the name with .csv/.parquet)") from None


def write(
    rows: Iterable[ExportRow],
    path: Path,
    fmt: ExportFormat,
    layout: Layout | None = None,
    chunk_rows: int = 10_000,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Write ``rows`` to ``path`` (blocking: call it in a thread); returns the number of rows.

    Without ``layout`` the rows are read into memory to learn the header; with one (from a first
    pass over the same rows) they stream, ``chunk_rows`` at a time, and ``progress`` hears the count."""
    if layout is None:
        listed = list(rows)
        layout = Layout()
        for row in listed:
            layout.observe(row.flat())
        rows = listed
    header = layout.header
    tmp = path.with_name(path.name + ".part")
    written = 0
    try:
        if fmt is ExportFormat.CSV:
            with tmp.open("w", newline="", encoding="utf-8") as f:
                writer = csv.DictWriter(f, fieldnames=header, restval="", extrasaction="raise")
                writer.writeheader()
                for chunk in _chunks(rows, chunk_rows):
                    writer.writerows(chunk)
                    written += len(chunk)
                    if progress is not None:
                        progress(written)
        else:
            written = _write_parquet(rows, tmp, layout, chunk_rows, progress)
        tmp.replace(path)  # a reader never sees half a file
    finally:
        tmp.unlink(missing_ok=True)
    return written


def _chunks(rows: Iterable[ExportRow], size: int) -> Iterator[list[dict[str, Any]]]:
    chunk: list[dict[str, Any]] = []
    for row in rows:
        chunk.append(row.flat())
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _write_parquet(
    rows: Iterable[ExportRow], tmp: Path, layout: Layout, chunk_rows: int, progress: Callable[[int], None] | None
) -> int:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise UsageError(
            "Parquet export needs pyarrow: pip install 'modelline[parquet]' (or use --format csv)"
        ) from None
    types = {"int64": pa.int64(), "double": pa.float64(), "bool": pa.bool_(), "string": pa.string()}
    schema = pa.schema([(name, types[layout.arrow_type(name)]) for name in layout.header])
    written = 0
    with pq.ParquetWriter(tmp, schema) as writer:
        for chunk in _chunks(rows, chunk_rows):
            columns = {}
            for field in schema:
                values = [row.get(field.name) for row in chunk]
                if field.type == pa.string():  # a column of mixed kinds is written as text
                    values = [v if v is None or isinstance(v, str) else json.dumps(v) for v in values]
                columns[field.name] = pa.array(values, type=field.type)
            writer.write_table(pa.table(columns, schema=schema))
            written += len(chunk)
            if progress is not None:
                progress(written)
        if not written:
            writer.write_table(schema.empty_table())
    return written


def upload(path: Path, uri: str, client: Any) -> str:
    """Put ``path`` under ``s3://bucket/prefix`` (blocking: call it in a thread); returns the object's URI."""
    if not uri.startswith("s3://") or len(uri) <= len("s3://"):
        raise UsageError(f"{uri!r} is not an S3 location like s3://bucket/prefix")
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    key = f"{prefix.rstrip('/')}/{path.name}" if prefix.strip("/") else path.name
    from sdk.sources.aws import aws_errors  # noqa: PLC0415 - boto3: not at every gateway start

    with aws_errors(f"uploading {path.name} to s3://{bucket}/{key}"):
        client.upload_file(str(path), bucket, key)
    return f"s3://{bucket}/{key}"
