"""The audit trail on disk, and the writer that feeds it without blocking anyone.

``AuditWriter`` is the sink a process adds (``sdk.audit.add_sink``): ``record()`` only queues the
record (from the event loop or, thread-safe, from a worker thread); one task writes the queue in
batches to the process's ``AuditLog`` (a file here, the store on the gateway) and then hands the
numbered records to its listeners (the OPC UA AuditEvents). A record is on disk within one batch
of being recorded; a failed write is retried, never dropped unless the buffer overflows.

``JsonlAuditLog``: an edge node's append-only log, one JSON object per line::

    <data_dir>/audit/audit.jsonl                      newest records, opened O_APPEND
    <data_dir>/audit/audit-<first seq:012d>.jsonl     older files, rotated by size and kept

A file opened O_APPEND and fsync'd per batch is the simplest log that survives SIGKILL and power
loss: each batch is one write(2) at the end of the file, nothing is rewritten, and a torn last line
(a crash in the middle of a write) is fenced off with a newline at the next start and skipped on
reading. Rotation renames the full file (a rename is atomic) and never deletes one: the plant's
retention policy, not ModelLine, decides when old audit files go.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import TracebackType
from typing import Self

from pydantic import ValidationError

from sdk.audit import MAX_FETCH, AuditLog, AuditRecord, add_sink

_log = logging.getLogger(__name__)

Listener = Callable[[list[AuditRecord]], Awaitable[None]]
CURRENT = "audit.jsonl"
MAX_BUFFERED = 100_000  # records waiting for a log that cannot be written (a full disk); beyond it the oldest go
RETRY_S = 1.0
_writers: set[AuditWriter] = set()


async def on_disk(timeout_s: float = 2.0) -> None:
    """Wait until every audit record made so far is written (at most ``timeout_s``: a log that cannot be
    written, a full disk, must not hold up the call being answered; the record stays queued)."""
    try:
        await asyncio.wait_for(asyncio.gather(*(w.flush() for w in list(_writers))), timeout_s)
    except TimeoutError:
        _log.warning("audit: records not yet on disk after %.1f s", timeout_s)


class AuditWriter:
    """The process's audit sink: queues records, writes them to ``log`` in batches, then tells the listeners."""

    def __init__(self, log: AuditLog, accepts: Callable[[], bool] = lambda: True) -> None:
        self.log = log
        self._accepts = accepts  # asked in the recording context: is this record this process part's?
        self.listeners: list[Listener] = []
        self._queue: list[AuditRecord] = []
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = 0
        self._task: asyncio.Task[None] | None = None
        self._remove: Callable[[], None] | None = None

    async def __aenter__(self) -> Self:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()
        self._task = asyncio.create_task(self._run(), name="audit writer")
        self._remove = add_sink(self._sink)
        _writers.add(self)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        _writers.discard(self)
        if self._remove is not None:
            self._remove()
        try:
            await asyncio.wait_for(self.flush(), 5.0)
        except TimeoutError:
            _log.error("audit: %d record(s) could not be written before stopping", len(self._queue))
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def _sink(self, entry: AuditRecord) -> None:
        if not self._accepts():
            return
        self._queue_entry(entry)

    def _queue_entry(self, entry: AuditRecord) -> None:
        if threading.get_ident() != self._thread:  # a worker thread (a login checked off the loop)
            if self._loop is not None and not self._loop.is_closed():
                self._loop.call_soon_threadsafe(self._queue_entry, entry)
            return
        self._queue.append(entry)
        if len(self._queue) > MAX_BUFFERED:
            lost = self._queue.pop(0)
            _log.error("audit: buffer full, record lost: %s", lost.model_dump_json())
        self._idle.clear()
        self._wake.set()

    async def flush(self) -> None:
        """Wait until every record queued so far is written and its listeners were told."""
        while not self._idle.is_set():
            await self._idle.wait()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if not self._queue:
                self._idle.set()
                continue
            batch, self._queue = self._queue, []
            try:
                written = await self.log.append(batch)
            except Exception as exc:  # the records wait for the next try; the process keeps working
                _log.error("audit: writing %d record(s) failed, retrying: %s", len(batch), exc)
                self._queue[:0] = batch
                await asyncio.sleep(RETRY_S)
                self._wake.set()
                continue
            for listener in self.listeners:
                try:
                    await listener(written)
                except Exception:
                    _log.exception("audit: a listener failed")
            if not self._queue:
                self._idle.set()


class JsonlAuditLog:
    """An append-only audit log in one folder of JSON-lines files (see the module docstring)."""

    def __init__(self, folder: Path, max_file_bytes: int = 16 << 20) -> None:
        self.folder = folder
        self.max_file_bytes = max_file_bytes
        self.last_sequence = 0
        self._first_in_current = 0  # seq of the current file's first record (0: empty)
        self._fd = -1
        self._lock = asyncio.Lock()

    @classmethod
    async def open(cls, folder: Path, max_file_bytes: int = 16 << 20) -> JsonlAuditLog:
        """Open (creating the folder) and find the last sequence written."""
        log = cls(folder, max_file_bytes)
        await asyncio.to_thread(log._open)
        return log

    async def close(self) -> None:
        """Close the file."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def _open(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        current = self.folder / CURRENT
        self._fd = os.open(current, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        size = os.fstat(self._fd).st_size
        if size:
            with current.open("rb") as f:
                f.seek(size - 1)
                if f.read(1) != b"\n":  # a write torn by a crash: fence it off, it is skipped on reading
                    os.write(self._fd, b"\n")
                    os.fsync(self._fd)
        records = _read(current)
        if records:
            self._first_in_current, self.last_sequence = records[0].seq, records[-1].seq
        else:
            rotated = self._rotated()
            older = _read(rotated[-1][1]) if rotated else []
            self.last_sequence = older[-1].seq if older else 0

    def _rotated(self) -> list[tuple[int, Path]]:
        """The rotated files by their first sequence, oldest first."""
        found = []
        for path in self.folder.glob("audit-*.jsonl"):
            try:
                found.append((int(path.stem.removeprefix("audit-")), path))
            except ValueError:
                continue
        return sorted(found)

    async def append(self, records: list[AuditRecord]) -> list[AuditRecord]:
        """Number the records, write them in one append and fsync; rotate when the file is full."""
        async with self._lock:
            numbered = [r.model_copy(update={"seq": self.last_sequence + i}) for i, r in enumerate(records, start=1)]
            data = "".join(r.model_dump_json() + "\n" for r in numbered).encode()
            await asyncio.to_thread(self._write, data)
            if numbered:
                self._first_in_current = self._first_in_current or numbered[0].seq
                self.last_sequence = numbered[-1].seq
            if os.fstat(self._fd).st_size >= self.max_file_bytes:
                await asyncio.to_thread(self._rotate)
            return numbered

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        os.fsync(self._fd)

    def _rotate(self) -> None:
        current = self.folder / CURRENT
        os.close(self._fd)
        self._fd = -1
        os.rename(current, self.folder / f"audit-{self._first_in_current:012d}.jsonl")
        self._fd = os.open(current, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        directory = os.open(self.folder, os.O_RDONLY)
        try:
            os.fsync(directory)  # the rename and the new file survive a power loss
        finally:
            os.close(directory)
        self._first_in_current = 0
        _log.info("audit: rotated %s at sequence %d", current, self.last_sequence)

    async def newest(self) -> int:
        """The sequence of the newest record written (0: none yet)."""
        return self.last_sequence

    async def fetch(self, device: str, after: int, limit: int) -> list[AuditRecord]:
        """Records after ``after``, oldest first; an edge node has no collected records (device must be '')."""
        if device or after >= self.last_sequence:  # a collector polling a quiet node reads no file
            return []
        limit = min(limit or MAX_FETCH, MAX_FETCH)
        async with self._lock:  # not in the middle of a rotation
            return await asyncio.to_thread(self._fetch, after, limit)

    def _fetch(self, after: int, limit: int) -> list[AuditRecord]:
        files = [*self._rotated(), (self._first_in_current or self.last_sequence + 1, self.folder / CURRENT)]
        found: list[AuditRecord] = []
        for index, (_first, path) in enumerate(files):
            following = files[index + 1][0] if index + 1 < len(files) else None
            if following is not None and following - 1 <= after:
                continue  # every record of this file is at or before ``after``
            found += [r for r in _read(path) if r.seq > after][: limit - len(found)]
            if len(found) >= limit:
                break
        return found


def _read(path: Path) -> list[AuditRecord]:
    """The records of one file; a torn or unreadable line is skipped (and logged)."""
    try:
        lines = path.read_bytes().splitlines()
    except FileNotFoundError:
        return []
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(AuditRecord.model_validate_json(line))
        except ValidationError:
            _log.warning("audit: %s line %d is unreadable and skipped", path, number)
    return records
