"""The data folder is its service user's alone."""

from __future__ import annotations

import logging
import stat
from pathlib import Path

import pytest

from sdk.datadir import lock_data_dir


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_data_folder_is_private(tmp_path: Path) -> None:
    folder = tmp_path / "var" / "edge"
    lock_data_dir(folder, "edge.lock", "an edge node", "testing").close()
    assert _mode(folder) == 0o700


def test_an_open_data_folder_is_made_private_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder = tmp_path / "gateway"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)  # whatever the umask
    (folder / "gateway.sqlite3").write_bytes(b"")
    with caplog.at_level(logging.WARNING, logger="sdk.datadir"):
        lock_data_dir(folder, "gateway.lock", "a gateway", "testing").close()
    assert _mode(folder) == 0o700
    assert "made private (0700)" in caplog.text and "0755" in caplog.text


def test_a_private_data_folder_is_left_as_it_is(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder = tmp_path / "edge"
    folder.mkdir(mode=0o700)
    with caplog.at_level(logging.WARNING, logger="sdk.datadir"):
        lock_data_dir(folder, "edge.lock", "an edge node", "testing").close()
    assert _mode(folder) == 0o700 and not caplog.text
