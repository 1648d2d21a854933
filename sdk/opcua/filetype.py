"""Server side of the OPC UA FileType (OPC 10000-20 section 4.2, formerly OPC 10000-5 Annex C.2).

asyncua ships only a FileType client. ``FileNode`` serves one FileType object
backed by a file on disk: Open with the Read / Write / EraseExisting / Append
bits, Close, Read, Write, GetPosition and SetPosition, bound to the instance's own
method nodes and to FileType's own method nodes (sdk.opcua.type_methods: generic
clients call those with the file as ObjectId), and keeps Size, Writable,
UserWritable, OpenCount and MaxByteStringLength current. Handles belong to the
session that opened them and are released when it ends. With a ``role``, only sessions with that
role may Open the file (model packages are the plant's intellectual property). Many readers may share a
file; a writer has it alone. A Write longer than MaxByteStringLength is refused,
and so is one that would make the file larger than ``max_size``, one that the
owner's ``before_write`` refuses (e.g. too little disk space left), and one the
filesystem refuses for lack of space (DiskFull; ``on_no_space`` is told first,
so that the owner can release the file at once).

A writer that writes the file from its start, in order (as every upload does), has its bytes hashed as they
arrive (SHA-256, in a worker thread while the Write is answered and the next chunk comes in; each Write waits for
the one before it to be hashed, and so does Close): ``received`` then gives the file's size and hash
once the handle is closed, so that the owner need not read the file again to hash it; with ``follow_zip`` it also
holds the zip's stored entries as they passed (sdk.package.stream: hashed, the large ones copied aside). A
SetPosition or an overwrite leaves ``received`` None.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
import os
import shutil
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from asyncua import Node, Server, ua

from sdk.diskspace import is_disk_full
from sdk.errors import DiskFull
from sdk.opcua import sessions, type_methods
from sdk.opcua.status import StatusError, arg, expect_args, status_on_error
from sdk.opcua.templates import children_by_name
from sdk.opcua.users import Role, requires
from sdk.opcua.values import NO_DATE, new_instance, write_own
from sdk.package.archive import FileDigest
from sdk.package.stream import EntryTee, Received, StreamedEntry

_log = logging.getLogger(__name__)

# Open mode bits (OPC 10000-20, 4.2.1 Open, Table 2).
READ, WRITE, ERASE_EXISTING, APPEND = 0x1, 0x2, 0x4, 0x8
DEFAULT_MAX_BYTE_STRING = 1 << 20  # 1 MiB: well under node-opcua's 16 MiB ByteString limit (INTEROP.md)

_handle_numbers = itertools.count(1)
_S = ua.StatusCodes


@dataclass
class _Handle:
    number: int
    session: ua.NodeId | None
    mode: int
    fh: BinaryIO
    digest: Any = None  # hashlib sha256 of bytes 0..hashed while the writer writes in order; None once it did not
    hashed: int = 0
    tee: EntryTee | None = None  # follows the zip being written (follow_zip)
    following: asyncio.Future[None] | None = None  # the hash and tee of the last Write's bytes, in a worker thread

    @property
    def writes(self) -> bool:
        return bool(self.mode & WRITE)


OnClose = Callable[["FileNode", bool], Awaitable[None]]
"""Called after a handle is closed, with whether it had been open for writing."""
OnTooLarge = Callable[["FileNode"], Awaitable[None]]
"""Called when a Write would make the file larger than ``max_size``, before the Write is refused."""
BeforeWrite = Callable[["FileNode", int, int], Awaitable[None]]
"""Called with the file's size before and after a Write; raises (a ModelLineError) to refuse it."""
OnNoSpace = Callable[["FileNode", str], Awaitable[None]]
"""Called with the reason when the filesystem refused a Write for lack of space, before it is refused."""

# FileType's methods (OPC 10000-20 4.2.1 to 4.2.6): type method NodeId and declared InputArguments.
_METHODS = {
    "Open": (ua.ObjectIds.FileType_Open, ("Mode",)),
    "Close": (ua.ObjectIds.FileType_Close, ("FileHandle",)),
    "Read": (ua.ObjectIds.FileType_Read, ("FileHandle", "Length")),
    "Write": (ua.ObjectIds.FileType_Write, ("FileHandle", "Data")),
    "GetPosition": (ua.ObjectIds.FileType_GetPosition, ("FileHandle",)),
    "SetPosition": (ua.ObjectIds.FileType_SetPosition, ("FileHandle", "Position")),
}


async def new_file_object(server: Server, parent: Node, node_id: ua.NodeId, name: ua.QualifiedName) -> Node:
    """Instantiate a FileType object with its own method nodes under ``parent``."""
    return await new_instance(parent, server.get_node(ua.ObjectIds.FileType), nodeid=node_id, bname=name)


class FileNode:
    """Serves one FileType object from a file on disk."""

    def __init__(
        self,
        server: Server,
        node: Node,
        path: Path,
        *,
        writable: bool,
        max_byte_string: int = DEFAULT_MAX_BYTE_STRING,
        mime_type: str = "application/octet-stream",
        on_close: OnClose | None = None,
        max_size: int | None = None,
        on_too_large: OnTooLarge | None = None,
        before_write: BeforeWrite | None = None,
        on_no_space: OnNoSpace | None = None,
        role: Role | None = None,
        follow_zip: bool = False,
    ) -> None:
        self.server = server
        self.follow_zip = follow_zip
        self.role = role  # needed to Open the file (the other methods work on the session's handles)
        self.node = node
        self.path = path
        self.writable = writable
        self.max_byte_string = max_byte_string
        self.mime_type = mime_type
        self._on_close = on_close
        self.max_size = max_size
        self._on_too_large = on_too_large
        self._before_write = before_write
        self._on_no_space = on_no_space
        self._handles: dict[int, _Handle] = {}
        self._props: dict[str, Node] = {}
        self._unlisten: Callable[[], None] | None = None
        self._unserve: Callable[[], None] | None = None
        self.last_activity = time.monotonic()
        self.received: Received | None = None  # the file as the last in-order writer left it

    async def bind(self) -> FileNode:
        """Link the instance's and the type's method nodes and publish the properties; returns self."""
        handlers = {
            "Open": status_on_error(requires(self.role)(self._open)) if self.role is not None else self._open,
            "Close": self._close,
            "Read": self._read,
            "Write": self._write,
            "GetPosition": self._get_position,
            "SetPosition": self._set_position,
        }
        children = await children_by_name(self.node)  # one Browse: a gateway binds one per stored version
        for name, child in children.items():
            if name in handlers:
                self.server.link_method(child, type_methods.bound_to(self.node.nodeid, handlers[name]))
            else:
                self._props[name] = child
        missing = set(handlers) - set(children)
        if missing:
            raise RuntimeError(f"{self.node} lacks FileType methods {sorted(missing)}")
        self._unserve = type_methods.serve(
            self.server, self.node.nodeid, {_METHODS[name][0]: handler for name, handler in handlers.items()}
        )
        self._unlisten = sessions.on_session_closed(self._session_closed)
        await self._set("Writable", self.writable, ua.VariantType.Boolean)
        await self._set("UserWritable", self.writable, ua.VariantType.Boolean)
        await self._set("MaxByteStringLength", self.max_byte_string, ua.VariantType.UInt32)
        await self._set("MimeType", self.mime_type, ua.VariantType.String)
        await self.refresh()
        return self

    async def release(self) -> None:
        """Close every handle, stop serving calls and listening for session ends (before the node is deleted)."""
        if self._unserve:
            self._unserve()
            self._unserve = None
        if self._unlisten:
            self._unlisten()
            self._unlisten = None
        for handle in list(self._handles.values()):
            await self._drop(handle)

    @property
    def open_count(self) -> int:
        """Number of open handles."""
        return len(self._handles)

    def is_open_for_write(self) -> bool:
        """Whether a writer holds the file."""
        return any(h.writes for h in self._handles.values())

    @property
    def entries_dir(self) -> Path:
        """Where the zip's large stored entries are copied as they are written (``follow_zip``)."""
        return self.path.parent / f"{self.path.name}.entries"

    def _forget_received(self) -> None:
        self.received = None
        for handle in self._handles.values():
            if handle.tee is not None:
                return  # a writer still follows: its folder is in use
        if self.follow_zip:
            shutil.rmtree(self.entries_dir, ignore_errors=True)

    async def open_handle(self, mode: int, session: ua.NodeId | None) -> int:
        """Open the file as the Open method does, for ``session``; returns the handle number."""
        if mode & ~(READ | WRITE | ERASE_EXISTING | APPEND) or not mode & (READ | WRITE):
            raise StatusError(_S.BadInvalidArgument, f"open mode {mode:#x} is not valid")
        if mode & (ERASE_EXISTING | APPEND) and not mode & WRITE:
            raise StatusError(_S.BadInvalidArgument, "EraseExisting and Append need the Write bit")
        if mode & WRITE:
            if not self.writable:
                raise StatusError(_S.BadNotWritable, "the file is read-only")
            if self._handles:
                raise StatusError(_S.BadNotWritable, "the file is open; a writer needs it alone")
        elif self.is_open_for_write():
            raise StatusError(_S.BadNotReadable, "the file is open for writing")
        fh = await asyncio.to_thread(self._open_file, mode)
        handle = _Handle(next(_handle_numbers), session, mode, fh)
        if mode & WRITE:
            self._forget_received()
            if fh.tell() == 0 and (mode & ERASE_EXISTING or os.fstat(fh.fileno()).st_size == 0):
                handle.digest = hashlib.sha256()  # an empty file written from its start: hash as it arrives
                if self.follow_zip:
                    handle.tee = EntryTee(self.entries_dir)
        self._handles[handle.number] = handle
        await self.refresh()
        return handle.number

    def _open_file(self, mode: int) -> BinaryIO:
        if mode & WRITE:
            if mode & ERASE_EXISTING or not self.path.exists():
                fh = open(self.path, "w+b" if mode & READ else "wb")  # noqa: SIM115 - owned by the handle
            else:
                fh = open(self.path, "r+b")  # noqa: SIM115
            if mode & APPEND:
                fh.seek(0, os.SEEK_END)
            return fh
        try:
            return open(self.path, "rb")  # noqa: SIM115
        except FileNotFoundError:
            raise StatusError(_S.BadNotFound, "the file no longer exists") from None

    def _handle(self, number: Any) -> _Handle:
        handle = self._handles.get(number) if isinstance(number, int) else None
        if handle is None or handle.session != sessions.current_session_id():
            raise StatusError(_S.BadInvalidArgument, f"file handle {number} is not open in this session")
        self.last_activity = time.monotonic()
        return handle

    async def close_handle(self, number: int) -> None:
        """Close a handle as the Close method does."""
        await self._drop(self._handle(number))

    async def _drop(self, handle: _Handle) -> None:
        if self._handles.pop(handle.number, None) is None:
            return  # already dropped, e.g. by an on_close callback that released the whole file
        await _caught_up(handle)
        await asyncio.to_thread(_close, handle.fh)
        if handle.digest is not None:
            size = self.path.stat().st_size if self.path.exists() else -1
            if size == handle.hashed:
                entries: tuple[StreamedEntry, ...] = ()
                if handle.tee is not None:
                    await asyncio.to_thread(handle.tee.close)
                    entries = tuple(handle.tee.entries)
                self.received = Received(FileDigest(size, handle.digest.hexdigest()), entries)
        if self.received is None and handle.tee is not None:
            await asyncio.to_thread(handle.tee.discard)
        await self.refresh()
        if self._on_close is not None:
            await self._on_close(self, handle.writes)

    async def _session_closed(self, session_id: ua.NodeId) -> None:
        for handle in [h for h in self._handles.values() if h.session == session_id]:
            _log.info("file %s: releasing handle %d of closed session %s", self.path.name, handle.number, session_id)
            await self._drop(handle)

    async def _set(self, name: str, value: Any, kind: ua.VariantType) -> None:
        node = self._props.get(name)
        if node is not None:  # seven writes per file bound: a gateway binds one per stored version at start
            await write_own(self.server, node.nodeid, ua.Variant(value, kind))

    async def refresh(self) -> None:
        """Publish the current Size, OpenCount and LastModifiedTime (also after the file changed on disk)."""
        size = self.path.stat().st_size if self.path.exists() else 0
        await self._set("Size", size, ua.VariantType.UInt64)
        await self._set("OpenCount", len(self._handles), ua.VariantType.UInt16)
        modified = datetime.fromtimestamp(self.path.stat().st_mtime, UTC) if self.path.exists() else NO_DATE
        await self._set("LastModifiedTime", modified, ua.VariantType.DateTime)

    # --- method handlers (OPC 10000-20 4.2.1 to 4.2.6) ---------------------------------------

    @status_on_error
    async def _open(self, parent: ua.NodeId, *args: Any) -> list[ua.Variant]:
        expect_args(args, _METHODS["Open"][1])
        mode = arg(args, 0, (ua.VariantType.Byte,), "mode")
        number = await self.open_handle(mode, sessions.current_session_id())
        return [ua.Variant(number, ua.VariantType.UInt32)]

    @status_on_error
    async def _close(self, parent: ua.NodeId, *args: Any) -> list[ua.Variant]:
        expect_args(args, _METHODS["Close"][1])
        await self.close_handle(arg(args, 0, (ua.VariantType.UInt32,), "fileHandle"))
        return []

    @status_on_error
    async def _read(self, parent: ua.NodeId, *args: Any) -> list[ua.Variant]:
        expect_args(args, _METHODS["Read"][1])
        handle = self._handle(arg(args, 0, (ua.VariantType.UInt32,), "fileHandle"))
        length = arg(args, 1, (ua.VariantType.Int32,), "length")
        if length <= 0:
            raise StatusError(_S.BadInvalidArgument, f"length must be positive, not {length}")
        if not handle.mode & READ:
            raise StatusError(_S.BadInvalidState, "the file was not opened for reading")
        # Clipped, not refused: a client asking for more than MaxByteStringLength gets that much.
        data = await asyncio.to_thread(handle.fh.read, min(length, self.max_byte_string))
        return [ua.Variant(data or b"", ua.VariantType.ByteString)]  # empty, never null, at end of file

    @status_on_error
    async def _write(self, parent: ua.NodeId, *args: Any) -> list[ua.Variant]:
        expect_args(args, _METHODS["Write"][1])
        handle = self._handle(arg(args, 0, (ua.VariantType.UInt32,), "fileHandle"))
        data = arg(args, 1, (ua.VariantType.ByteString,), "data", optional=True) or b""
        if not handle.writes:
            raise StatusError(_S.BadInvalidState, "the file was not opened for writing")
        if len(data) > self.max_byte_string:
            # The advertised MaxByteStringLength (OPC 10000-5 6.3.2 ServerCapabilities, and this file's own
            # property) is an encoding limit: a ByteString over it is refused with Bad_EncodingLimitsExceeded
            # (OPC 10000-6 5.2.2.7 ByteString decoding; OPC 10000-4 7.38.2 common StatusCodes), not cut.
            raise StatusError(
                _S.BadEncodingLimitsExceeded, f"{len(data)} bytes exceed MaxByteStringLength {self.max_byte_string}"
            )
        if self.max_size is not None and handle.fh.tell() + len(data) > self.max_size:
            if self._on_too_large is not None:
                await self._on_too_large(self)
            raise StatusError(_S.BadResourceUnavailable, f"the file would exceed the limit of {self.max_size} bytes")
        position = handle.fh.tell()
        if self._before_write is not None:
            await self._before_write(self, position, position + len(data))
        if handle.digest is not None and position != handle.hashed:
            await _caught_up(handle)
            handle.digest = None  # not in order: the owner hashes the file itself
            if handle.tee is not None:
                await asyncio.to_thread(handle.tee.discard)
                handle.tee = None
        try:
            await asyncio.to_thread(_write_through, handle.fh, data)
        except OSError as exc:
            if not is_disk_full(exc):
                raise
            reason = f"the disk filled up at {position + len(data)} bytes ({exc.strerror})"
            if self._on_no_space is not None:
                await self._on_no_space(self, reason)
            raise DiskFull(reason) from None
        if handle.digest is not None:
            # hashed (and followed) in a worker thread while the answer goes out and the next chunk comes in
            await _caught_up(handle)
            handle.hashed += len(data)
            handle.following = asyncio.get_running_loop().run_in_executor(None, _follow, handle, data)
        return []

    @status_on_error
    async def _get_position(self, parent: ua.NodeId, *args: Any) -> list[ua.Variant]:
        expect_args(args, _METHODS["GetPosition"][1])
        handle = self._handle(arg(args, 0, (ua.VariantType.UInt32,), "fileHandle"))
        return [ua.Variant(handle.fh.tell(), ua.VariantType.UInt64)]

    @status_on_error
    async def _set_position(self, parent: ua.NodeId, *args: Any) -> list[ua.Variant]:
        expect_args(args, _METHODS["SetPosition"][1])
        handle = self._handle(arg(args, 0, (ua.VariantType.UInt32,), "fileHandle"))
        position = arg(args, 1, (ua.VariantType.UInt64,), "position")
        size = await asyncio.to_thread(lambda: os.fstat(handle.fh.fileno()).st_size)
        handle.fh.seek(min(position, size))  # beyond the end: at the end (4.2.6)
        return []


def _close(fh: BinaryIO) -> None:
    """Close; the bytes of a Write the disk refused (already answered with DiskFull) stay unwritten."""
    try:
        fh.close()  # the descriptor is closed even when flushing fails
    except OSError as exc:
        if not is_disk_full(exc):
            raise


def _write_through(fh: BinaryIO, data: bytes) -> None:
    """Write and flush, so that a full disk is reported by the Write that hit it, not by a later Close."""
    fh.write(data)
    fh.flush()


def _follow(handle: _Handle, data: bytes) -> None:
    """Hash what an in-order writer wrote and feed the zip's follower (a worker thread, one Write at a time).

    A follower that fails (its copy of the model could not be written) is dropped: it is a hint, and the
    verification then unpacks the model from the file itself."""
    handle.digest.update(data)
    tee = handle.tee
    if tee is not None:
        try:
            tee.feed(data)
        except OSError as exc:
            _log.warning("file %s: not following the zip further (%s)", handle.fh.name, exc.strerror or exc)
            handle.tee = None
            tee.discard()


async def _caught_up(handle: _Handle) -> None:
    """Wait until the bytes written so far are hashed and followed."""
    following, handle.following = handle.following, None
    if following is not None:
        await following
