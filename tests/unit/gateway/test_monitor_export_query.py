"""The export's read side: every stored prediction once, in batches, with its newest result, from a read-only
snapshot that a writing gateway does not disturb; the streamed file equals the one written from a list."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from gateway.monitor.base import Feedback
from gateway.monitor.export import ExportFormat, ExportRow, Layout, write
from gateway.monitor.store import MonitorStore, MonitorStoreError
from sdk.errors import NotFound
from sdk.monitor.records import RecordEnvelope
from tests.unit.gateway.monitor_fakes import T0, prediction


def _batch(first: int, *seconds: float, version: str = "1.0.0") -> list[RecordEnvelope]:
    return [
        RecordEnvelope(sequence=first + i, record=prediction(s, value=100.0 + s, version=version))
        for i, s in enumerate(seconds)
    ]


def _fb(sample_id: str, sequence: int, value: float, after_s: float) -> Feedback:
    return Feedback(
        sample_id=sample_id,
        device="edge-a",
        pipeline="main",
        value=value,
        sequence=sequence,
        time=T0 + timedelta(seconds=after_s),
    )


async def _rows(store: MonitorStore, **filters: object) -> list[list[ExportRow]]:
    return [batch async for batch in store.export_rows(batch=2, **filters)]  # type: ignore[arg-type]


async def test_every_prediction_once_in_batches_with_its_newest_result(tmp_path: Path) -> None:
    path = tmp_path / "monitor.sqlite3"
    async with MonitorStore.open(path) as writer:
        await writer.ingest_batch("edge-a", "main", "q1", _batch(1, 1, 2, 3, 4, 5))
        await writer.ingest_batch("edge-b", "main", "q1", _batch(1, 1.5, version="1.1.0"))
        assert await writer.add_feedback(_fb("qs-1", 2, 7.0, 60))
        assert await writer.add_feedback(_fb("qs-2", 2, 8.0, 120))  # measured again later: the newer counts
        async with MonitorStore.open_readonly(path) as reader, reader.snapshot():
            batches = await _rows(reader)
            await writer.ingest_batch("edge-a", "main", "q1", _batch(6, 6))  # committed during the export
            again = await _rows(reader)
            assert await reader.export_count() == 6
        assert [len(b) for b in batches] == [2, 2, 2] and again == batches
        rows = [r for b in batches for r in b]
        assert [(r.device, r.sequence) for r in rows] == [("edge-a", s) for s in range(1, 6)] + [("edge-b", 1)]
        assert [(r.sequence, r.feedback) for r in rows if r.feedback is not None] == [(2, 8.0)]
        assert rows[1].feedback_time == T0 + timedelta(seconds=120)
        assert rows[0].inputs == {"vibration": 0.5, "temperature": 60.0} and rows[0].outputs == {"remaining_life": 101}

        async with MonitorStore.open_readonly(path) as reader:
            window = await _rows(
                reader, device="edge-a", since=T0 + timedelta(seconds=2), until=T0 + timedelta(seconds=6)
            )
            assert [r.sequence for b in window for r in b] == [2, 3, 4, 5]
            assert await _rows(reader, version="1.1.0") != [] and await _rows(reader, model="other") == []
            with pytest.raises(Exception, match="readonly"):
                await reader._db.execute("DELETE FROM predictions")


async def test_read_only_open_refuses_what_is_not_a_monitor_database(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="no monitor database at"):
        async with MonitorStore.open_readonly(tmp_path / "monitor.sqlite3"):
            pass
    assert not (tmp_path / "monitor.sqlite3").exists()  # nothing created
    (tmp_path / "monitor.sqlite3").write_bytes(b"not a database at all" * 100)
    with pytest.raises(MonitorStoreError, match="not a monitor database"):
        async with MonitorStore.open_readonly(tmp_path / "monitor.sqlite3"):
            pass


@pytest.mark.parametrize("fmt", list(ExportFormat))
def test_a_streamed_file_equals_one_written_from_a_list(tmp_path: Path, fmt: ExportFormat) -> None:
    rows = [
        ExportRow(
            device="edge-a",
            pipeline="main",
            sequence=i,
            time=T0 + timedelta(seconds=i),
            model="pump-health",
            version="1.0.0" if i < 5 else "1.1.0",
            inputs={"speed": 1400.0 + i} | ({"vibration_rms": 2.0} if i >= 5 else {}),
            outputs={"remaining_life": None if i == 0 else 900.0 - i, "probabilities": [0.1, 0.9]},
            feedback=1.0 if i == 3 else None,
        )
        for i in range(9)
    ]
    layout = Layout()
    for row in rows:
        layout.observe(row.flat())
    seen: list[int] = []
    assert write(iter(rows), tmp_path / "streamed", fmt, layout, chunk_rows=2, progress=seen.append) == 9
    assert write(rows, tmp_path / "listed", fmt) == 9
    assert seen == [2, 4, 6, 8, 9]
    if fmt is ExportFormat.CSV:
        assert (tmp_path / "streamed").read_bytes() == (tmp_path / "listed").read_bytes()
    else:
        import pyarrow.parquet as pq

        streamed, listed = pq.read_table(tmp_path / "streamed"), pq.read_table(tmp_path / "listed")
        assert streamed.num_rows == 9 and streamed.to_pydict() == listed.to_pydict()
        assert streamed.column_names[-3:] == ["input.vibration_rms", "feedback", "feedback_time"]


def test_an_empty_export_writes_the_header_only(tmp_path: Path) -> None:
    assert write(iter([]), tmp_path / "empty.csv", ExportFormat.CSV, Layout()) == 0
    assert (tmp_path / "empty.csv").read_text().splitlines() == [
        "device,pipeline,sequence,time,source_time,model,version,status,latency_ms,part_key,feedback,feedback_time"
    ]
    assert write(iter([]), tmp_path / "empty.parquet", ExportFormat.PARQUET, Layout()) == 0
    import pyarrow.parquet as pq

    assert pq.read_table(tmp_path / "empty.parquet").num_rows == 0
