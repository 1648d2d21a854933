"""The audit log file: numbering across restarts, a torn last line, rotation without loss, the writer's sink."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from sdk import audit
from sdk.audit import AuditRecord
from sdk.audit_log import AuditWriter, JsonlAuditLog


def _records(n: int, start: int = 0) -> list[AuditRecord]:
    return [AuditRecord(action="install", outcome="ok", who="eng", detail=f"#{start + i}") for i in range(n)]


async def test_numbering_survives_a_torn_line_and_a_restart(tmp_path: Path) -> None:
    log = await JsonlAuditLog.open(tmp_path)
    assert [r.seq for r in await log.append(_records(3))] == [1, 2, 3]
    await log.close()
    with (tmp_path / "audit.jsonl").open("ab") as f:
        f.write(b'{"at": "2026-11-30T10:00:00Z", "action": "confi')  # a write cut short by a crash
    log = await JsonlAuditLog.open(tmp_path)
    assert [r.seq for r in await log.append(_records(1))] == [4]
    assert [r.detail for r in await log.fetch("", 0, 100)] == ["#0", "#1", "#2", "#0"]
    assert await log.fetch("edge-1", 0, 100) == []  # an edge node collects nobody's records
    await log.close()


async def test_rotation_keeps_every_record_readable_in_order(tmp_path: Path) -> None:
    log = await JsonlAuditLog.open(tmp_path, max_file_bytes=4096)
    for batch in range(20):
        await log.append(_records(5, batch * 5))
    rotated = sorted(tmp_path.glob("audit-*.jsonl"))
    assert len(rotated) >= 3
    everything = await log.fetch("", 0, 1000)
    assert [r.seq for r in everything] == list(range(1, 101))
    assert [r.seq for r in await log.fetch("", 57, 10)] == list(range(58, 68))
    await log.close()
    reopened = await JsonlAuditLog.open(tmp_path, max_file_bytes=4096)
    assert reopened.last_sequence == 100
    assert [r.seq for r in await reopened.append(_records(1))] == [101]
    await reopened.close()


async def test_writer_takes_records_from_the_loop_and_from_threads(tmp_path: Path) -> None:
    log = await JsonlAuditLog.open(tmp_path)
    seen: list[int] = []

    async def listener(records: list[AuditRecord]) -> None:
        seen.extend(r.seq for r in records)

    async with AuditWriter(log) as writer:
        writer.listeners.append(listener)
        audit.record("login", "refused", who="mallory", address="127.0.0.1:50000", detail="wrong password")
        worker = threading.Thread(target=audit.record, args=("login", "ok"), kwargs={"who": "eng"})
        worker.start()
        await asyncio.to_thread(worker.join)
        await asyncio.sleep(0)  # the thread's record arrives through the loop
        await writer.flush()
    records = await log.fetch("", 0, 10)
    assert [(r.action, r.outcome, r.who) for r in records] == [("login", "refused", "mallory"), ("login", "ok", "eng")]
    assert records[0].address == "127.0.0.1:50000" and seen == [1, 2]
    audit.record("login", "ok", who="late")  # after the writer closed: not its record any more
    assert len(await log.fetch("", 0, 10)) == 2
    await log.close()
