"""Following a zip as it is written (sdk/package/stream.py): what it finds, and where it stops."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

from sdk.package.stream import EntryTee


class _Unseekable(io.RawIOBase):
    """A write-only stream without seek: zipfile then writes data descriptors after each entry."""

    def __init__(self) -> None:
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b: bytes) -> int:  # type: ignore[override]
        self.data += b
        return len(b)


def _feed(data: bytes, tee: EntryTee, piece: int = 777) -> None:
    for start in range(0, len(data), piece):
        tee.feed(data[start : start + piece])
    tee.close()


def test_stored_entries_are_hashed_and_large_ones_copied(tmp_path: Path) -> None:
    big, small = bytes(range(256)) * 9000, b"mimetype-like"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr(zipfile.ZipInfo("a"), small)  # stored
        zf.writestr("b.txt", b"x" * 5000, compress_type=zipfile.ZIP_DEFLATED)  # skipped, not hashed
        with zf.open(zipfile.ZipInfo("CONTENT/model.onnx"), "w", force_zip64=True) as dst:
            dst.write(big)
    tee = EntryTee(tmp_path / "tee", min_copy=100_000)
    _feed(buffer.getvalue(), tee)
    found = {e.name: e for e in tee.entries}
    assert set(found) == {"a", "CONTENT/model.onnx"}
    with zipfile.ZipFile(buffer) as zf:
        for name, entry in found.items():
            assert entry.header_offset == zf.getinfo(name).header_offset
            assert entry.sha256 == hashlib.sha256(zf.read(name)).hexdigest()
    assert found["a"].copy is None  # small: hashed only
    copy = found["CONTENT/model.onnx"].copy
    assert copy is not None and copy.read_bytes() == big  # through the Zip64 extra field's sizes


def test_a_zip_with_data_descriptors_is_not_followed(tmp_path: Path) -> None:
    stream = _Unseekable()
    with zipfile.ZipFile(stream, "w") as zf:
        zf.writestr(zipfile.ZipInfo("a"), b"first")
        zf.writestr(zipfile.ZipInfo("b"), b"second")
    tee = EntryTee(tmp_path / "tee")
    _feed(bytes(stream.data), tee)
    assert tee.entries == [] and not tee.following  # sizes only after the data: nothing to take


def test_an_entry_cut_short_leaves_no_copy(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr(zipfile.ZipInfo("big"), b"y" * 300_000)
    tee = EntryTee(tmp_path / "tee", min_copy=1)
    _feed(buffer.getvalue()[:100_000], tee)  # the transfer ended in the middle of the entry
    assert tee.entries == []
    assert list((tmp_path / "tee").iterdir()) == []
