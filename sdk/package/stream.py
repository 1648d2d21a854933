"""Following a package zip while it is written, so that its verification need not read it again.

A transfer writes the package from its first byte to its last. ``EntryTee`` is fed the same bytes in the
same order (in the worker thread that writes them) and follows the zip's local file headers (APPNOTE.TXT
4.3.7): each stored entry's bytes are hashed (SHA-256) as they pass and, for a large one (the model), written
aside to a file of their own. Nothing it finds is trusted: it is a hint that PackageArchive.extract takes
only for an entry whose central directory record names the same local header offset, name and size, and
whose local header it reads back and checks from the file itself; the signed digest is compared with the hash
as for any other entry. A zip it cannot follow (a data descriptor, encryption, a header it does not know)
ends the following: what it has found so far stays usable, the rest is extracted as usual.
"""

from __future__ import annotations

import hashlib
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from sdk.package.archive import FileDigest
from sdk.package.zipwrite import LOCAL_HEADER, LOCAL_MAGIC, Beside

_LOCAL_MAGIC = LOCAL_MAGIC
_LOCAL_FORMAT, _LOCAL_SIZE = LOCAL_HEADER.format, LOCAL_HEADER.size
_ZIP64_EXTRA = 0x0001
_FULL32 = 0xFFFFFFFF


@dataclass(frozen=True)
class StreamedEntry:
    """A stored entry as it passed: where its local header starts, its name, size and SHA-256, its copy."""

    header_offset: int
    name: str
    size: int
    sha256: str
    copy: Path | None  # its bytes, written aside (large entries only)


@dataclass(frozen=True)
class Received:
    """A package file as a transfer received it: its size and SHA-256, and the stored entries it carried."""

    digest: FileDigest
    entries: tuple[StreamedEntry, ...] = ()


def read_through(path: Path, folder: Path, chunk_size: int = 1 << 20) -> Received:
    """Read a package file once, as a transfer would have received it: its size and SHA-256 and its stored
    entries, the large ones copied into ``folder`` (blocking). A verification given this reads the file no more
    (the whole-file hash and the model's unpacking and hash come from the same read)."""
    tee = EntryTee(folder)
    digest = hashlib.sha256()
    size = 0
    # The whole file's hash runs in a second thread beside the entries': the two digests of the same bytes
    # take the time of one on a machine with two cores.
    try:
        with open(path, "rb") as fh, Beside() as beside:
            while chunk := fh.read(chunk_size):
                size += len(chunk)
                beside.run(digest.update, chunk)
                tee.feed(chunk)
    except BaseException:
        tee.discard()
        raise
    tee.close()
    return Received(FileDigest(size, digest.hexdigest()), tuple(tee.entries))


class EntryTee:
    """Fed a zip's bytes in order; hashes each stored entry and copies the large ones into ``folder``."""

    def __init__(self, folder: Path, min_copy: int = 1 << 20, max_entries: int = 64) -> None:
        self.folder = folder
        self.min_copy = min_copy
        self.max_entries = max_entries
        self.entries: list[StreamedEntry] = []
        self._at = 0  # offset in the file of the next byte fed
        self._mode = "header"
        self._buf = bytearray()
        self._need = _LOCAL_SIZE
        self._header_at = 0
        self._fields: tuple[Any, ...] = ()
        self._name = ""
        self._left = 0
        self._size = 0
        self._hash: Any = None
        self._out: BinaryIO | None = None
        self._out_path: Path | None = None

    @property
    def following(self) -> bool:
        """Whether it still follows the zip."""
        return self._mode != "done"

    def feed(self, data: bytes) -> None:
        """The next bytes of the file (blocking: file writes)."""
        view = memoryview(data)
        i = 0
        while i < len(view) and self._mode != "done":
            if self._mode in ("header", "name"):
                take = min(self._need - len(self._buf), len(view) - i)
                self._buf += view[i : i + take]
                i += take
                self._at += take
                if len(self._buf) == self._need:
                    self._parsed()
            else:
                take = min(self._left, len(view) - i)
                if self._mode == "data":
                    chunk = view[i : i + take]
                    self._hash.update(chunk)
                    if self._out is not None:
                        self._out.write(chunk)
                i += take
                self._at += take
                self._left -= take
                if self._left == 0:
                    self._entry_done()

    def close(self) -> None:
        """Stop following (the file is complete); an entry cut short is dropped."""
        if self._out is not None:
            self._out.close()
            self._out = None
            if self._mode == "data" and self._out_path is not None:
                self._out_path.unlink(missing_ok=True)
        self._mode = "done"

    def discard(self) -> None:
        """Close and remove every copy."""
        self.close()
        shutil.rmtree(self.folder, ignore_errors=True)

    def _stop(self) -> None:
        self._mode = "done"

    def _parsed(self) -> None:
        if self._mode == "header":
            fields = struct.unpack(_LOCAL_FORMAT, bytes(self._buf))
            flags = fields[3]
            if fields[0] != _LOCAL_MAGIC or flags & 0x9 or len(self.entries) >= self.max_entries:
                self._stop()  # the central directory, or a data descriptor / encryption: not followed
                return
            self._fields = fields
            self._need = _LOCAL_SIZE + fields[10] + fields[11]
            self._mode = "name"
            return
        fields = self._fields
        name_end = _LOCAL_SIZE + fields[10]
        raw_name = bytes(self._buf[_LOCAL_SIZE:name_end])
        sizes = _sizes(fields[9], fields[8], bytes(self._buf[name_end:]))
        if sizes is None:
            self._stop()
            return
        size, compressed = sizes
        self._size = size
        self._name = raw_name.decode("utf-8" if fields[3] & 0x800 else "cp437", "replace")
        self._buf = bytearray()
        if fields[4] == 0 and size == compressed:
            self._mode, self._left = "data", size
            self._hash = hashlib.sha256()
            self._out_path = None
            if size >= self.min_copy:
                self.folder.mkdir(mode=0o700, exist_ok=True)
                self._out_path = self.folder / f"{len(self.entries)}.entry"
                self._out = open(self._out_path, "wb")  # noqa: SIM115 - closed when the entry ends
        else:
            self._mode, self._left = "skip", compressed
        if self._left == 0:
            self._entry_done()

    def _entry_done(self) -> None:
        if self._mode == "data":
            if self._out is not None:
                self._out.close()
                self._out = None
            self.entries.append(
                StreamedEntry(self._header_at, self._name, self._size, self._hash.hexdigest(), self._out_path)
            )
        self._mode, self._need, self._buf = "header", _LOCAL_SIZE, bytearray()
        self._header_at = self._at


def _sizes(size32: int, compressed32: int, extra: bytes) -> tuple[int, int] | None:
    """(size, compressed size) from a local header, through its Zip64 extra field where they do not fit 32 bits."""
    if _FULL32 not in (size32, compressed32):
        return size32, compressed32
    at = 0
    while at + 4 <= len(extra):
        kind, length = struct.unpack_from("<2H", extra, at)
        body = extra[at + 4 : at + 4 + length]
        if kind == _ZIP64_EXTRA:
            values = list(struct.unpack_from(f"<{len(body) // 8}Q", body)) if len(body) >= 8 else []
            size = values.pop(0) if size32 == _FULL32 and values else size32
            compressed = values.pop(0) if compressed32 == _FULL32 and values else compressed32
            return (size, compressed) if _FULL32 not in (size, compressed) else None
        at += 4 + length
    return None
