"""An in-memory edge record queue that behaves like the record contract (sdk/monitor/records.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sdk.monitor.records import FeedbackRecord, FetchResult, PredictionRecord, RecordEnvelope

T0 = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)


def prediction(
    second: float, part_key: str | None = None, value: float = 1.0, version: str = "1.0.0"
) -> PredictionRecord:
    """A prediction made ``second`` seconds after T0."""
    return PredictionRecord(
        time=T0 + timedelta(seconds=second),
        model="pump-health",
        version=version,
        inputs={"vibration": 0.5, "temperature": 60.0},
        outputs={"remaining_life": value},
        latency_ms=1.5,
        part_key=part_key,
    )


def feedback(second: float, value: float, part_key: str | None = None) -> FeedbackRecord:
    """A measured result that arrived through the feedback tag ``second`` seconds after T0."""
    return FeedbackRecord(time=T0 + timedelta(seconds=second), value=value, part_key=part_key)


@dataclass
class FakeQueue:
    """Streams of records numbered 1, 2, 3...; deletes only what is acknowledged."""

    queue_id: str = "q1"
    streams: dict[str, list[RecordEnvelope]] = field(default_factory=dict)
    next_sequence: dict[str, int] = field(default_factory=dict)
    fetches: list[tuple[str, int, int]] = field(default_factory=list)
    acks: list[tuple[str, str, int]] = field(default_factory=list)
    fail_acks: int = 0  # the next n acknowledgements are lost on the way back (the node did delete)
    redeliver: bool = False  # answer every fetch from the start of the queue, ignoring AfterSequence

    def add(self, stream: str, *records: PredictionRecord | FeedbackRecord, skip: int = 0) -> None:
        """Queue records; ``skip`` sequence numbers are dropped first (the overflow policy)."""
        sequence = self.next_sequence.get(stream, 1) + skip
        for record in records:
            self.streams.setdefault(stream, []).append(RecordEnvelope(sequence=sequence, record=record))
            sequence += 1
        self.next_sequence[stream] = sequence

    def renew(self, queue_id: str) -> None:
        """A node whose data folder was created anew: empty, numbering from 1 again."""
        self.queue_id, self.streams, self.next_sequence = queue_id, {}, {}

    async def fetch(self, stream: str, after: int, max_records: int) -> FetchResult:
        self.fetches.append((stream, after, max_records))
        held = self.streams.get(stream, [])
        waiting = [e for e in held if self.redeliver or e.sequence > after]
        batch = waiting[:max_records]
        last = batch[-1].sequence if batch else after
        return FetchResult(self.queue_id, batch, last, len(waiting) > len(batch))

    async def acknowledge(self, stream: str, queue_id: str, up_to: int) -> int:
        self.acks.append((stream, queue_id, up_to))
        if queue_id != self.queue_id:
            return 0
        held = self.streams.get(stream, [])
        self.streams[stream] = [e for e in held if e.sequence > up_to]
        if self.fail_acks:
            self.fail_acks -= 1
            raise ConnectionError("connection lost")
        return len(held) - len(self.streams[stream])
