"""The gateway database's files: the data folder lock, health checks, backups kept and pruned, databases set aside."""

from __future__ import annotations

import asyncio
import sqlite3
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.store import files
from gateway.store.sqlite import SqliteStore
from sdk.errors import DatabaseUnusable, InvalidState


def _database(path: Path) -> Path:
    async def make() -> None:
        async with SqliteStore.open(path):
            pass

    asyncio.run(make())
    return path


def test_the_lock_admits_one_holder_and_is_released_on_close(tmp_path: Path) -> None:
    with files.data_dir_lock(tmp_path, "testing"):
        with pytest.raises(
            InvalidState, match=r"a gateway is running on data folder .* \(pid \d+ holds .*gateway.lock"
        ):
            files.lock_data_dir(tmp_path, "restoring its database")
    files.lock_data_dir(tmp_path, "testing").close()  # free again


def test_problems_are_named(tmp_path: Path) -> None:
    assert files.problem(_database(tmp_path / "good.sqlite3")) is None
    (tmp_path / "empty").write_bytes(b"")
    assert files.problem(tmp_path / "empty") == "empty file"
    (tmp_path / "text").write_text("hello")
    assert files.problem(tmp_path / "text") == "not a SQLite database"
    assert (files.problem(tmp_path / "absent") or "").startswith("cannot be read")
    with closing(sqlite3.connect(tmp_path / "other.sqlite3")) as db:
        db.execute("CREATE TABLE notes (x)")
    assert files.problem(tmp_path / "other.sqlite3") == "not a ModelLine gateway database"


def test_missing_database_is_refused_only_when_packages_exist(tmp_path: Path) -> None:
    files.check_before_start(tmp_path)  # a new folder
    (tmp_path / "packages").mkdir()
    (tmp_path / "packages" / f"{'0' * 64}.mlpkg").write_bytes(b"pk")
    with pytest.raises(DatabaseUnusable, match=r"is missing, but its package store holds 1 package\(s\)") as caught:
        files.check_before_start(tmp_path)
    assert caught.value.exit_code == 8 and "\n" not in str(caught.value)


def test_backups_are_complete_files_and_the_newest_are_kept(tmp_path: Path) -> None:
    db = _database(tmp_path / "gateway.sqlite3")
    start = datetime(2026, 11, 30, 12, tzinfo=UTC)
    made = [files.backup(db, tmp_path / "backups", start + timedelta(minutes=i)) for i in range(4)]
    assert files.backups(tmp_path / "backups") == made
    assert all(files.problem(p) is None for p in made)
    assert files.prune(tmp_path / "backups", 2) == made[:2]
    assert files.backups(tmp_path / "backups") == made[2:]
    assert not list((tmp_path / "backups").glob(".*"))


def test_set_aside_moves_the_database_with_its_wal(tmp_path: Path) -> None:
    db = _database(tmp_path / "gateway.sqlite3")
    Path(f"{db}-wal").write_bytes(b"wal")
    aside = files.set_aside(db, "damaged", datetime(2026, 11, 30, tzinfo=UTC))
    assert aside == tmp_path / "gateway.sqlite3.damaged-20261130T000000.000000Z"
    assert Path(f"{aside}-wal").read_bytes() == b"wal"
    assert not db.exists() and not Path(f"{db}-wal").exists()
    Path(f"{db}-wal").write_bytes(b"stale")  # a WAL without its database is never replayed into a new one
    assert files.set_aside(db, "damaged") is None and not Path(f"{db}-wal").exists()
