"""Hostile variants of a DI package, the same ones package verification refuses (test_verify_dipkg.py),
for the gateway's upload and the edge node's transfer to refuse too."""

from __future__ import annotations

import stat
import warnings
import zipfile
from pathlib import Path

from tests.conftest import read_members, write_members

MODEL = "CONTENT/model.onnx"


def _flip(data: bytes) -> bytes:
    return data[:-1] + bytes([data[-1] ^ 0x01])


def variants(package: Path, folder: Path) -> dict[str, Path]:
    """Name -> a hostile copy of ``package`` in ``folder``."""
    members = read_members(package)
    out: dict[str, Path] = {}

    def add(name: str, entries: list[tuple[str | zipfile.ZipInfo, bytes]]) -> None:
        out[name] = write_members(folder / f"hostile-{len(out):02d}.uadipkg", entries)

    for entry in (MODEL, "CONTENT/manifest.json", "META/package_metadata.json", "META-INF/signature001.p7s"):
        add(f"changed {entry}", [(n, _flip(d) if n == entry else d) for n, d in members.items()])
    items = list(members.items())
    for extra in ("SUPPLEMENT/payload.sh", "META-INF/evil.sh", "../evil.onnx", "/etc/cron.d/evil",
                  "CONTENT/nested/model.onnx", "SUPPLEMENT/.hidden"):  # fmt: skip
        add(f"extra {extra}", [*items, (extra, b"x")])
    add("missing model card", [(n, d) for n, d in items if n != "SUPPLEMENT/model_card.md"])
    add("mimetype not first", [*items[1:], items[0]])
    link = zipfile.ZipInfo("SUPPLEMENT/link.md")
    link.create_system = 3
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    add("symbolic link", [*items, (link, b"/etc/passwd")])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zipfile warns about the duplicate it is told to write
        add("duplicate entry", [*items, (MODEL, b"a second model")])
    add("zip bomb", [*items, ("CONTENT/z.bin", bytes(64 << 20))])
    add("unsigned", [(n, d) for n, d in items if not n.startswith("META-INF/")])
    return out
