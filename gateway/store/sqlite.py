"""The embedded store: one SQLite file through aiosqlite (its own thread), WAL journal, versioned schema.

Migrations are numbered SQL scripts applied in order and recorded in
``PRAGMA user_version``; a database from an earlier release is brought up to
date at open, one never seen before is created from migration 1.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite
from pydantic import ValidationError

from gateway.store.base import (
    DeploymentRecord,
    DeviceRecord,
    ModelVersionRecord,
    RecordKind,
    TargetRecord,
    UnreadableRecord,
)
from nodesets.ids import DeploymentState
from sdk.audit import MAX_FETCH, AuditRecord
from sdk.errors import ModelLineError
from sdk.names import first_problem

_log = logging.getLogger(__name__)
R = TypeVar("R")
_LARGEST_SEQUENCE = (1 << 63) - 1
"""SQLite's largest integer: nothing comes after it."""

MIGRATIONS: list[str] = [
    # 1: the first release
    """
    CREATE TABLE model_versions (
        name TEXT NOT NULL, version TEXT NOT NULL, sha256 TEXT NOT NULL, size INTEGER NOT NULL,
        signer TEXT NOT NULL, created TEXT NOT NULL, stored_at TEXT NOT NULL, manifest_json TEXT NOT NULL,
        PRIMARY KEY (name, version)
    );
    CREATE TABLE devices (
        id TEXT PRIMARY KEY, endpoint TEXT NOT NULL, registered_at TEXT NOT NULL, last_seen TEXT
    );
    CREATE TABLE deployments (
        id TEXT PRIMARY KEY, model TEXT NOT NULL, version TEXT NOT NULL, targets TEXT NOT NULL,
        options_json TEXT NOT NULL, state TEXT NOT NULL, progress REAL NOT NULL, last_error TEXT NOT NULL,
        created_at TEXT NOT NULL, updated_at TEXT NOT NULL
    );
    CREATE TABLE deployment_targets (
        deployment_id TEXT NOT NULL REFERENCES deployments(id), device_id TEXT NOT NULL, state TEXT NOT NULL,
        last_error TEXT NOT NULL, updated_at TEXT NOT NULL, PRIMARY KEY (deployment_id, device_id)
    );
    CREATE TABLE audit (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
        detail TEXT NOT NULL
    );
    """,
    # 2: each target remembers the package it is brought to (a resumed rollback must not swap back)
    "ALTER TABLE deployment_targets ADD COLUMN sha256 TEXT NOT NULL DEFAULT ''",
    # 3: the audit trail says how it ended, from where, on what, and holds the records collected from devices
    # (device, their sequence there); nothing may change or delete a row (append-only).
    """
    ALTER TABLE audit ADD COLUMN outcome TEXT NOT NULL DEFAULT 'ok';
    ALTER TABLE audit ADD COLUMN address TEXT NOT NULL DEFAULT '';
    ALTER TABLE audit ADD COLUMN target TEXT NOT NULL DEFAULT '';
    ALTER TABLE audit ADD COLUMN device TEXT NOT NULL DEFAULT '';
    ALTER TABLE audit ADD COLUMN device_seq INTEGER NOT NULL DEFAULT 0;
    CREATE UNIQUE INDEX audit_collected ON audit (device, device_seq) WHERE device != '';
    CREATE INDEX audit_by_device ON audit (device, seq);
    CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
    CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
    """,
]


class StoreError(ModelLineError):
    """The database cannot be opened or is newer than this release."""


def _ts(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value is not None else None


def _device(r: aiosqlite.Row) -> DeviceRecord:
    return DeviceRecord(
        id=r["id"], endpoint=r["endpoint"], registered_at=_dt(r["registered_at"]), last_seen=_dt(r["last_seen"])
    )


def _deployment(r: aiosqlite.Row) -> DeploymentRecord:
    return DeploymentRecord(
        id=r["id"],
        model=r["model"],
        version=r["version"],
        targets=json.loads(r["targets"]),
        options_json=r["options_json"],
        state=DeploymentState.from_label(r["state"]),
        progress=r["progress"],
        last_error=r["last_error"],
        created_at=_dt(r["created_at"]),
        updated_at=_dt(r["updated_at"]),
    )


def _target(r: aiosqlite.Row) -> TargetRecord:
    return TargetRecord(
        deployment_id=r["deployment_id"],
        device_id=r["device_id"],
        state=DeploymentState.from_label(r["state"]),
        last_error=r["last_error"],
        updated_at=_dt(r["updated_at"]),
        sha256=r["sha256"],
    )


def _audit(r: aiosqlite.Row) -> AuditRecord:
    outcome = r["outcome"] if r["outcome"] in ("ok", "refused", "failed") else "failed"
    return AuditRecord(
        seq=r["seq"],
        at=_dt(r["at"]),
        action=r["action"],
        outcome=outcome,
        who=r["actor"],
        address=r["address"],
        target=r["target"],
        detail=r["detail"],
        device=r["device"],
    )


def _model_version(r: aiosqlite.Row) -> ModelVersionRecord:
    return ModelVersionRecord(
        name=r["name"],
        version=r["version"],
        sha256=r["sha256"],
        size=r["size"],
        signer=r["signer"],
        created=_dt(r["created"]),
        stored_at=_dt(r["stored_at"]),
        manifest_json=r["manifest_json"],
    )


class SqliteStore:
    """Store on one SQLite file."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db
        self._unreadable: dict[tuple[str, str], UnreadableRecord] = {}

    def _read(self, kind: RecordKind, key: str, build: Callable[[], R]) -> R | None:
        """One row as its record, or None (logged once, and kept in ``unreadable``) when it does not validate.

        A row written by hand, by an older release or before a check existed must not
        stop the gateway from starting: it is left out and reported, the rest is served.
        """
        try:
            return build()
        except (ValidationError, ValueError, TypeError, KeyError) as exc:
            reason = first_problem(exc) if isinstance(exc, ValidationError) else str(exc) or type(exc).__name__
            if (kind, key) not in self._unreadable:
                _log.error("stored %s %r is unreadable and left out: %s", kind, key, reason)
            self._unreadable[(kind, key)] = UnreadableRecord(kind=kind, key=key, reason=reason)
            return None

    def unreadable(self) -> list[UnreadableRecord]:
        """Stored rows met so far that do not validate."""
        return list(self._unreadable.values())

    @classmethod
    @asynccontextmanager
    async def open(cls, path: Path) -> AsyncIterator[SqliteStore]:
        """Open (creating and migrating as needed) and close at the end."""
        path.parent.mkdir(parents=True, exist_ok=True)
        db = await aiosqlite.connect(path)
        try:
            db.row_factory = aiosqlite.Row
            await db.execute("PRAGMA journal_mode=WAL")
            await db.execute("PRAGMA synchronous=FULL")  # acknowledged means on disk
            await db.execute("PRAGMA foreign_keys=ON")
            await cls._migrate(db, path)
            yield cls(db)
        finally:
            await db.close()

    @staticmethod
    async def _migrate(db: aiosqlite.Connection, path: Path) -> None:
        (current,) = await (await db.execute("PRAGMA user_version")).fetchone()  # type: ignore[misc]
        if current > len(MIGRATIONS):
            raise StoreError(f"{path} was written by a newer ModelLine (schema {current}); upgrade ModelLine")
        for number, script in enumerate(MIGRATIONS[current:], start=current + 1):
            await db.executescript(f"BEGIN; {script}; PRAGMA user_version = {number}; COMMIT;")

    async def schema_version(self) -> int:
        """The schema version of the open database."""
        (version,) = await (await self._db.execute("PRAGMA user_version")).fetchone()  # type: ignore[misc]
        return int(version)

    async def _rows(self, sql: str, *params: Any) -> list[aiosqlite.Row]:
        return list(await (await self._db.execute(sql, params)).fetchall())

    # --- model versions -------------------------------------------------------------------------

    async def put_model_version(self, record: ModelVersionRecord) -> None:
        """Add a model version."""
        await self._db.execute(
            "INSERT INTO model_versions VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                record.name,
                record.version,
                record.sha256,
                record.size,
                record.signer,
                _ts(record.created),
                _ts(record.stored_at),
                record.manifest_json,
            ),
        )
        await self._db.commit()

    def _model_version(self, row: aiosqlite.Row) -> ModelVersionRecord | None:
        return self._read("model version", f"{row['name']} {row['version']}", partial(_model_version, row))

    async def model_versions(self) -> list[ModelVersionRecord]:
        """Every stored model version that validates, oldest first."""
        rows = await self._rows("SELECT * FROM model_versions ORDER BY stored_at, name, version")
        return [r for r in map(self._model_version, rows) if r is not None]

    async def model_version(self, name: str, version: str) -> ModelVersionRecord | None:
        """One model version, or None (also when its row does not validate)."""
        rows = await self._rows("SELECT * FROM model_versions WHERE name = ? AND version = ?", name, version)
        return self._model_version(rows[0]) if rows else None

    async def has_model_version(self, name: str, version: str) -> bool:
        """Whether a row holds this name and version, readable or not."""
        rows = await self._rows("SELECT 1 FROM model_versions WHERE name = ? AND version = ?", name, version)
        return bool(rows)

    # --- devices --------------------------------------------------------------------------------

    async def put_device(self, record: DeviceRecord) -> None:
        """Add or update a device."""
        await self._db.execute(
            "INSERT INTO devices VALUES (?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET endpoint = excluded.endpoint, "
            "last_seen = excluded.last_seen",
            (record.id, record.endpoint, _ts(record.registered_at), _ts(record.last_seen)),
        )
        await self._db.commit()

    async def devices(self) -> list[DeviceRecord]:
        """Every registered device."""
        rows = await self._rows("SELECT * FROM devices ORDER BY id")
        records = [self._read("device", str(r["id"]), partial(_device, r)) for r in rows]
        return [r for r in records if r is not None]

    # --- deployments ----------------------------------------------------------------------------

    async def put_deployment(self, record: DeploymentRecord, targets: list[TargetRecord]) -> None:
        """Add or update a deployment and its targets in one transaction."""
        await self._db.execute(
            "INSERT INTO deployments VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET "
            "state = excluded.state, progress = excluded.progress, last_error = excluded.last_error, "
            "updated_at = excluded.updated_at",
            (
                record.id,
                record.model,
                record.version,
                json.dumps(record.targets),
                record.options_json,
                record.state.label,  # stored by name: readable, and stable if values were ever renumbered
                record.progress,
                record.last_error,
                _ts(record.created_at),
                _ts(record.updated_at),
            ),
        )
        for t in targets:
            await self._db.execute(
                "INSERT INTO deployment_targets (deployment_id, device_id, state, last_error, updated_at, sha256) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(deployment_id, device_id) DO UPDATE SET state = excluded.state, "
                "last_error = excluded.last_error, updated_at = excluded.updated_at, sha256 = excluded.sha256",
                (t.deployment_id, t.device_id, t.state.label, t.last_error, _ts(t.updated_at), t.sha256),
            )
        await self._db.commit()

    async def deployments(self) -> list[DeploymentRecord]:
        """Every deployment, oldest first."""
        rows = await self._rows("SELECT * FROM deployments ORDER BY created_at, id")
        records = [self._read("deployment", str(r["id"]), partial(_deployment, r)) for r in rows]
        return [r for r in records if r is not None]

    async def deployment_ids(self) -> list[str]:
        """The id of every deployment row, readable or not (new ids must not reuse them)."""
        return [str(r["id"]) for r in await self._rows("SELECT id FROM deployments")]

    async def targets(self, deployment_id: str) -> list[TargetRecord]:
        """The targets of a deployment."""
        rows = await self._rows(
            "SELECT * FROM deployment_targets WHERE deployment_id = ? ORDER BY device_id", deployment_id
        )
        records = [
            self._read("deployment target", f"{r['deployment_id']} {r['device_id']}", partial(_target, r)) for r in rows
        ]
        return [r for r in records if r is not None]

    # --- audit ----------------------------------------------------------------------------------

    async def append(self, records: list[AuditRecord]) -> list[AuditRecord]:
        """Append to the audit trail in one transaction; returns the records written, numbered."""
        written = []
        for r in records:
            cursor = await self._db.execute(
                "INSERT OR IGNORE INTO audit (at, actor, action, detail, outcome, address, target, device, device_seq) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (_ts(r.at), r.who, r.action, r.detail, r.outcome, r.address, r.target, r.device, r.seq),
            )
            if cursor.rowcount:
                written.append(r.model_copy(update={"seq": cursor.lastrowid}))
        await self._db.commit()
        return written

    async def fetch(self, device: str, after: int, limit: int) -> list[AuditRecord]:
        """Audit records after ``after`` (this store's numbering), oldest first."""
        rows = await self._rows(
            "SELECT * FROM audit WHERE device = ? AND seq > ? ORDER BY seq LIMIT ?",
            device,
            min(after, _LARGEST_SEQUENCE),  # nothing comes after SQLite's largest integer
            min(limit or MAX_FETCH, MAX_FETCH),
        )
        return [_audit(r) for r in rows]

    async def newest(self) -> int:
        """The sequence of the gateway's own newest audit record (0: none yet)."""
        rows = await self._rows("SELECT MAX(seq) AS last FROM audit WHERE device = ''")
        return int(rows[0]["last"] or 0)

    async def last_collected(self, device: str) -> int:
        """The newest device sequence collected from ``device`` (0: none)."""
        rows = await self._rows("SELECT MAX(device_seq) AS last FROM audit WHERE device = ?", device)
        return int(rows[0]["last"] or 0)
