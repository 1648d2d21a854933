"""The gateway's database lost, damaged, backed up, restored and recovered, with real gateways and the
`modelline` command as processes."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, closing
from pathlib import Path
from typing import Any

import pytest
from asyncua import ua

from gateway.app import Gateway
from gateway.store import files
from sdk.file_client import upload
from tests import readme
from tests.conftest import Signer
from tests.edge_harness import build_pump, wait_for
from tests.opcua_servers import free_port
from tests.processes import MODELLINE, run_modelline
from tests.tls import Client, GatewaySettings

pytestmark = pytest.mark.e2e

ML = "http://modelline.io/UA/"


def _settings(data_dir: Path, signer: Signer, **overrides: Any) -> GatewaySettings:
    values: dict[str, Any] = {
        "endpoint": f"opc.tcp://127.0.0.1:{free_port()}/gateway/",
        "data_dir": data_dir,
        "trust_dir": signer.trust_dir,
        "anonymous_role": "Engineer",
        "backup_interval_s": 0,
    }
    values.update(overrides)
    return GatewaySettings(**values)


def _gateway_argv(settings: GatewaySettings) -> list[str]:
    return [
        "gateway",
        "--data-dir",
        str(settings.data_dir),
        "--trust",
        str(settings.trust_dir),
        "--endpoint",
        settings.endpoint,
    ]


@asynccontextmanager
async def _gateway_process(settings: GatewaySettings) -> AsyncIterator[str]:
    """`modelline gateway` as a process, until it answers; stopped with SIGTERM at the end."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELLINE_")}
    env["MODELLINE_GATEWAY_ANONYMOUS_ROLE"] = "Engineer"
    proc = await asyncio.create_subprocess_exec(
        MODELLINE,
        *_gateway_argv(settings),
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )

    async def up() -> bool:
        assert proc.returncode is None, f"gateway exited with {proc.returncode}"
        try:
            async with Client(settings.endpoint, timeout=2):
                return True
        except (OSError, TimeoutError, ua.UaError):
            return False

    try:
        await wait_for(up, timeout=60, what="the gateway to listen")
        yield settings.endpoint
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 30)


async def _manager(client: Client) -> tuple[Any, int]:
    ml = await client.get_namespace_index(ML)
    return await client.nodes.objects.get_child(f"{ml}:ModelManager"), ml


async def _push(client: Client, package: Path) -> None:
    manager, ml = await _manager(client)
    await upload(client, await manager.get_child(f"{ml}:Upload"), package.read_bytes(), ua.Variant())


async def _register(client: Client, device_id: str, endpoint: str) -> None:
    manager, ml = await _manager(client)
    await manager.call_method(
        f"{ml}:RegisterDevice",
        ua.Variant(device_id, ua.VariantType.String),
        ua.Variant(endpoint, ua.VariantType.String),
    )


async def _served(url: str) -> tuple[dict[str, str], set[str]]:
    """What a client reads: each model version with its Sha256, and the device ids."""
    async with Client(url) as client:
        manager, ml = await _manager(client)
        versions = {}
        for model in await (await manager.get_child(f"{ml}:Models")).get_children():
            name = (await model.read_browse_name()).Name
            for version in await model.get_children():
                if (await version.read_node_class()) == ua.NodeClass.Object:
                    sha = await (await version.get_child(f"{ml}:Sha256")).read_value()
                    versions[f"{name} {(await version.read_browse_name()).Name}"] = sha
        devices = {
            (await d.read_browse_name()).Name for d in await (await manager.get_child(f"{ml}:Devices")).get_children()
        }
    return versions, devices


async def _refused(settings: GatewaySettings) -> str:
    """Start `modelline gateway` on the folder, expect the database refusal; its stderr."""
    code, _, err = await run_modelline(*_gateway_argv(settings), timeout=60)
    assert code == 8, err
    assert err.count("\n") == 1 and err.startswith("modelline: ") and "Traceback" not in err, err
    assert f"'modelline gateway recover --data-dir {settings.data_dir}'" in err
    return err


@pytest.mark.timeout(180)
async def test_backup_and_restore_round_trip(tmp_path: Path, signer: Signer, example: Path) -> None:
    settings = _settings(tmp_path / "gateway", signer)
    package = build_pump(example, signer, tmp_path / "pump.mlpkg").path
    async with Gateway(settings), Client(settings.endpoint) as client:
        await _push(client, package)
        await _register(client, "press-7", "opc.tcp://127.0.0.1:1/edge/")
        # on demand, while the gateway serves: the online backup API, not a file copy
        code, out, err = await run_modelline("gateway", "backup", "--data-dir", str(settings.data_dir), "--json")
        assert code == 0, err
        backup = Path(json.loads(out)["backup"])
        assert backup.parent == settings.data_dir / "backups" and files.problem(backup) is None
        code, _, err = await run_modelline(
            "gateway", "restore", "--data-dir", str(settings.data_dir), "--from", str(backup)
        )
        assert code == 1, err  # never under a running gateway
        readme.assert_documented(err, "a gateway is running on data folder")
        assert not list(settings.data_dir.glob("gateway.sqlite3.replaced-*"))
        code, _, err = await run_modelline(*_gateway_argv(settings), timeout=60)
        assert code == 1 and "stop it before starting another" in err, err  # one gateway per data folder
        later = build_pump(example, signer, tmp_path / "later.mlpkg", "1.1.0")
        await _push(client, later.path)  # after the backup: in the package store, not in the backup

    settings.db_path.unlink()
    err = await _refused(settings)
    readme.assert_documented(err, "is missing, but its package store holds")
    assert "holds 2 package(s)" in err

    code, out, err = await run_modelline(
        "gateway", "restore", "--data-dir", str(settings.data_dir), "--from", str(backup)
    )
    assert code == 0, err
    assert out.splitlines()[-1] == f"restored {backup} into {settings.db_path}"
    stored_later = settings.packages_dir / f"{later.sha256}.mlpkg"
    assert f"1 package(s) in {settings.packages_dir} are newer than this backup" in out
    assert f"modelline push {stored_later} --gateway URL" in out
    assert backup.exists()  # the backup stays a backup
    digest = hashlib.sha256(package.read_bytes()).hexdigest()
    async with _gateway_process(settings) as url:
        assert await _served(url) == ({"pump-health 1.0.0": digest}, {"press-7"})
        code, _, err = await run_modelline("push", str(stored_later), "--gateway", url)  # as the restore says
        assert code == 0, err
        assert (await _served(url))[0] == {"pump-health 1.0.0": digest, "pump-health 1.1.0": later.sha256}

    # a second restore keeps the database it replaces
    code, out, err = await run_modelline(
        "gateway", "restore", "--data-dir", str(settings.data_dir), "--from", str(backup), "--json"
    )
    assert code == 0, err
    aside = Path(json.loads(out)["kept_aside"])
    assert aside.parent == settings.data_dir and aside.name.startswith("gateway.sqlite3.replaced-")
    assert files.problem(aside) is None


@pytest.mark.timeout(120)
async def test_scheduled_backups_are_made_and_pruned(tmp_path: Path, signer: Signer, example: Path) -> None:
    backups = tmp_path / "elsewhere"
    settings = _settings(tmp_path / "gateway", signer, backup_interval_s=1, backup_keep=2, backup_dir=backups)
    seen: set[str] = set()
    async with Gateway(settings), Client(settings.endpoint) as client:
        await _push(client, build_pump(example, signer, tmp_path / "pump.mlpkg").path)

        async def four_made() -> bool:
            seen.update(p.name for p in files.backups(backups))
            return len(seen) >= 4

        await wait_for(four_made, timeout=60, what="four scheduled backups")
    kept = files.backups(backups)
    seen.update(p.name for p in kept)  # a backup may have been made while the gateway stopped
    assert [p.name for p in kept] == sorted(seen)[-len(kept) :] and len(kept) == 2  # the newest two
    assert [p.name for p in backups.iterdir()] != [] and not list(backups.glob(".*"))  # no temporary left
    for path in kept:
        assert files.problem(path) is None
        with closing(sqlite3.connect(path)) as db:
            assert db.execute("SELECT name, version FROM model_versions").fetchall() == [("pump-health", "1.0.0")]
    # the Model Monitor's database is not backed up with it (README: "Retention and backups")
    assert settings.monitor_db_path.exists() and not [p for p in backups.iterdir() if "monitor" in p.name]


@pytest.mark.timeout(240)
async def test_recover_rebuilds_every_version_from_the_package_store(
    tmp_path: Path, signer: Signer, other_signer: Signer, example: Path
) -> None:
    settings = _settings(tmp_path / "gateway", signer)
    packages = [build_pump(example, signer, tmp_path / f"{v}.mlpkg", v).path for v in ("1.0.0", "1.1.0", "2.0.0")]
    async with Gateway(settings), Client(settings.endpoint) as client:
        for package in packages:
            await _push(client, package)
        await _register(client, "press-7", "opc.tcp://127.0.0.1:1/edge/")
        before, _ = await _served(settings.endpoint)
        code, _, err = await run_modelline("gateway", "recover", "--data-dir", str(settings.data_dir))
        assert code == 1 and "stop it before recovering its database" in err, err

    code, _, err = await run_modelline(
        "gateway", "recover", "--data-dir", str(settings.data_dir), "--trust", str(signer.trust_dir)
    )
    assert code == 2 and "is healthy" in err and "--force" in err, err  # a healthy database is not thrown away
    monitor_db = settings.monitor_db_path.stat()  # the Model Monitor's database is none of recover's business

    settings.db_path.unlink()
    await _refused(settings)
    code, _, err = await run_modelline(
        "gateway", "recover", "--data-dir", str(settings.data_dir), "--trust", str(other_signer.trust_dir)
    )
    assert code == 2 and "verified against the trust store" in err and "check --trust" in err, err
    assert not settings.db_path.exists()  # nothing written that would start empty
    # a package this gateway does not trust, put into the store by hand: reported, left in place
    foreign = build_pump(example, other_signer, tmp_path / "foreign.mlpkg", "3.0.0")
    stray = settings.packages_dir / f"{foreign.sha256}.mlpkg"
    stray.write_bytes(foreign.path.read_bytes())
    code, out, err = await run_modelline(
        "gateway", "recover", "--data-dir", str(settings.data_dir), "--trust", str(signer.trust_dir), "--json"
    )
    assert code == 0, err
    report = json.loads(out)
    assert sorted(r["version"] for r in report["recovered"]) == ["1.0.0", "1.1.0", "2.0.0"]
    assert report["failed"] == [{"file": str(stray), "reason": report["failed"][0]["reason"]}]
    assert "not in the trust store" in report["failed"][0]["reason"]
    assert report["devices_recovered"] is False and report["kept_aside"] is None
    assert stray.exists()
    assert (settings.monitor_db_path.stat().st_ino, settings.monitor_db_path.stat().st_size) == (
        monitor_db.st_ino,
        monitor_db.st_size,
    )

    async with _gateway_process(settings) as url:
        after, devices = await _served(url)
    assert after == before and len(after) == 3
    assert devices == set()  # devices are not in packages; edge nodes register again

    # a damaged database is kept aside, never deleted; the human output ends in one summary line
    settings.db_path.write_bytes(os.urandom(8192))
    code, out, err = await run_modelline(
        "gateway", "recover", "--data-dir", str(settings.data_dir), "--trust", str(signer.trust_dir)
    )
    assert code == 0, err
    assert "devices and deployments cannot be recovered from packages" in out
    assert out.splitlines()[-1] == (
        f"recovered 3 model version(s) from 4 package(s) into {settings.db_path}; "
        "1 package(s) failed verification and were left in place"
    )
    (aside,) = settings.data_dir.glob("gateway.sqlite3.damaged-*")
    assert len(aside.read_bytes()) == 8192 and files.problem(settings.db_path) is None


@pytest.mark.timeout(120)
async def test_a_damaged_database_is_refused_with_one_line(tmp_path: Path, signer: Signer) -> None:
    settings = _settings(tmp_path / "gateway", signer)
    async with Gateway(settings):  # a fresh folder starts empty, as before
        pass
    good = settings.db_path.read_bytes()

    settings.db_path.write_bytes(os.urandom(64 << 10))
    err = await _refused(settings)
    readme.assert_documented(err, "is damaged (")
    assert "(not a SQLite database)" in err

    # a real SQLite file with a damaged page: PRAGMA quick_check (or SQLite itself) finds it
    with closing(sqlite3.connect(settings.db_path.with_name("big.sqlite3"))) as db:
        db.execute("CREATE TABLE t (x TEXT)")
        db.executemany("INSERT INTO t VALUES (?)", [("x" * 500,) for _ in range(400)])
        db.commit()
    damaged = bytearray(settings.db_path.with_name("big.sqlite3").read_bytes())
    damaged[4096 * 3 : 4096 * 3 + 200] = os.urandom(200)
    settings.db_path.write_bytes(bytes(damaged))
    err = await _refused(settings)
    assert "is damaged (" in err and "not a SQLite database" not in err

    settings.db_path.write_bytes(good)
    async with Gateway(settings):  # the good one starts again
        pass
