"""Uploads send a file as they read it, and a file that cannot be read is said so, not taken for a lost link."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from asyncua import ua

from sdk.errors import ModelLineError
from sdk.file_client import _chunks, upload


async def test_a_file_is_read_in_chunks_of_the_given_size(tmp_path: Path) -> None:
    path = tmp_path / "package.mlpkg"
    path.write_bytes(bytes(range(256)) * 10)  # 2560 bytes
    blocks = [block async for block in _chunks(path, 1000)]
    assert [len(b) for b in blocks] == [1000, 1000, 560]
    assert b"".join(blocks) == path.read_bytes()
    assert [len(b) async for b in _chunks(b"x" * 2000, 1000)] == [1000, 1000]


class _Untouchable:
    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the server was asked for {name}")


async def test_a_missing_file_fails_before_the_transfer_starts_and_is_no_os_error(tmp_path: Path) -> None:
    missing = tmp_path / "gone.mlpkg"
    with pytest.raises(ModelLineError, match=r"cannot read .*gone\.mlpkg: No such file or directory"):
        await upload(_Untouchable(), _Untouchable(), missing, ua.Variant())  # type: ignore[arg-type]
