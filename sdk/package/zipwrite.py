"""Writing a package zip from its first byte to its last, hashing it as it goes.

zipfile writes an entry's local header, its bytes, then seeks back to put the CRC-32 into the header, so the
finished file had to be read once more for its SHA-256 (the DI software update Hash). Here every entry's
CRC-32 and size are known before its header is written (a file's from ``FileFacts``, taken in the read that
also hashes it for the manifest), nothing is rewritten, and the file's SHA-256 is taken from the bytes as they
are written, in a second thread beside the copy (hashlib lets go of the GIL).

The layout is APPNOTE.TXT's (4.3.7 local file header, 4.3.12 central directory header, 4.3.14-4.3.16 the
Zip64 end records, 4.5.3 the Zip64 extended information extra field), as zipfile writes it: a file is stored
with the Zip64 extra field in its local header (its sizes may pass 4 GiB), metadata is deflated, every entry
dated 1980-01-01 and marked as a Unix regular file, mode 0644.
"""

from __future__ import annotations

import hashlib
import stat
import struct
import zlib
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, NamedTuple

_CHUNK = 1 << 20
_FULL32 = 0xFFFFFFFF  # a 32-bit field that says "see the Zip64 extra field"
_LIMIT = (1 << 31) - 1  # past this a size or offset goes to the Zip64 fields, as zipfile decides (ZIP64_LIMIT)
_DOS_DATE = (0 << 9) | (1 << 5) | 1  # 1980-01-01
_DOS_TIME = 0
_UNIX = 3
_VERSION = 20  # 2.0: deflate
_VERSION_ZIP64 = 45  # 4.5: Zip64
_UTF8 = 0x800  # general purpose bit 11: the name is UTF-8
_EXTERNAL = (stat.S_IFREG | 0o644) << 16
LOCAL_MAGIC = b"PK\x03\x04"
LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")
"""A local file header (APPNOTE 4.3.7): signature, versions, flags, method, time, date, CRC-32, sizes, name and
extra lengths; what the readers of sdk.package check and this module writes."""
_CENTRAL = struct.Struct("<4s4B4HL2L5H2L")
_END = struct.Struct("<4s4H2LH")
_END64 = struct.Struct("<4sQ2H2L4Q")
_LOCATOR64 = struct.Struct("<4sLQL")


class FileFacts(NamedTuple):
    """What a file's zip entry and the package manifest need of it, from one read."""

    size: int
    crc32: int
    sha256: str


def file_facts(path: Path) -> FileFacts:
    """Size, CRC-32 and SHA-256 (hex) of a file in one read; the hash in a second thread beside the CRC."""
    digest = hashlib.sha256()
    crc = 0
    size = 0
    with open(path, "rb") as fh, Beside() as beside:
        while chunk := fh.read(_CHUNK):
            size += len(chunk)
            beside.run(digest.update, chunk)
            crc = zlib.crc32(chunk, crc)
    return FileFacts(size, crc, digest.hexdigest())


class Beside:
    """One call at a time in a second thread, the caller going on meanwhile; the next waits for the last
    (a digest beside a copy or a second digest: hashlib lets go of the GIL)."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="hash")
        self._last: Future[object] | None = None

    def run(self, fn: Callable[[bytes], object], data: bytes) -> None:
        """``fn(data)`` in the second thread, once the call before it has finished."""
        self.wait()
        self._last = self._pool.submit(fn, data)

    def wait(self) -> None:
        """Until the last call has finished (raising what it raised)."""
        if self._last is not None:
            last, self._last = self._last, None
            last.result()

    def __enter__(self) -> Beside:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if exc[0] is None:
                self.wait()
        finally:
            self._pool.shutdown(wait=True)


@dataclass
class _Entry:
    name: bytes
    flags: int
    method: int
    crc: int
    compressed: int
    size: int
    offset: int


class ZipWriter:
    """Writes a zip to ``fh`` in order; ``close`` writes the central directory and returns the file's
    (size, SHA-256 hex)."""

    def __init__(self, fh: BinaryIO) -> None:
        self._fh = fh
        self._at = 0
        self._digest = hashlib.sha256()
        self._entries: list[_Entry] = []
        self._beside = Beside()

    def add_bytes(self, name: str, data: bytes, *, deflate: bool) -> None:
        """A small member, deflated (raw deflate, zipfile's default level) or stored."""
        payload = data
        if deflate:
            packer = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)
            payload = packer.compress(data) + packer.flush()
        self._header(name, zlib.DEFLATED if deflate else 0, zlib.crc32(data), len(payload), len(data), zip64=False)
        self._out(payload)

    def add_file(self, name: str, path: Path, facts: FileFacts) -> None:
        """A file, stored, whose size and CRC-32 were taken before; ValueError if it changed since."""
        self._header(name, 0, facts.crc32, facts.size, facts.size, zip64=True)
        crc, size = 0, 0
        with open(path, "rb") as src:
            while chunk := src.read(_CHUNK):
                crc = zlib.crc32(chunk, crc)
                size += len(chunk)
                self._out(chunk)
        if (size, crc) != (facts.size, facts.crc32):
            raise ValueError(f"{path.name} changed while the package was written")

    def close(self) -> tuple[int, str]:
        """The central directory and end records; the file's size and SHA-256 (hex)."""
        start = self._at
        for e in self._entries:
            extra = b""
            sizes = [e.size, e.compressed]
            if max(e.size, e.compressed, e.offset) > _LIMIT:
                values = [v for v in (e.size, e.compressed, e.offset) if v > _LIMIT]
                extra = struct.pack(f"<2H{len(values)}Q", 1, 8 * len(values), *values)
            sizes = [v if v <= _LIMIT else _FULL32 for v in sizes]
            offset = e.offset if e.offset <= _LIMIT else _FULL32
            needed = _VERSION_ZIP64 if extra else _VERSION
            self._out(
                _CENTRAL.pack(
                    b"PK\x01\x02",
                    needed,
                    _UNIX,
                    needed,
                    0,
                    e.flags,
                    e.method,
                    _DOS_TIME,
                    _DOS_DATE,
                    e.crc,
                    sizes[1],
                    sizes[0],
                    len(e.name),
                    len(extra),
                    0,
                    0,
                    0,
                    _EXTERNAL,
                    offset,
                )  # fmt: skip
                + e.name
                + extra
            )
        size = self._at - start
        count = len(self._entries)
        if count >= 0xFFFF or start > _LIMIT or size > _LIMIT:
            end64 = self._at
            self._out(_END64.pack(b"PK\x06\x06", 44, _VERSION_ZIP64, _VERSION_ZIP64, 0, 0, count, count, size, start))
            self._out(_LOCATOR64.pack(b"PK\x06\x07", 0, end64, 1))
        self._out(_END.pack(b"PK\x05\x06", 0, 0, min(count, 0xFFFF), min(count, 0xFFFF),
                            size if size <= _LIMIT else _FULL32, start if start <= _LIMIT else _FULL32, 0))  # fmt: skip
        self._beside.wait()
        return self._at, self._digest.hexdigest()

    def __enter__(self) -> ZipWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self._beside.__exit__(*exc)

    def _header(self, name: str, method: int, crc: int, compressed: int, size: int, *, zip64: bool) -> None:
        encoded = name.encode("utf-8")
        flags = _UTF8 if not name.isascii() else 0
        extra = struct.pack("<2H2Q", 1, 16, size, compressed) if zip64 else b""
        self._entries.append(_Entry(encoded, flags, method, crc, compressed, size, self._at))
        self._out(
            LOCAL_HEADER.pack(
                LOCAL_MAGIC,
                _VERSION_ZIP64 if zip64 else _VERSION,
                0,
                flags,
                method,
                _DOS_TIME,
                _DOS_DATE,
                crc,
                _FULL32 if zip64 else compressed,
                _FULL32 if zip64 else size,
                len(encoded),
                len(extra),
            )  # fmt: skip
            + encoded
            + extra
        )

    def _out(self, data: bytes) -> None:
        self._fh.write(data)
        self._beside.run(self._digest.update, data)
        self._at += len(data)
