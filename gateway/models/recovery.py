"""Rebuilding the model versions of a gateway from its content-addressed package store.

    <data_dir>/packages/<sha256>.mlpkg  ->  a new <data_dir>/gateway.sqlite3

Every package file is verified again (signature against the trust store, hashes, archive
safety, the model loads; samples are run on the edge nodes, as at upload), and its record is
rebuilt from what the package itself says. The new database is written under a temporary name
and put in place only when complete; the database it replaces is renamed aside, never deleted.
Packages that fail are reported and left where they are. Devices and deployments live only in
the database: a package says nothing about them, so they cannot come back this way.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from gateway.store import files
from gateway.store.base import ModelVersionRecord
from gateway.store.sqlite import SqliteStore
from sdk.audit import AuditRecord
from sdk.errors import ModelLineError, UsageError
from sdk.keys import TrustStore
from sdk.package.verify import verify_package

_log = logging.getLogger(__name__)

# (package file, bytes verified so far, bytes in all packages)
Progress = Callable[[Path, int, int], None]


@dataclass
class RecoveryReport:
    """What a recovery found and did."""

    database: Path
    recovered: list[ModelVersionRecord] = field(default_factory=list)
    failed: dict[Path, str] = field(default_factory=dict)  # package file -> why it was not taken
    kept_aside: Path | None = None
    packages: int = 0


def _record(path: Path, trust: TrustStore) -> ModelVersionRecord:
    """Verify one package file and make its record (blocking: run in a thread)."""
    verified = verify_package(path, trust, run_samples=False)
    if path.stem != verified.sha256:  # the store names each file by its content: another name was not put there by us
        raise UsageError(f"its SHA-256 is {verified.sha256}, not the one its name says")
    # when the package was stored is not in the package; the file's time is the closest record of it
    return ModelVersionRecord.of(verified, datetime.fromtimestamp(path.stat().st_mtime, UTC))


async def recover(
    data_dir: Path, trust: TrustStore, progress: Progress | None = None, aside: str = "damaged"
) -> RecoveryReport:
    """Rebuild ``data_dir``'s database from its package store; the caller holds the data folder lock.

    The database it replaces is renamed to ``gateway.sqlite3.<aside>-<timestamp>``."""
    db_path = data_dir / files.DB_NAME
    report = RecoveryReport(database=db_path)
    packages = files.package_files(data_dir)
    report.packages = len(packages)
    total = sum(p.stat().st_size for p in packages)
    done = 0
    by_version: dict[tuple[str, str], ModelVersionRecord] = {}
    for path in packages:
        try:
            record = await asyncio.to_thread(_record, path, trust)
        except ModelLineError as exc:
            report.failed[path] = str(exc)
        except OSError as exc:  # unreadable file: report it like a refused package, go on with the others
            report.failed[path] = f"cannot be read: {exc.strerror or exc}"
        else:
            earlier = by_version.get((record.name, record.version))
            if earlier is not None:  # versions are immutable: two contents under one version cannot both be true
                report.failed[path] = (
                    f"{record.name} {record.version} is also in {earlier.sha256}.mlpkg with other content"
                )
            else:
                by_version[(record.name, record.version)] = record
        done += path.stat().st_size if path.exists() else 0
        if progress is not None:
            progress(path, done, total)
    if packages and not by_version:
        raise UsageError(
            f"none of the {len(packages)} package(s) in {data_dir / files.PACKAGES} verified against the trust "
            f"store {trust.source}; the database was left as it is: check --trust (first reason: "
            f"{next(iter(report.failed.values()))})"
        )
    report.recovered = sorted(by_version.values(), key=lambda r: (r.stored_at, r.name, r.version))
    temporary = data_dir / f".{files.DB_NAME}.recovering"
    await asyncio.to_thread(files.discard, temporary)  # a leftover of an interrupted run
    try:
        async with SqliteStore.open(temporary) as store:
            for record in report.recovered:
                await store.put_model_version(record)
            await store.append(
                [
                    AuditRecord(
                        at=datetime.now(UTC),
                        action="recover",
                        outcome="ok",
                        who="modelline gateway recover",
                        detail=f"{len(report.recovered)} version(s) from {len(packages)} package(s)",
                    )
                ]
            )
        report.kept_aside = await asyncio.to_thread(files.set_aside, db_path, aside)
        await asyncio.to_thread(os.replace, temporary, db_path)
    finally:
        await asyncio.to_thread(files.discard, temporary)
    for path, reason in report.failed.items():
        _log.info("recover: %s left in place: %s", path.name, reason)  # the command reports them
    return report
