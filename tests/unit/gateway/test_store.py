"""The gateway's SQLite store: schema migrations, durability across reopen, records round-trip."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.store.base import DeploymentRecord, DeviceRecord, ModelVersionRecord, TargetRecord
from gateway.store.sqlite import MIGRATIONS, SqliteStore, StoreError
from nodesets.ids import DeploymentState
from sdk.audit import AuditRecord
from sdk.package.manifest import MANIFEST_NAME
from tests.conftest import read_members

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


@pytest.fixture
def manifest_json(package: Path) -> str:
    """The manifest of a real package (pump-health 1.0.0): a record is checked against its manifest."""
    return read_members(package)["CONTENT/" + MANIFEST_NAME].decode()


def _version(manifest_json: str) -> ModelVersionRecord:
    return ModelVersionRecord(
        name="pump-health",
        version="1.0.0",
        sha256="a" * 64,
        size=10,
        signer="k" * 32,
        created=NOW,
        stored_at=NOW,
        manifest_json=manifest_json,
    )


async def test_new_database_gets_the_current_schema_and_records_survive_reopen(
    tmp_path: Path, manifest_json: str
) -> None:
    path = tmp_path / "gw.sqlite3"
    async with SqliteStore.open(path) as store:
        assert await store.schema_version() == len(MIGRATIONS)
        await store.put_model_version(_version(manifest_json))
        await store.put_device(DeviceRecord(id="edge-1", endpoint="opc.tcp://a:4841/", registered_at=NOW))
        deployment = DeploymentRecord(
            id="d1",
            model="pump-health",
            version="1.0.0",
            targets=["edge-1"],
            options_json="{}",
            state=DeploymentState.PENDING,
            created_at=NOW,
            updated_at=NOW,
        )
        await store.put_deployment(
            deployment,
            [TargetRecord(deployment_id="d1", device_id="edge-1", state=DeploymentState.PENDING, updated_at=NOW)],
        )
        await store.append([AuditRecord(at=NOW, action="deploy", outcome="ok", who="alice", target="d1")])
        # Collected records are kept once per device sequence; the trail cannot be changed or emptied.
        collected = [AuditRecord(action="install", outcome="ok", seq=7, device="edge-1")]
        assert len(await store.append(collected)) == 1
        assert await store.append(collected) == []
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            await store._db.execute("DELETE FROM audit")
    async with SqliteStore.open(path) as store:  # a restart: everything acknowledged is there
        assert await store.model_versions() == [_version(manifest_json)]
        assert await store.model_version("pump-health", "1.0.0") == _version(manifest_json)
        assert await store.model_version("pump-health", "9.9.9") is None
        assert [d.id for d in await store.devices()] == ["edge-1"]
        [deployment] = await store.deployments()
        assert deployment.targets == ["edge-1"] and deployment.state is DeploymentState.PENDING
        assert [t.device_id for t in await store.targets("d1")] == ["edge-1"]
        [entry] = await store.fetch("", 0, 10)
        assert (entry.action, entry.who, entry.target, entry.seq) == ("deploy", "alice", "d1", 1)
        assert [r.action for r in await store.fetch("edge-1", 0, 10)] == ["install"]
        assert await store.last_collected("edge-1") == 7
        assert await store.newest() == 1  # the gateway's own, not the collected ones
        # AfterSequence is a UInt64 on the wire: one beyond SQLite's integers finds nothing, it is no error
        assert await store.fetch("", (1 << 64) - 1, 10) == []


async def test_updates_replace_state_and_versions_are_unique(tmp_path: Path, manifest_json: str) -> None:
    async with SqliteStore.open(tmp_path / "gw.sqlite3") as store:
        await store.put_model_version(_version(manifest_json))
        with pytest.raises(sqlite3.IntegrityError):
            await store.put_model_version(_version(manifest_json))  # a version is immutable once stored
        await store.put_device(DeviceRecord(id="edge-1", endpoint="opc.tcp://a:4841/", registered_at=NOW))
        await store.put_device(
            DeviceRecord(id="edge-1", endpoint="opc.tcp://b:4841/", registered_at=NOW, last_seen=NOW)
        )
        [device] = await store.devices()
        assert (device.endpoint, device.last_seen) == ("opc.tcp://b:4841/", NOW)
        record = DeploymentRecord(
            id="d1",
            model="m",
            version="1.0.0",
            targets=["a", "b"],
            options_json="{}",
            state=DeploymentState.PENDING,
            created_at=NOW,
            updated_at=NOW,
        )
        await store.put_deployment(
            record,
            [
                TargetRecord(deployment_id="d1", device_id=d, state=DeploymentState.PENDING, updated_at=NOW)
                for d in ("a", "b")
            ],
        )
        await store.put_deployment(
            record.model_copy(update={"state": DeploymentState.FAILED, "last_error": "x"}),
            [TargetRecord(deployment_id="d1", device_id="a", state=DeploymentState.FAILED, updated_at=NOW)],
        )
        [stored] = await store.deployments()
        assert (stored.state, stored.last_error) == (DeploymentState.FAILED, "x")
        assert {t.device_id: t.state for t in await store.targets("d1")} == {
            "a": DeploymentState.FAILED,
            "b": DeploymentState.PENDING,
        }


async def test_a_database_from_a_newer_release_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "gw.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    with pytest.raises(StoreError, match="written by a newer ModelLine"):
        async with SqliteStore.open(path):
            pass


async def test_rows_that_do_not_validate_are_left_out_and_reported(tmp_path: Path, manifest_json: str) -> None:
    path = tmp_path / "gw.sqlite3"
    async with SqliteStore.open(path) as store:
        await store.put_model_version(_version(manifest_json))
        await store.put_device(DeviceRecord(id="edge-1", endpoint="opc.tcp://a:4841/", registered_at=NOW))
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO devices VALUES ('edge-2', 'opc.tcp://::::/', ?, NULL)", (NOW.isoformat(),))
        db.execute(
            "INSERT INTO deployments VALUES ('d1', 'pump-health', '1.0.0', '[\"edge-1\"]', "
            "'{\"confirmation_timeout_s\": null}', 'Pending', 0, '', ?, ?)",
            (NOW.isoformat(), NOW.isoformat()),
        )
        db.execute("UPDATE model_versions SET version = '1.0' WHERE name = 'pump-health'")
    async with SqliteStore.open(path) as store:
        assert [d.id for d in await store.devices()] == ["edge-1"]
        assert await store.deployments() == []
        assert await store.deployment_ids() == ["d1"]  # its id is still taken
        assert await store.model_versions() == []
        assert await store.has_model_version("pump-health", "1.0")
        assert {(u.kind, u.key) for u in store.unreadable()} == {
            ("device", "edge-2"),
            ("deployment", "d1"),
            ("model version", "pump-health 1.0"),
        }


async def test_a_database_of_the_first_release_keeps_its_targets_and_learns_their_packages(tmp_path: Path) -> None:
    path = tmp_path / "gw.sqlite3"
    with sqlite3.connect(path) as db:  # as the first release left it
        db.executescript(MIGRATIONS[0])
        db.execute("INSERT INTO deployment_targets VALUES ('d1', 'edge-1', 'Installing', '', ?)", (NOW.isoformat(),))
        db.execute("PRAGMA user_version = 1")
    async with SqliteStore.open(path) as store:
        assert await store.schema_version() == len(MIGRATIONS)
        [target] = await store.targets("d1")
        assert (target.state, target.sha256) == (DeploymentState.INSTALLING, "")  # nothing remembered yet
        await store.put_deployment(
            DeploymentRecord(
                id="d1",
                model="pump-health",
                version="fallback",
                targets=["edge-1"],
                options_json="{}",
                state=DeploymentState.INSTALLING,
                created_at=NOW,
                updated_at=NOW,
            ),
            [target.model_copy(update={"sha256": "b" * 64})],
        )
    async with SqliteStore.open(path) as store:
        [target] = await store.targets("d1")
        assert target.sha256 == "b" * 64


def test_a_records_manifest_is_the_one_validated_with_it_and_follows_a_copy(manifest_json: str) -> None:
    record = _version(manifest_json)
    assert record.manifest is record.manifest  # parsed once, when the record was validated
    assert (record.manifest.name, record.manifest.version) == ("pump-health", "1.0.0")
    # model_copy does not validate: a copy with another manifest_json gets that manifest, not the original's.
    other = json.dumps({**json.loads(manifest_json), "version": "1.0.1", "description": "the next one"})
    copied = record.model_copy(update={"version": "1.0.1", "manifest_json": other})
    assert (copied.manifest.version, copied.manifest.description) == ("1.0.1", "the next one")
    assert record.manifest.version == "1.0.0"
    assert ModelVersionRecord.model_validate_json(copied.model_dump_json()).manifest == copied.manifest
