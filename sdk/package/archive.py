"""Reading and writing the package zip without trusting it.

A DI Software Package (``.uadipkg``, OPC 10000-100 §8.7) is a zip whose first entry is
``mimetype``; its files sit one folder deep under META/, CONTENT/, SUPPLEMENT/ and
META-INF/. A legacy ``.mlpkg`` is a flat zip: manifest.json, signature.json and the
files the manifest lists. Before anything is read, every entry is checked: no absolute paths, no
'..', no folders, no links, no duplicate names, no encryption, and sizes and
compression ratios within limits (zip bombs). Entries are streamed into a private
folder with the byte count enforced as they expand, so a header that lies about
its size is caught too.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import struct
import tempfile
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import IO, Any, NamedTuple, Self, cast

from sdk.errors import ArchiveTooLarge, NotAPackage, NotFound, UnsafeArchiveEntry
from sdk.package.zipwrite import LOCAL_HEADER, LOCAL_MAGIC, FileFacts, ZipWriter, file_facts

_CHUNK = 1 << 20
_MiB = 1 << 20
# A zip local file header (APPNOTE.TXT 4.3.7): the fields read before a stored entry's bytes.
_LOCAL_MAGIC = LOCAL_MAGIC
_LOCAL_FORMAT, _LOCAL_SIZE = LOCAL_HEADER.format, LOCAL_HEADER.size
_FLAGS, _METHOD, _NAME_LENGTH, _EXTRA_LENGTH = 3, 4, 10, 11


class _Bounded(io.RawIOBase):
    """Reads at most ``size`` bytes of ``fh`` from where it stands; closes it."""

    def __init__(self, fh: IO[bytes], size: int) -> None:
        self._fh = fh
        self._left = size

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        size = self._left if size < 0 else min(size, self._left)
        data = self._fh.read(size)
        self._left -= len(data)
        return data

    def close(self) -> None:
        self._fh.close()
        super().close()


@dataclass(frozen=True)
class Limits:
    """What a package may expand to. The defaults fit ONNX models up to the 2 GiB protobuf limit."""

    max_entries: int = 32
    max_entry_size: int = 2048 * _MiB
    max_total_size: int = 4096 * _MiB
    max_metadata_size: int = 16 * _MiB  # manifest.json and signature.json
    max_ratio: float = 100.0  # expanded / compressed, checked on entries above ratio_floor
    ratio_floor: int = 1 * _MiB


DEFAULT_LIMITS = Limits()


# The folders of a DI Software Package (OPC 10000-100 §8.7.2) and of its ASiC-E signature (EN 319 162-1 §4.4).
DI_FOLDERS = ("META", "CONTENT", "SUPPLEMENT", "META-INF")
DI_MARKER = "mimetype"


def _check_name(name: str, folders: bool = False) -> None:
    """Refuse a name that could land outside the unpack folder; ``folders``: the DI layout's one level of folders."""
    if name.startswith("/") or PureWindowsPath(name).is_absolute() or PureWindowsPath(name).drive:
        raise UnsafeArchiveEntry(f"unsafe entry {name!r}: absolute path")
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if ".." in parts:
        raise UnsafeArchiveEntry(f"unsafe entry {name!r}: parent folder reference '..'")
    if name in {".", ""} or "\x00" in name:
        raise UnsafeArchiveEntry(f"unsafe entry {name!r}: invalid name")
    if name.endswith("/") or "\\" in name:
        raise UnsafeArchiveEntry(f"unsafe entry {name!r}: packages hold no folder entries")
    if not folders:
        if len(parts) != 1:
            raise UnsafeArchiveEntry(f"unsafe entry {name!r}: packages hold no folders")
        return
    if len(parts) > 2 or (len(parts) == 2 and parts[0] not in DI_FOLDERS) or (len(parts) == 1 and name != DI_MARKER):
        raise UnsafeArchiveEntry(
            f"unsafe entry {name!r}: not a file of the DI package folders ({', '.join(DI_FOLDERS)})"
        )
    if parts[-1].startswith("."):
        raise UnsafeArchiveEntry(f"unsafe entry {name!r}: hidden file")


def _check_info(info: zipfile.ZipInfo, limits: Limits, folders: bool) -> None:
    _check_name(info.filename, folders)
    # On Unix-made entries the high 16 bits carry st_mode; many writers leave the file-type bits at 0.
    file_type = stat.S_IFMT(info.external_attr >> 16)
    if info.create_system == 3 and file_type not in (0, stat.S_IFREG):
        kind = "symbolic link" if file_type == stat.S_IFLNK else "not a regular file"
        raise UnsafeArchiveEntry(f"unsafe entry {info.filename!r}: {kind}")
    if info.flag_bits & 0x1:
        raise UnsafeArchiveEntry(f"unsafe entry {info.filename!r}: encrypted")
    if info.file_size > limits.max_entry_size:
        raise ArchiveTooLarge(
            f"entry {info.filename!r} expands to {info.file_size} bytes, over the {limits.max_entry_size} limit"
        )
    if info.file_size > limits.ratio_floor:
        ratio = info.file_size / max(info.compress_size, 1)
        if ratio > limits.max_ratio:
            raise ArchiveTooLarge(
                f"entry {info.filename!r} is compressed {ratio:.0f}:1, over the {limits.max_ratio:.0f}:1 "
                "limit (zip bomb guard)"
            )


class PackageArchive:
    """A package zip opened for checked reading. Use as a context manager."""

    def __init__(self, path: Path, limits: Limits = DEFAULT_LIMITS, streamed: Iterable[Any] = ()) -> None:
        self.path = path
        self.limits = limits
        # Stored entries as a transfer saw them pass (sdk.package.stream.StreamedEntry), by local header offset.
        self._streamed = {e.header_offset: e for e in streamed}
        try:
            self._zip = zipfile.ZipFile(path)
        except FileNotFoundError:
            raise NotFound(f"package {path} does not exist") from None
        except (zipfile.BadZipFile, OSError) as exc:
            # Refusal messages name the package, never a path: on a server the file is a temporary upload.
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).replace(str(path), "")
            raise NotAPackage(f"the file is not a ModelLine package (not a zip archive: {why})") from None
        try:
            self._infos = self._check_entries()
        except BaseException:
            self._zip.close()
            raise

    def _check_entries(self) -> dict[str, zipfile.ZipInfo]:
        infos = self._zip.infolist()
        if len(infos) > self.limits.max_entries:
            raise ArchiveTooLarge(f"package has {len(infos)} entries, over the {self.limits.max_entries} limit")
        seen: dict[str, zipfile.ZipInfo] = {}
        total = 0
        self.is_di = any(i.filename == DI_MARKER for i in infos)
        for info in infos:
            _check_info(info, self.limits, self.is_di)
            if info.filename in seen or info.filename.lower() in {n.lower() for n in seen}:
                raise UnsafeArchiveEntry(f"unsafe entry {info.filename!r}: duplicate name")
            seen[info.filename] = info
            total += info.file_size
        if total > self.limits.max_total_size:
            raise ArchiveTooLarge(f"package expands to {total} bytes, over the {self.limits.max_total_size} limit")
        return seen

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the zip file."""
        self._zip.close()

    @property
    def first_entry(self) -> zipfile.ZipInfo | None:
        """The first entry in the zip's central directory (ASiC puts ``mimetype`` there)."""
        infos = self._zip.infolist()
        return infos[0] if infos else None

    @property
    def ordered_names(self) -> list[str]:
        """Entry names in the zip's order."""
        return [i.filename for i in self._zip.infolist()]

    @property
    def names(self) -> set[str]:
        """Names of every entry."""
        return set(self._infos)

    def declared_size(self, name: str) -> int:
        """The expanded size the zip header declares for an entry."""
        return self._infos[name].file_size

    def read_metadata(self, name: str) -> bytes | None:
        """Read a small entry (manifest or signature) whole; None if it is absent."""
        if name not in self._infos:
            return None
        with self._zip.open(self._infos[name]) as src:
            data = _read_bounded(src, self.limits.max_metadata_size, name)
        return data

    def extract(self, name: str, dest_dir: Path, as_name: str | None = None) -> tuple[int, str]:
        """Stream one entry to ``dest_dir/(as_name or name)``; returns (bytes written, SHA-256 hex).

        A stored entry (the model: packages store it, see write_package) is copied from its place in the file
        without zipfile's CRC-32: the caller checks the SHA-256 against the signed digest, which the CRC
        cannot add to, and the CRC costs a third of the hash. Its local header is checked as zipfile would."""
        info = self._infos[name]
        limit = min(info.file_size, self.limits.max_entry_size)
        target = dest_dir / (as_name or name)
        taken = self._take_streamed(info, target)
        if taken is not None:
            return taken
        digest = hashlib.sha256()
        written = 0
        with self._open_entry(info) as src, open(target, "xb") as dst:
            while chunk := src.read(min(_CHUNK, limit + 1 - written)):
                written += len(chunk)
                if written > limit:
                    raise ArchiveTooLarge(f"entry {name!r} expands beyond its declared size of {info.file_size}")
                digest.update(chunk)
                dst.write(chunk)
        if written != info.file_size:
            raise NotAPackage(f"the file is not a ModelLine package (entry {name!r} is cut short)")
        return written, digest.hexdigest()

    def _take_streamed(self, info: zipfile.ZipInfo, target: Path) -> tuple[int, str] | None:
        """The entry's copy made as the file arrived (sdk.package.stream), moved to ``target``, with its size and
        hash; None (extract it as usual) unless the central directory's record names the same local header,
        name and size, the entry is stored, and its local header in the file checks out."""
        seen = self._streamed.get(info.header_offset)
        if (
            seen is None
            or seen.copy is None
            or seen.name != info.orig_filename
            or seen.size != info.file_size
            or info.compress_type != zipfile.ZIP_STORED
            or info.compress_size != info.file_size
        ):
            return None
        with open(self.path, "rb") as fh:
            _skip_local_header(fh, info)
        if target.exists():
            raise FileExistsError(f"{target} exists")
        try:
            os.replace(seen.copy, target)
        except OSError:  # another filesystem, or gone: extract as usual
            return None
        del self._streamed[info.header_offset]
        return seen.size, seen.sha256

    def _open_entry(self, info: zipfile.ZipInfo) -> IO[bytes]:
        """The entry's bytes: a stored one straight from the file (after its local header), others via zipfile."""
        if info.compress_type != zipfile.ZIP_STORED or info.compress_size != info.file_size:
            return self._zip.open(info)
        fh = open(self.path, "rb")  # noqa: SIM115 - returned to the caller's with statement
        try:
            _skip_local_header(fh, info)
        except BaseException:
            fh.close()
            raise
        return cast(IO[bytes], _Bounded(fh, info.file_size))


def _skip_local_header(fh: IO[bytes], info: zipfile.ZipInfo) -> None:
    """Move ``fh`` to the first byte of a stored entry, refusing a local header that differs from the central
    directory's entry (name or method), as zipfile does."""
    fh.seek(info.header_offset)
    header = fh.read(_LOCAL_SIZE)
    fields = struct.unpack(_LOCAL_FORMAT, header) if len(header) == _LOCAL_SIZE else ()
    if not fields or fields[0] != _LOCAL_MAGIC:
        raise NotAPackage(f"the file is not a ModelLine package (entry {info.filename!r}: bad local header)")
    name = fh.read(fields[_NAME_LENGTH])
    encoding = "utf-8" if fields[_FLAGS] & 0x800 else "cp437"
    if name.decode(encoding, "replace") != info.orig_filename or fields[_METHOD] != zipfile.ZIP_STORED:
        raise NotAPackage(f"the file is not a ModelLine package (entry {info.filename!r}: local header differs)")
    fh.seek(fields[_EXTRA_LENGTH], os.SEEK_CUR)


def _read_bounded(src: IO[bytes], limit: int, name: str) -> bytes:
    data = src.read(limit + 1)
    if len(data) > limit:
        raise ArchiveTooLarge(f"{name} is larger than {limit} bytes")
    return data


def private_dir(parent: Path | None = None) -> Path:
    """A new folder only this user can enter (mode 0700), for unpacking one package."""
    if parent is not None:
        parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="modelline-pkg-", dir=parent))


def write_package(
    out_path: Path,
    members: Iterable[tuple[str, bytes | Path]],
    stored: Iterable[str] = (),
    facts: Mapping[str, FileFacts] | None = None,
) -> FileDigest:
    """Write a package zip atomically (a temporary file beside ``out_path``, then a rename); its size and SHA-256.

    Metadata given as bytes is deflated; files given as paths (the model) are stored
    as they are: float weights hardly compress, and inflating them would double the
    time an edge node spends verifying a large model (python -m bench.package_verify).
    Names in ``stored`` are stored too (ASiC's ``mimetype``, EN 319 162-1 §4.4.1).
    A ``mimetype`` member makes the package a DI one: folders are allowed.
    ``facts``: a file member's size, CRC-32 and SHA-256 taken before (``file_facts``), so that it is read once
    more only to copy it; the package's own hash is taken as it is written (sdk.package.zipwrite).
    """
    members = list(members)
    keep = set(stored)
    known = dict(facts or {})
    folders = any(name == DI_MARKER for name, _ in members)
    for name, _ in members:
        _check_name(name, folders)
    names = [name for name, _ in members]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise UnsafeArchiveEntry(f"unsafe entry {duplicates[0]!r}: duplicate name")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out_path.name}.", suffix=".part", dir=out_path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh, ZipWriter(fh) as writer:
            for name, content in members:
                if isinstance(content, bytes):
                    writer.add_bytes(name, content, deflate=name not in keep)
                else:
                    writer.add_file(name, content, known.get(name) or file_facts(content))
            size, digest = writer.close()
        os.chmod(tmp, 0o644)
        os.replace(tmp, out_path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return FileDigest(size, digest)


class FileDigest(NamedTuple):
    """A file's size and SHA-256 (hex): the DI software update Hash of a package as transferred."""

    size: int
    sha256: str


def sha256_file(path: Path) -> FileDigest:
    """(size, SHA-256 hex) of a file, read in chunks."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            size += len(chunk)
            digest.update(chunk)
    return FileDigest(size, digest.hexdigest())
