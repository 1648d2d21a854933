"""What the Model Monitor keeps and answers, as plain records (the store is gateway/monitor/store.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


@dataclass(frozen=True)
class Cursor:
    """How far one stream of one device is stored."""

    queue_id: str
    last_sequence: int
    gaps: int  # records missing between stored sequences: dropped by the edge node's queue


class Feedback(BaseModel):
    """A measured result for a prediction; exactly one of sequence, part_key, source_time names it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sample_id: str = Field(min_length=1, max_length=256)
    device: str = Field(min_length=1)
    pipeline: str = Field(min_length=1)
    value: float = Field(allow_inf_nan=False)
    sequence: int | None = Field(None, ge=1, le=2**63 - 1)
    part_key: str | None = Field(None, min_length=1, max_length=1024)
    source_time: datetime | None = None
    time: datetime = Field(description="When the result was measured or arrived: a part key match looks before it.")
    origin: str = Field("method", description="'method' (SubmitFeedback) or 'tag' (the edge node's feedback tag).")


class StoredPrediction(BaseModel):
    """One stored prediction record and its place."""

    model_config = ConfigDict(frozen=True)

    device: str
    queue_id: str
    stream: str
    sequence: int
    time: datetime
    source_time: datetime | None
    model: str
    version: str
    deployment_id: str | None
    status: int
    latency_ms: float
    part_key: str | None
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    input_status: dict[str, int]


@dataclass(frozen=True)
class Figures:
    """How one deployment's model did on one device, from the stored records."""

    inferences: int
    errors: int  # predictions with a Bad status
    feedback: int  # measured results joined to its predictions
    latency_p50_ms: float | None  # over the newest LATENCY_WINDOW predictions; None without any
    latency_p99_ms: float | None


LATENCY_WINDOW = 1000


@dataclass(frozen=True)
class Pair:
    """A prediction and the measured result joined to it."""

    prediction: StoredPrediction
    value: float
    sample_id: str
