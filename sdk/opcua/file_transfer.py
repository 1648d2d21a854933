"""Server side of TemporaryFileTransferType (OPC 10000-20 section 4.4, formerly OPC 10000-5 C.4).

GenerateFileForWrite creates a temporary FileType object, reachable only by the
NodeId it returns (no reference leads to it), opens it for writing in the calling
session and returns the handle; the client writes chunks and calls CloseAndCommit,
which hands the finished file to the owner's ``commit`` callback, with its size and SHA-256 when they were
computed as the chunks arrived (sdk.opcua.filetype: the owner need not read the file again). A commit that
raises a ModelLineError is answered with that error's StatusCode and leaves
nothing behind. GenerateFileForRead does the same for reading a file the owner
names. A transfer and its temporary file are released on CloseAndCommit, when
the client closes the temporary file, when its session ends, when a Write would
make the package larger than ``max_package_bytes``, and when the client is
silent for longer than ClientProcessingTimeout (a watch task started by
``bind`` and stopped by ``release`` sees to the last without waiting for
another call). Disk space is checked before it is used: GenerateFileForWrite
needs ``reserve_bytes`` free in the work folder and every Write needs room for
the file so far plus the reserve (a new transfer announces no size); a refusal
(DiskFull, Bad_OutOfMemory, "needs 30 MB, 12 MB free") abandons the transfer at
once and is reported to the owner's ``on_refused``. The methods also answer when called by the type's method
NodeIds with this object as ObjectId (sdk.opcua.type_methods).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asyncua import Node, Server, ua

from sdk.diskspace import DEFAULT_RESERVE_BYTES, FreeSpace, ensure_free, free_bytes
from sdk.errors import DiskFull
from sdk.opcua import sessions, type_methods
from sdk.opcua.filetype import ERASE_EXISTING, READ, WRITE, FileNode, new_file_object
from sdk.opcua.ids import auto_id, delete_subtree, path_id, qname
from sdk.opcua.status import StatusError, arg, expect_args, status_on_error
from sdk.opcua.users import Role, requires
from sdk.package.stream import Received

_log = logging.getLogger(__name__)
_S = ua.StatusCodes
_numbers = itertools.count(1)
DEFAULT_MAX_PACKAGE_BYTES = 512 << 20

# TemporaryFileTransferType's methods (OPC 10000-20 4.4.2 to 4.4.4): type method NodeId, declared InputArguments.
_METHODS = {
    "GenerateFileForRead": (ua.ObjectIds.TemporaryFileTransferType_GenerateFileForRead, ("GenerateOptions",)),
    "GenerateFileForWrite": (ua.ObjectIds.TemporaryFileTransferType_GenerateFileForWrite, ("GenerateOptions",)),
    "CloseAndCommit": (ua.ObjectIds.TemporaryFileTransferType_CloseAndCommit, ("FileHandle",)),
}

Commit = Callable[[Path, Any, Received | None], Awaitable[None]]
"""Takes the written file (moved or copied away before returning), the generateOptions value, and the file's size
and SHA-256 as hashed while it was written, with the zip entries followed then (None when the client did not
write it in order)."""
ReadSource = Callable[[Any], Awaitable[Path]]
"""Names the file a GenerateFileForRead call with these generateOptions should serve."""
OnRefused = Callable[[str], Awaitable[None]]
"""Told the one-line reason when a transfer is refused for lack of disk space (to show it to users)."""


@dataclass
class _Transfer:
    file: FileNode
    handle: int
    session: ua.NodeId | None
    options: Any
    writing: bool


class TemporaryFileTransfer:
    """Serves one TemporaryFileTransferType object."""

    def __init__(
        self,
        server: Server,
        node: Node,
        work_dir: Path,
        *,
        commit: Commit,
        read_source: ReadSource | None = None,
        check_options: Callable[[Any], Any] = lambda value: value,
        client_processing_timeout_s: float = 120.0,
        max_byte_string: int = 1 << 20,
        max_package_bytes: int = DEFAULT_MAX_PACKAGE_BYTES,
        mime_type: str = "application/octet-stream",
        role: Role = Role.OBSERVER,
        reserve_bytes: int = DEFAULT_RESERVE_BYTES,
        free_space: FreeSpace = free_bytes,
        on_refused: OnRefused | None = None,
        follow_zip: bool = False,
    ) -> None:
        self.server = server
        self.follow_zip = follow_zip  # uploads are zips (packages): follow their entries as they arrive
        self.role = role  # needed to start a transfer, either way
        self.node = node
        self.work_dir = work_dir
        self._commit = commit
        self._read_source = read_source
        self._check_options = check_options
        self.timeout_s = client_processing_timeout_s
        self.max_byte_string = max_byte_string
        self.max_package_bytes = max_package_bytes
        self.mime_type = mime_type
        self.reserve_bytes = reserve_bytes  # left free on the disk by every transfer, for state files and unpacking
        self.free_space = free_space  # injectable: tests simulate a full disk
        self._on_refused = on_refused
        self._transfers: dict[int, _Transfer] = {}
        self._unlisten: Callable[[], None] | None = None
        self._unserve: Callable[[], None] | None = None
        self._started = asyncio.Event()  # wakes the watch task when a transfer starts
        self._watch: asyncio.Task[None] | None = None

    async def bind(self) -> TemporaryFileTransfer:
        """Link GenerateFileForRead/Write and CloseAndCommit; returns self."""
        self.work_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        for leftover in self.work_dir.iterdir():  # transfers do not survive a restart
            if leftover.is_file():
                leftover.unlink()
            elif leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
        handlers = {  # starting a transfer, either way, needs the role (UserExecutable shows it: sdk.opcua.access)
            "GenerateFileForRead": status_on_error(requires(self.role)(self._generate_for_read)),
            "GenerateFileForWrite": status_on_error(requires(self.role)(self._generate_for_write)),
            "CloseAndCommit": self._close_and_commit,
        }
        for child in await self.node.get_children():
            name = (await child.read_browse_name()).Name
            if name in handlers:
                self.server.link_method(child, type_methods.bound_to(self.node.nodeid, handlers[name]))
            elif name == "ClientProcessingTimeout":
                await child.write_value(ua.Variant(self.timeout_s * 1000.0, ua.VariantType.Double))
        missing = set(handlers) - {(await c.read_browse_name()).Name for c in await self.node.get_children()}
        if missing:
            raise RuntimeError(f"{self.node} lacks methods {sorted(missing)}")
        self._unserve = type_methods.serve(
            self.server, self.node.nodeid, {_METHODS[name][0]: handler for name, handler in handlers.items()}
        )
        self._unlisten = sessions.on_session_closed(self._session_closed)
        self._watch = asyncio.create_task(self._watch_timeouts(), name=f"transfer timeouts {self.node.nodeid}")
        return self

    async def release(self) -> None:
        """Stop the watch task and abandon every transfer (server shutdown)."""
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
            self._watch = None
        if self._unserve:
            self._unserve()
            self._unserve = None
        if self._unlisten:
            self._unlisten()
            self._unlisten = None
        for handle in list(self._transfers):
            await self._abandon(handle)

    @property
    def active(self) -> int:
        """Transfers in progress."""
        return len(self._transfers)

    async def _new_temp_file(self, path: Path, writable: bool) -> FileNode:
        ns = self.node.nodeid.NamespaceIndex
        number = next(_numbers)
        temp_id = (
            path_id(self.node.nodeid, f"Transfer{number}")
            if isinstance(self.node.nodeid.Identifier, str)
            else auto_id(ns)
        )
        node = await new_file_object(self.server, self.node, temp_id, qname(f"Transfer{number}", ns))
        # The spec makes the temporary file "not browsable": drop the reference that instantiate added.
        await self.node.delete_reference(node, ua.ObjectIds.HasComponent, forward=True, bidirectional=True)
        return await FileNode(
            self.server,
            node,
            path,
            writable=writable,
            max_byte_string=self.max_byte_string,
            mime_type=self.mime_type,
            on_close=self._file_closed,
            max_size=self.max_package_bytes if writable else None,
            on_too_large=self._too_large,
            before_write=self._check_space if writable else None,
            on_no_space=self._no_space,
            follow_zip=self.follow_zip and writable,
        ).bind()

    def _temp_path(self, prefix: str, suffix: str = "") -> Path:
        fd, name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=self.work_dir)
        os.close(fd)  # FileNode opens the file per handle; mkstemp's own descriptor would stay open for ever
        return Path(name)

    async def _expire(self) -> None:
        now = time.monotonic()
        for handle, transfer in list(self._transfers.items()):
            if now - transfer.file.last_activity >= self.timeout_s:
                _log.warning("transfer %d: no call for %.1f s, abandoned", handle, self.timeout_s)
                await self._abandon(handle)

    async def _watch_timeouts(self) -> None:
        """Abandon each transfer once ClientProcessingTimeout has passed since its last call."""
        while True:
            if not self._transfers:
                self._started.clear()
                await self._started.wait()
                continue
            oldest = min(transfer.file.last_activity for transfer in self._transfers.values())
            wait = oldest + self.timeout_s - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            try:
                await self._expire()
            except Exception:  # keep watching: one failed clean-up must not leave every later transfer for ever
                _log.exception("transfer object %s: abandoning timed-out transfers failed", self.node.nodeid)
                await asyncio.sleep(1.0)

    @status_on_error
    async def _generate_for_write(self, parent: ua.NodeId, *args: Any) -> list[ua.Variant]:
        expect_args(args, _METHODS["GenerateFileForWrite"][1])
        options = self._check_options(args[0].Value if isinstance(args[0], ua.Variant) else args[0])
        try:
            await ensure_free(self.work_dir, self.reserve_bytes, self.free_space)
        except DiskFull as exc:
            await self._refused(exc)
            raise
        path = self._temp_path("upload-", ".part")
        try:
            file = await self._new_temp_file(path, writable=True)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        session = sessions.current_session_id()
        handle = await file.open_handle(WRITE | ERASE_EXISTING, session)
        self._transfers[handle] = _Transfer(file, handle, session, options, writing=True)
        self._started.set()
        _log.info("transfer %d: write started by session %s", handle, session)
        return [ua.Variant(file.node.nodeid, ua.VariantType.NodeId), ua.Variant(handle, ua.VariantType.UInt32)]

    @status_on_error
    async def _generate_for_read(self, parent: ua.NodeId, *args: Any) -> list[ua.Variant]:
        expect_args(args, _METHODS["GenerateFileForRead"][1])
        if self._read_source is None:
            raise StatusError(_S.BadNotSupported, "this transfer object serves no files for reading")
        options = self._check_options(args[0].Value if isinstance(args[0], ua.Variant) else args[0])
        source = await self._read_source(options)
        # A private copy: the source may be replaced while the client reads.
        path = self._temp_path("download-")
        try:
            await asyncio.to_thread(shutil.copyfile, source, path)
            file = await self._new_temp_file(path, writable=False)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        session = sessions.current_session_id()
        handle = await file.open_handle(READ, session)
        self._transfers[handle] = _Transfer(file, handle, session, options, writing=False)
        self._started.set()
        return [
            ua.Variant(file.node.nodeid, ua.VariantType.NodeId),
            ua.Variant(handle, ua.VariantType.UInt32),
            ua.Variant(ua.NodeId(), ua.VariantType.NodeId),  # completed at once: no TransferState machine
        ]

    @status_on_error
    async def _close_and_commit(self, parent: ua.NodeId, *args: Any) -> list[ua.Variant]:
        expect_args(args, _METHODS["CloseAndCommit"][1])
        number = arg(args, 0, (ua.VariantType.UInt32,), "fileHandle")
        transfer = self._transfers.get(number)
        if transfer is None or transfer.session != sessions.current_session_id() or not transfer.writing:
            raise StatusError(_S.BadInvalidArgument, f"file handle {number} is no write transfer of this session")
        del self._transfers[number]
        try:
            await transfer.file.close_handle(number)
            await self._commit(transfer.file.path, transfer.options, transfer.file.received)
        finally:
            await self._discard(transfer)
        return [ua.Variant(ua.NodeId(), ua.VariantType.NodeId)]

    async def _file_closed(self, file: FileNode, wrote: bool) -> None:
        """A read transfer ends when the client closes the temporary file (4.4.3); a write transfer whose
        file is closed instead of committed can never be committed (its handle is gone): abandon it."""
        for handle, transfer in list(self._transfers.items()):
            if transfer.file is file and file.open_count == 0:
                if transfer.writing:
                    _log.info("transfer %d: file closed without CloseAndCommit, abandoned", handle)
                del self._transfers[handle]
                await self._discard(transfer)

    async def _check_space(self, file: FileNode, size: int, new_size: int) -> None:
        """Before a Write: the file as it will be plus the reserve must fit; else abandon it at once."""
        try:
            await ensure_free(self.work_dir, new_size + self.reserve_bytes, self.free_space, reclaimable=size)
        except DiskFull as exc:
            await self._no_space(file, str(exc))
            raise

    async def _no_space(self, file: FileNode, reason: str) -> None:
        """Abandon at once, so that the disk space is free before the Write is refused; tell the owner."""
        for handle, transfer in list(self._transfers.items()):
            if transfer.file is file:
                _log.warning("transfer %d: disk space: %s; abandoned", handle, reason)
                await self._abandon(handle)
        await self._refused(DiskFull(reason))

    async def _refused(self, exc: DiskFull) -> None:
        _log.warning("transfer object %s: refused: %s", self.node.nodeid, exc)
        if self._on_refused is not None:
            await self._on_refused(str(exc))

    async def _too_large(self, file: FileNode) -> None:
        """Abandon at once, so that the disk space is free before the Write is refused."""
        for handle, transfer in list(self._transfers.items()):
            if transfer.file is file:
                _log.warning("transfer %d: package over %d bytes, abandoned", handle, self.max_package_bytes)
                await self._abandon(handle)

    async def _abandon(self, handle: int) -> None:
        transfer = self._transfers.pop(handle, None)
        if transfer is not None:
            await self._discard(transfer)

    async def _discard(self, transfer: _Transfer) -> None:
        await transfer.file.release()
        transfer.file.path.unlink(missing_ok=True)
        if transfer.file.follow_zip:
            await asyncio.to_thread(shutil.rmtree, transfer.file.entries_dir, True)
        await delete_subtree(transfer.file.node)

    async def _session_closed(self, session_id: ua.NodeId) -> None:
        for handle, transfer in list(self._transfers.items()):
            if transfer.session == session_id:
                _log.info("transfer %d: session %s ended, abandoned", handle, session_id)
                await self._abandon(handle)
