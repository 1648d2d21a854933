"""What an edge node records for the Model Monitor, and how a collector fetches it: the record contract.

An edge node keeps one *stream* of records per pipeline (named like the
pipeline) and one stream of its own warning and error log records (the empty
stream name ""). Each stream numbers its records 1, 2, 3... (``sequence``)
without gaps at the source, in a durable queue that survives restarts; a gap a
collector sees is a record the queue dropped by its overflow policy.

The shape follows OPC 40001-101 (Machinery Result Transfer) result management
and DI's FetchTransferResultData (OPC 10000-100 §8.4.6): a collector calls

    FetchRecords(Stream, AfterSequence, MaxRecords)
        -> (QueueId, Records: String[] (one RecordEnvelope JSON each), LastSequence, MoreWaiting)
    AcknowledgeRecords(Stream, QueueId, UpToSequence) -> (Removed)

on the edge node's ``InferenceServer/Records`` object, stores what it fetched
idempotently keyed by (device, QueueId, Stream, sequence), and acknowledges only
after its store committed. The node deletes only acknowledged records, so
delivery is at-least-once on the wire and exactly-once in the collector's
store. As OPC 40001-101 §7.1.6 says of result acknowledgement, Acknowledge alone
guarantees nothing: exactly-once comes from the sequence numbers and the
idempotent store. ``QueueId`` names one queue's life: a node whose queue was
created anew (a new data folder) starts again at sequence 1 with a new QueueId,
so old and new records never collide.

A ``RecordsReadyEventType`` event (the ResultReady of 40001-101) is raised on
the Records object when records are waiting, at most once a second per stream,
so a collector need not poll fast; it must still poll now and then, since an
event can be lost with a connection.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

LOG_STREAM = ""
"""The stream of an edge node's own warning and error log records."""

Number = float | int | bool | None
"""One input or output value as recorded (None when there was none)."""


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PredictionRecord(_Record):
    """One inference of one pipeline: what went in, what came out, and how good both were."""

    kind: Literal["prediction"] = "prediction"
    time: datetime = Field(description="Server timestamp of the outputs (UTC).")
    source_time: datetime | None = Field(None, description="Newest source timestamp among the inputs.")
    model: str
    version: str
    configuration: str = Field("", description="The pipeline's Configuration that made it (model, version, binding).")
    inputs: dict[str, Number] = Field(description="Feature name -> value the model saw (None: none usable).")
    input_status: dict[str, int] = Field(
        default_factory=dict, description="Feature name -> OPC UA StatusCode of the reading, where not Good."
    )
    outputs: dict[str, Number | list[float]] = Field(description="Output name -> value (None with a Bad status).")
    status: int = Field(0, description="StatusCode of the outputs (0 = Good; the README table lists the others).")
    latency_ms: float = Field(0.0, ge=0, description="Duration of the inference; 0 when none ran (Bad inputs).")
    skipped: int = Field(0, ge=0, description="Triggers folded into this inference since the one before.")
    part_key: str | None = Field(None, description="The binding's part key tag at the time (serial, batch, carrier).")


class FeedbackRecord(_Record):
    """Ground truth that arrived at the edge node through the binding's feedback tag."""

    kind: Literal["feedback"] = "feedback"
    time: datetime = Field(description="When the measured result arrived (the tag's source timestamp if any).")
    value: float
    part_key: str | None = Field(None, description="The part key tag's value when the result arrived.")


class LogLevel(StrEnum):
    """Severity of a log record."""

    WARNING = "WARNING"
    ERROR = "ERROR"
    CRITICAL = "CRITICAL"


class LogRecord(_Record):
    """A warning or error the edge node logged (stream "")."""

    kind: Literal["log"] = "log"
    time: datetime
    level: LogLevel
    logger: str
    message: str = Field(max_length=4096)


Record = Annotated[PredictionRecord | FeedbackRecord | LogRecord, Field(discriminator="kind")]


class RecordEnvelope(_Record):
    """One record as FetchRecords returns it: its place in its stream, and the record."""

    sequence: int = Field(ge=1)
    record: Record


@dataclass(frozen=True)
class FetchResult:
    """What one FetchRecords call answered (sdk/opcua/records_client.py reads it off the wire)."""

    queue_id: str
    records: list[RecordEnvelope]
    last_sequence: int  # the newest sequence committed in the stream (0: none yet)
    more_waiting: bool
    unreadable: list[int] = field(default_factory=list)  # sequences returned that did not validate
