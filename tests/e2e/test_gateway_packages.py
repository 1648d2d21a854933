"""Packages in and out of the Model Manager over OPC UA file transfer."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from asyncua import ua

from gateway.app import Gateway
from sdk.file_client import download, upload
from sdk.package.build import build_package
from tests.conftest import Signer, read_members, write_members
from tests.edge_harness import build_pump
from tests.malicious import variants
from tests.opcua_servers import free_port
from tests.pki import Pki
from tests.processes import run_modelline
from tests.tls import Client, GatewaySettings

pytestmark = pytest.mark.e2e

ML = "http://modelline.io/UA/"


def _settings(tmp_path: Path, signer: Signer, **overrides: Any) -> GatewaySettings:
    values: dict[str, Any] = {
        "endpoint": f"opc.tcp://127.0.0.1:{free_port()}/gateway/",
        "data_dir": tmp_path / "gateway",
        "trust_dir": signer.trust_dir,
        "anonymous_role": "Engineer",
    }
    values.update(overrides)
    return GatewaySettings(**values)


@asynccontextmanager
async def _gateway(settings: GatewaySettings) -> AsyncIterator[tuple[Gateway, Client]]:
    async with Gateway(settings) as gateway, Client(gateway.url) as client:
        yield gateway, client


async def _manager(client: Client) -> tuple[Any, int]:
    ml = await client.get_namespace_index(ML)
    return await client.nodes.objects.get_child(f"{ml}:ModelManager"), ml


async def _push(client: Client, package: Path) -> None:
    manager, ml = await _manager(client)
    await upload(client, await manager.get_child(f"{ml}:Upload"), package.read_bytes(), ua.Variant())


async def _versions(client: Client) -> dict[str, dict[str, Any]]:
    manager, ml = await _manager(client)
    models = await manager.get_child(f"{ml}:Models")
    found: dict[str, dict[str, Any]] = {}
    for model in await models.get_children():
        name = (await model.read_browse_name()).Name
        for version in await model.get_children():
            if (await version.read_node_class()) != ua.NodeClass.Object:
                continue
            values = {}
            for var in ("Version", "Sha256", "Signer", "Inputs", "Outputs"):
                values[var] = await (await version.get_child(f"{ml}:{var}")).read_value()
            values["package"] = await version.get_child(f"{ml}:Package")
            found[f"{name} {(await version.read_browse_name()).Name}"] = values
    return found


@pytest.mark.timeout(120)
async def test_upload_stores_the_package_and_serves_it_back(tmp_path: Path, signer: Signer, example: Path) -> None:
    package = build_pump(example, signer, tmp_path / "pump.uadipkg").path
    digest = hashlib.sha256(package.read_bytes()).hexdigest()
    async with _gateway(_settings(tmp_path, signer)) as (gateway, client):
        await _push(client, package)
        versions = await _versions(client)
        assert set(versions) == {"pump-health 1.0.0"}
        v = versions["pump-health 1.0.0"]
        assert (v["Version"], v["Sha256"], v["Signer"]) == ("1.0.0", digest, signer.subject)
        assert "sensors.speed float32 [r/min] 0..3600" in v["Inputs"]
        assert v["Outputs"] == ["anomaly_score float32 0..1", "remaining_life float32 [h] 0.."]
        data = await download(client, v["package"])
        assert hashlib.sha256(data).hexdigest() == digest
        assert (gateway.settings.packages_dir / f"{digest}.mlpkg").read_bytes() == package.read_bytes()
        await _push(client, package)  # the same package again changes nothing
        assert set(await _versions(client)) == {"pump-health 1.0.0"}


@pytest.mark.timeout(120)
async def test_rejected_uploads_leave_no_trace(
    tmp_path: Path, signer: Signer, other_signer: Signer, example: Path
) -> None:
    package = build_pump(example, signer, tmp_path / "pump.uadipkg").path
    members = read_members(package)
    members["CONTENT/model.onnx"] = members["CONTENT/model.onnx"][:-1] + bytes([members["CONTENT/model.onnx"][-1] ^ 1])
    tampered = write_members(tmp_path / "tampered.uadipkg", list(members.items()))
    foreign = build_pump(example, other_signer, tmp_path / "foreign.uadipkg").path
    same_version = build_package(  # same name and version, other content
        example / "model.onnx",
        tmp_path / "again.uadipkg",
        name="pump-health",
        version="1.0.0",
        identity=signer.identity,
        description="retrained",
    )
    async with _gateway(_settings(tmp_path, signer)) as (gateway, client):
        manager, ml = await _manager(client)
        for bad, code in (
            (tampered, "BadSecurityChecksFailed"),
            (foreign, "BadCertificateUntrusted"),
            (tmp_path / "junk", "BadDecodingError"),
        ):
            if not bad.exists():
                bad.write_bytes(b"not a package")
            with pytest.raises(ua.UaStatusCodeError, match=code):
                await _push(client, bad)
            reason = await (await manager.get_child(f"{ml}:UploadError")).read_value()
            assert reason and str(gateway.settings.data_dir) not in reason and "upload-" not in reason, reason
        assert await _versions(client) == {}
        assert list(gateway.settings.packages_dir.iterdir()) == []
        assert list((gateway.settings.data_dir / "uploads").iterdir()) == []
        assert await gateway.store.model_versions() == []
        await _push(client, package)
        assert await (await manager.get_child(f"{ml}:UploadError")).read_value() == ""
        assert same_version.sha256 != hashlib.sha256(package.read_bytes()).hexdigest()
        with pytest.raises(ua.UaStatusCodeError, match="BadInvalidState"):
            await _push(client, same_version.path)  # a version cannot change
        assert len(list(gateway.settings.packages_dir.iterdir())) == 1


@pytest.mark.timeout(180)
async def test_every_hostile_variant_is_refused_at_push(tmp_path: Path, signer: Signer, example: Path) -> None:
    package = build_pump(example, signer, tmp_path / "pump.uadipkg").path
    async with _gateway(_settings(tmp_path, signer)) as (gateway, client):
        manager, ml = await _manager(client)
        for name, bad in variants(package, tmp_path).items():
            with pytest.raises(ua.UaStatusCodeError):
                await _push(client, bad)
            reason = await (await manager.get_child(f"{ml}:UploadError")).read_value()
            assert reason, name
        assert await _versions(client) == {}
        assert list(gateway.settings.packages_dir.iterdir()) == []


@pytest.mark.timeout(180)
async def test_push_checks_revocation_approval_and_still_takes_legacy_packages(
    tmp_path: Path, signer: Signer, example: Path
) -> None:
    """A revoked author is refused; with approval_trust_dir only approved packages are stored; .mlpkg still works."""
    from sdk.package.approve import approve_package

    pki, approvers = Pki(tmp_path, "Plant CA"), Pki(tmp_path, "Plant approvals")
    author, revoked = pki.issue("Model author"), pki.issue("Former author")
    pki.revoke(revoked.certificate)
    good = build_package(
        example / "model.onnx", tmp_path / "good.uadipkg", name="pump-health", version="1.0.0", identity=author
    )
    bad = build_package(
        example / "model.onnx", tmp_path / "bad.uadipkg", name="pump-health", version="1.1.0", identity=revoked
    )
    approved = tmp_path / "approved.uadipkg"
    approve_package(good.path, approvers.issue("OT security"), approved)
    legacy = build_pump(example, signer, tmp_path / "legacy.mlpkg", "0.9.0").path

    settings = _settings(tmp_path, signer, trust_dir=pki.folder, approval_trust_dir=approvers.folder)
    async with _gateway(settings) as (gateway, client):
        manager, ml = await _manager(client)
        for package, code, reason in (
            (bad.path, "BadCertificateRevoked", "CN=Former author"),
            (good.path, "BadCertificateUntrusted", "approval required and not given"),
        ):
            with pytest.raises(ua.UaStatusCodeError, match=code):
                await _push(client, package)
            assert reason in await (await manager.get_child(f"{ml}:UploadError")).read_value()
        await _push(client, approved)
        versions = await _versions(client)
        assert list(versions) == ["pump-health 1.0.0"]
        assert versions["pump-health 1.0.0"]["Signer"] == "CN=Model author"
        data = await download(client, versions["pump-health 1.0.0"]["package"])
        assert data == approved.read_bytes()  # stored and served unchanged, both signatures included

    async with _gateway(_settings(tmp_path / "legacy", signer)) as (gateway, client):
        await _push(client, legacy)  # deprecated, still accepted for one release
        assert list(await _versions(client)) == ["pump-health 0.9.0"]


@pytest.mark.timeout(120)
async def test_scheduler_jobs_run_late_rather_than_warn_and_skip(tmp_path: Path, signer: Signer) -> None:
    """A busy loop (first start, a large upload) delays the periodic jobs: they run once, late, without a warning."""
    async with _gateway(_settings(tmp_path, signer)) as (gateway, _):
        jobs = gateway.scheduler.get_jobs()
        assert jobs
        assert all(job.coalesce and job.misfire_grace_time is None for job in jobs), jobs


@pytest.mark.timeout(120)
async def test_restart_rebuilds_the_address_space_from_the_store(tmp_path: Path, signer: Signer, example: Path) -> None:
    settings = _settings(tmp_path, signer)
    async with _gateway(settings) as (_, client):
        for version in ("1.0.0", "1.1.0"):
            await _push(client, build_pump(example, signer, tmp_path / f"{version}.uadipkg", version).path)
    async with _gateway(settings) as (_, client):
        versions = await _versions(client)
        assert set(versions) == {"pump-health 1.0.0", "pump-health 1.1.0"}
        data = await download(client, versions["pump-health 1.1.0"]["package"])
        assert data == (tmp_path / "1.1.0.uadipkg").read_bytes()


@pytest.mark.timeout(120)
async def test_uploads_need_the_engineer_role(tmp_path: Path, signer: Signer, example: Path) -> None:
    package = build_pump(example, signer, tmp_path / "pump.uadipkg").path
    async with _gateway(_settings(tmp_path, signer, anonymous_role="Observer")) as (_, client):
        with pytest.raises(ua.UaStatusCodeError, match="BadUserAccessDenied"):
            await _push(client, package)
        manager, ml = await _manager(client)
        deploy = await manager.get_child(f"{ml}:Deploy")
        with pytest.raises(ua.UaStatusCodeError, match="BadUserAccessDenied"):  # deploying needs an Engineer too
            await manager.call_method(deploy.nodeid, "m", "1.0.0", ["edge-1"], "")


@pytest.mark.timeout(120)
async def test_push_command(
    tmp_path: Path, signer: Signer, other_signer: Signer, example: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import json

    run = partial(run_modelline, timeout=60)

    package = build_pump(example, signer, tmp_path / "pump.uadipkg").path
    foreign = build_pump(example, other_signer, tmp_path / "foreign.uadipkg").path
    members = read_members(package)
    members["CONTENT/model.onnx"] = members["CONTENT/model.onnx"][:-1] + bytes([members["CONTENT/model.onnx"][-1] ^ 1])
    tampered = write_members(tmp_path / "tampered.uadipkg", list(members.items()))
    async with _gateway(_settings(tmp_path, signer)) as (gateway, _):
        code, out, err = await run("push", str(package), "--gateway", gateway.url, "--json")
        assert code == 0, err
        assert json.loads(out)["version"] == "1.0.0"
        for refused in (foreign, tampered):  # the same one line as 'package verify' against the gateway's trust
            _, _, verify_err = await run("package", "verify", str(refused), "--trust", str(signer.trust_dir))
            caplog.clear()
            code, _, err = await run("push", str(refused), "--gateway", gateway.url)
            assert code == 3 and err == verify_err and err.count("\n") == 1, (err, verify_err)
            reason = err.removeprefix("modelline: package rejected: ").strip()
            warnings = [r for r in caplog.records if r.levelname == "WARNING" and reason in r.getMessage()]
            assert warnings, [r.getMessage() for r in caplog.records]
    async with _gateway(_settings(tmp_path / "observer", signer, anonymous_role="Observer")) as (gateway, _):
        code, _, err = await run("push", str(package), "--gateway", gateway.url)
        assert code == 2 and "log in as a user with the Engineer role" in err


@pytest.mark.timeout(120)
async def test_a_stopped_gateway_leaves_nothing_alive(tmp_path: Path, signer: Signer, example: Path) -> None:
    """Process-wide listeners (session ends) must not keep a stopped gateway's server and address space."""
    from sdk.opcua import sessions

    settings = _settings(tmp_path, signer)
    async with _gateway(settings) as (_, client):
        await _push(client, build_pump(example, signer, tmp_path / "pump.uadipkg").path)  # a version: a Package file
    listeners = len(sessions._listeners)
    for _ in range(3):
        async with _gateway(settings):
            pass
    # Each listener keeps its server and whole address space alive (about 13 MB a restart, seen in the soak).
    assert len(sessions._listeners) == listeners
