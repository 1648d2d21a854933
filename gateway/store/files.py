"""The gateway's database as files: the data folder lock, health checks, online backups, restore.

Everything here is blocking file and sqlite3 work: callers on the event loop run it with
``asyncio.to_thread``. Backups use SQLite's online backup API (``Connection.backup``), which
copies a consistent snapshot while the gateway keeps writing, never a file copy of a live
database (its WAL file would be left out). A database that is replaced is never deleted: it is
renamed aside with a timestamp, together with its ``-wal`` and ``-shm`` files.

The Model Monitor's ``monitor.sqlite3`` is not backed up, restored or recovered here: it is large
and mostly replaced every retention period (gateway/monitor/retention.py); the README says how to
copy it when its history must survive.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from gateway.store.sqlite import MIGRATIONS
from sdk import datadir
from sdk.errors import DatabaseUnusable, NotFound

DB_NAME = "gateway.sqlite3"
LOCK_NAME = "gateway.lock"
PACKAGES = "packages"
BACKUP_PREFIX = "gateway-"
BACKUP_SUFFIX = ".sqlite3"
_SQLITE_HEADER = b"SQLite format 3\x00"
_COMPANIONS = ("-wal", "-shm", "-journal")


def recovery_hint(data_dir: Path) -> str:
    """The documented ways back, as the end of a one-line message."""
    return (
        f"rebuild it from the packages with 'modelline gateway recover --data-dir {data_dir}', "
        f"or restore a backup with 'modelline gateway restore --data-dir {data_dir} --from BACKUP'"
    )


def stamp(now: datetime | None = None) -> str:
    """A UTC timestamp for file names that sorts in time order (microseconds: two in one second differ)."""
    return (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S.%fZ")


def package_files(data_dir: Path) -> list[Path]:
    """The package files of the content-addressed store, by name."""
    folder = data_dir / PACKAGES
    return sorted(folder.glob("*.mlpkg")) if folder.is_dir() else []


# --- the lock a running gateway holds ---------------------------------------------------------


def lock_data_dir(data_dir: Path, purpose: str) -> IO[str]:
    """Take ``<data_dir>/gateway.lock`` (held until the returned file is closed); refuse if another process holds it."""
    return datadir.lock_data_dir(data_dir, LOCK_NAME, "a gateway", purpose)


@contextmanager
def data_dir_lock(data_dir: Path, purpose: str) -> Iterator[None]:
    """Hold the data folder lock for the block (see ``lock_data_dir``)."""
    handle = lock_data_dir(data_dir, purpose)
    try:
        yield
    finally:
        handle.close()  # closing the descriptor releases the flock


# --- health -----------------------------------------------------------------------------------


def problem(path: Path) -> str | None:
    """Why the SQLite file at ``path`` cannot be used (not SQLite, unreadable, fails quick_check), or None."""
    try:
        with path.open("rb") as f:
            header = f.read(len(_SQLITE_HEADER))
    except OSError as exc:
        return f"cannot be read: {exc.strerror or exc}"
    if header != _SQLITE_HEADER:
        return "not a SQLite database" if header else "empty file"
    try:
        # mode=rw: never creates a file; a WAL left by a crash is replayed here as the gateway would
        with closing(sqlite3.connect(f"file:{path}?mode=rw", uri=True)) as db:
            rows = db.execute("PRAGMA quick_check").fetchall()
            (version,) = db.execute("PRAGMA user_version").fetchone()
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.Error as exc:
        return f"SQLite cannot read it: {exc}"
    if rows != [("ok",)]:
        return f"PRAGMA quick_check failed: {'; '.join(str(r[0]) for r in rows[:3])}"
    if version > len(MIGRATIONS):
        return None  # a newer release's database: SqliteStore.open says so with its own message
    if version == 0 and tables:
        return "not a ModelLine gateway database"
    return None


def check_before_start(data_dir: Path) -> None:
    """Refuse a data folder whose database is missing while packages exist, or is damaged.

    A fresh folder (no database, no packages) passes: the gateway starts empty."""
    db = data_dir / DB_NAME
    if not db.exists() or db.stat().st_size == 0:
        count = len(package_files(data_dir))
        if count:
            raise DatabaseUnusable(
                f"the database of data folder {data_dir} is missing, but its package store holds "
                f"{count} package(s): {recovery_hint(data_dir)}"
            )
        return
    reason = problem(db)
    if reason is not None:
        raise DatabaseUnusable(
            f"the database of data folder {data_dir} is damaged ({reason}): {recovery_hint(data_dir)}"
        )


# --- backups and restore ----------------------------------------------------------------------


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def backup(db_path: Path, folder: Path, now: datetime | None = None) -> Path:
    """Copy the live database with the online backup API into ``folder``; returns the backup file.

    Written under a temporary name, checked, synced, then renamed: a backup file that exists is
    complete."""
    if not db_path.exists():
        raise NotFound(f"there is no database at {db_path} to back up")
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"{BACKUP_PREFIX}{stamp(now)}{BACKUP_SUFFIX}"
    temporary = folder / f".{final.name}.tmp"
    try:
        with closing(sqlite3.connect(f"file:{db_path}?mode=rw", uri=True)) as source:
            with closing(sqlite3.connect(temporary)) as target:
                source.backup(target)
                # the copy is a standalone file: no WAL beside it to lose when it is moved
                target.execute("PRAGMA journal_mode=DELETE")
        reason = problem(temporary)
        if reason is not None:
            raise DatabaseUnusable(f"the backup of {db_path} is unusable ({reason}); the database may be damaged")
        with temporary.open("rb") as f:
            os.fsync(f.fileno())
        os.replace(temporary, final)
        _fsync_dir(folder)
    except sqlite3.DatabaseError as exc:
        raise DatabaseUnusable(f"cannot back up {db_path}: {exc}") from None
    finally:
        temporary.unlink(missing_ok=True)
    return final


def backups(folder: Path) -> list[Path]:
    """The backups in ``folder``, oldest first."""
    return sorted(folder.glob(f"{BACKUP_PREFIX}*{BACKUP_SUFFIX}")) if folder.is_dir() else []


def prune(folder: Path, keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` backups; returns what was deleted."""
    old = backups(folder)[:-keep] if keep > 0 else backups(folder)
    for path in old:
        path.unlink(missing_ok=True)
    return old


def discard(db_path: Path) -> None:
    """Delete a database file of our own making (a partial one) with its -wal/-shm."""
    for suffix in ("", *_COMPANIONS):
        Path(f"{db_path}{suffix}").unlink(missing_ok=True)


def set_aside(db_path: Path, why: str, now: datetime | None = None) -> Path | None:
    """Rename the database (and its -wal/-shm) to ``<name>.<why>-<timestamp>``; returns the new name, or None."""
    if not db_path.exists():
        discard(db_path)  # a stale WAL must never be replayed into the database that takes its place
        return None
    aside = db_path.with_name(f"{db_path.name}.{why}-{stamp(now)}")
    for suffix in _COMPANIONS:
        companion = Path(f"{db_path}{suffix}")
        if companion.exists():
            os.replace(companion, f"{aside}{suffix}")
    os.replace(db_path, aside)
    return aside


def restore(data_dir: Path, source: Path) -> Path | None:
    """Put the backup ``source`` in place as the database of the (stopped) gateway on ``data_dir``.

    Returns where the replaced database was kept, or None if there was none."""
    if not source.is_file():
        raise NotFound(f"backup {source} does not exist")
    reason = problem(source)
    if reason is not None:
        raise DatabaseUnusable(f"backup {source} cannot be restored ({reason})")
    db_path = data_dir / DB_NAME
    temporary = data_dir / f".{DB_NAME}.restoring"
    try:
        with closing(sqlite3.connect(f"file:{source}?mode=ro", uri=True)) as src:
            with closing(sqlite3.connect(temporary)) as target:
                src.backup(target)
        with temporary.open("rb") as f:
            os.fsync(f.fileno())
        aside = set_aside(db_path, "replaced")
        os.replace(temporary, db_path)
        _fsync_dir(data_dir)
    finally:
        temporary.unlink(missing_ok=True)
    return aside
