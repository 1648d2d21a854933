"""Inputs that would keep the gateway from starting again are refused, and bad stored rows do not stop it."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiosqlite
import pytest
from asyncua import Node, ua

from gateway.app import Gateway
from gateway.store.base import MAX_TARGETS
from nodesets.ids import DeploymentState
from sdk.file_client import upload
from sdk.package.build import build_package
from sdk.package.spec import PackageSpec
from tests.conftest import Signer
from tests.edge_harness import build_pump
from tests.opcua_servers import free_port
from tests.tls import Client, GatewaySettings

pytestmark = pytest.mark.e2e

ML = "http://modelline.io/UA/"
S = ua.VariantType.String


def _settings(tmp_path: Path, signer: Signer) -> GatewaySettings:
    return GatewaySettings(
        endpoint=f"opc.tcp://127.0.0.1:{free_port()}/gateway/",
        data_dir=tmp_path / "gateway",
        trust_dir=signer.trust_dir,
        anonymous_role="Engineer",
    )


class _Manager:
    def __init__(self, client: Client, manager: Node, ml: int) -> None:
        self.client, self.node, self.ml = client, manager, ml

    async def call(self, method: str, *args: ua.Variant) -> Any:
        return await self.node.call_method(f"{self.ml}:{method}", *args)

    async def refused(self, method: str, *args: ua.Variant) -> str:
        with pytest.raises(ua.UaStatusCodeError) as info:
            await self.call(method, *args)
        return type(info.value).__name__

    async def register(self, device: str, endpoint: str) -> None:
        await self.call("RegisterDevice", ua.Variant(device, S), ua.Variant(endpoint, S))

    async def push(self, package: Path) -> None:
        await upload(self.client, await self.node.get_child(f"{self.ml}:Upload"), package.read_bytes(), ua.Variant())

    async def children(self, *path: str) -> dict[str, Node]:
        folder = await self.node.get_child([f"{self.ml}:{p}" if ":" not in p else p for p in path])
        return {str((await c.read_browse_name()).Name): c for c in await folder.get_children()}

    async def value(self, node: Node, name: str) -> Any:
        return await (await node.get_child(f"{self.ml}:{name}")).read_value()


@asynccontextmanager
async def _running(settings: GatewaySettings) -> AsyncIterator[tuple[Gateway, _Manager]]:
    async with Gateway(settings) as gateway, Client(gateway.url) as client:
        ml = await client.get_namespace_index(ML)
        yield gateway, _Manager(client, await client.nodes.objects.get_child(f"{ml}:ModelManager"), ml)


def _nowhere() -> str:
    return f"opc.tcp://127.0.0.1:{free_port()}/edge/"  # nothing listens: the device stays Offline


@pytest.mark.timeout(120)
async def test_device_ids_and_endpoints_that_would_brick_are_refused_or_kept_apart(
    tmp_path: Path, signer: Signer
) -> None:
    settings = _settings(tmp_path, signer)
    async with _running(settings) as (gateway, m):
        await m.register("edge-a", _nowhere())
        await m.register("edge-a.State", _nowhere())  # its NodeId no longer meets edge-a's State variable
        for device, endpoint in (
            ("edge-b", "opc.tcp://::::/"),
            ("edge-b", "opc.tcp://127.0.0.1:0/"),
            ("edge-b", "opc.tcp://127.0.0.1:70000/"),
            ("edge-b", "http://127.0.0.1:4840/"),
            ("edge-b", "opc.tcp://" + "a" * 600 + ":4840/"),
            ("bad id", _nowhere()),
            ("edge-b\n", _nowhere()),
            ("x" * 65, _nowhere()),
            ("", _nowhere()),
        ):
            assert await m.refused("RegisterDevice", ua.Variant(device, S), ua.Variant(endpoint, S)) == (
                "BadInvalidArgument"
            ), (device, endpoint)
        devices = await m.children("Devices")
        assert sorted(devices) == ["edge-a", "edge-a.State"]
        assert await m.value(devices["edge-a"], "State") == 1  # edge-a's own State, not a device node
        assert sorted(d.id for d in await gateway.store.devices()) == ["edge-a", "edge-a.State"]
        assert gateway.store.unreadable() == []
    async with _running(settings) as (gateway, m):  # and the gateway starts again with both
        assert sorted(await m.children("Devices")) == ["edge-a", "edge-a.State"]


@pytest.mark.timeout(120)
async def test_packages_whose_names_would_share_a_node_id_are_both_kept(
    tmp_path: Path, signer: Signer, example: Path
) -> None:
    spec = PackageSpec.load(example / "spec.toml")

    def package(name: str, version: str) -> Path:
        out = tmp_path / f"{name}-{version}.mlpkg"
        build_package(
            example / "model.onnx", out, name=name, version=version, spec=spec, private_key=signer.private_key
        )
        return out

    settings = _settings(tmp_path, signer)
    async with _running(settings) as (_, m):
        await m.push(package("p", "1.0.0-x.1.2.3"))
        await m.push(package("p.1.0.0-x", "1.2.3"))
        models = await m.children("Models")
        assert sorted(models) == ["p", "p.1.0.0-x"]
    async with _running(settings) as (gateway, m):
        models = await m.children("Models")
        assert sorted(models) == ["p", "p.1.0.0-x"]
        assert "1.0.0-x.1.2.3" in {n for n, node in (await m.children("Models", "1:p")).items()}
        assert len(await gateway.store.model_versions()) == 2


@pytest.mark.timeout(120)
async def test_deploy_arguments_that_would_brick_are_refused_before_anything_is_stored(
    tmp_path: Path, signer: Signer, example: Path
) -> None:
    settings = _settings(tmp_path, signer)
    async with _running(settings) as (gateway, m):
        await m.push(build_pump(example, signer, tmp_path / "v1.mlpkg").path)
        await m.register("edge-a", _nowhere())
        await m.register("edge-b", _nowhere())
        now = datetime.now(UTC)

        def deploy(options: str, targets: list[str] | None = None, version: str = "1.0.0") -> tuple[ua.Variant, ...]:
            return (
                ua.Variant("pump-health", S),
                ua.Variant(version, S),
                ua.Variant(targets if targets is not None else ["edge-a", "edge-b"], S),
                ua.Variant(options, S),
            )

        for options, targets in (
            ('{"confirmation_timeout_s": 1e999}', None),
            ('{"confirmation_timeout_s": NaN}', None),
            ('{"health_check_s": -1}', None),
            ('{"waves": 3}', None),
            ('{"waves": 0}', None),
            ('{"waves": true}', None),
            ('{"slot": "../x"}', None),
            ('{"fallback": true}', None),  # only the gateway's own rollbacks are marked so
            (json.dumps({"start_at": (now + timedelta(days=3650)).isoformat()}), None),
            (json.dumps({"start_at": (now - timedelta(days=30)).isoformat()}), None),
            (json.dumps({"start_at": "2026-12-01T02:00:00"}), None),
            ("{}", []),
            ("{}", ["edge-a", "edge-a"]),
            ("{}", [f"edge-{i}" for i in range(MAX_TARGETS + 1)]),
            ("{}", ["bad id"]),
        ):
            code = await m.refused("Deploy", *deploy(options, targets))
            assert code == "BadInvalidArgument", (options, targets)
        assert await m.refused("Deploy", *deploy("{}", version="1.0")) == "BadInvalidArgument"
        assert await m.refused("Rollback", ua.Variant("x" * 100, S), ua.Variant("", S)) == "BadInvalidArgument"
        assert await gateway.store.deployment_ids() == []
        assert await m.children("Deployments") == {}
        waiting = str(await m.call("Deploy", *deploy('{"waves": 2, "confirmation_timeout_s": 5}')))
    async with _running(settings) as (gateway, m):  # restarts cleanly, the valid deployment still waiting
        deployments = await m.children("Deployments")
        assert list(deployments) == [waiting]
        assert DeploymentState(await m.value(deployments[waiting], "State")) is DeploymentState.PENDING
        assert gateway.store.unreadable() == []


async def _execute(db_path: Path, *statements: tuple[str, tuple[Any, ...]]) -> None:
    async with aiosqlite.connect(db_path) as db:
        for sql, params in statements:
            await db.execute(sql, params)
        await db.commit()


@pytest.mark.timeout(120)
async def test_gateway_starts_with_bad_rows_reports_them_and_serves_the_rest(
    tmp_path: Path, signer: Signer, example: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = _settings(tmp_path, signer)
    async with _running(settings) as (_, m):
        await m.push(build_pump(example, signer, tmp_path / "v1.mlpkg").path)
        await m.push(build_pump(example, signer, tmp_path / "v2.mlpkg", "2.0.0").path)
        await m.register("edge-a", _nowhere())
        args = (ua.Variant("pump-health", S), ua.Variant("1.0.0", S), ua.Variant(["edge-a"], S))
        good = str(await m.call("Deploy", *args, ua.Variant("{}", S)))
        bad = str(await m.call("Deploy", *args, ua.Variant("{}", S)))
    now = datetime.now(UTC).isoformat()
    await _execute(
        settings.db_path,
        ("UPDATE deployments SET options_json = ? WHERE id = ?", ('{"confirmation_timeout_s": null}', bad)),
        ("INSERT INTO devices VALUES (?, ?, ?, NULL)", ("bad id!", _nowhere(), now)),
        ("INSERT INTO devices VALUES (?, ?, ?, NULL)", ("edge-z", "opc.tcp://::::/", now)),
        ("UPDATE model_versions SET manifest_json = ? WHERE version = ?", ('{"name": "pump-health"}', "2.0.0")),
    )

    with caplog.at_level(logging.ERROR, logger="gateway"):
        async with _running(settings) as (gateway, m):
            # the good records are served
            assert sorted(await m.children("Models", "1:pump-health")) == ["1.0.0", "Description"]
            deployments = await m.children("Deployments")
            assert sorted(deployments) == [good, bad]
            assert DeploymentState(await m.value(deployments[good], "State")) is DeploymentState.PENDING
            # the bad ones are reported on their nodes
            assert DeploymentState(await m.value(deployments[bad], "State")) is DeploymentState.FAILED
            assert "stored record unreadable" in await m.value(deployments[bad], "LastError")
            devices = await m.children("Devices")
            assert sorted(devices) == ["edge-a", "edge-z"]  # 'bad id!' cannot be a node; the log names it
            state = await (await devices["edge-z"].get_child(f"{m.ml}:State")).read_data_value(
                raise_on_bad_status=False
            )
            assert state.StatusCode.name == "BadConfigurationError"
            # and the gateway still works
            await m.register("edge-b", _nowhere())
            assert "edge-b" in await m.children("Devices")
            unreadable = {(u.kind, u.key) for u in gateway.store.unreadable()}
            assert unreadable == {
                ("deployment", bad),
                ("device", "bad id!"),
                ("device", "edge-z"),
                ("model version", "pump-health 2.0.0"),
            }
    logged = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    for key in (bad, "'bad id!'", "'edge-z'", "pump-health 2.0.0"):
        assert any(key in line and "unreadable" in line for line in logged), key
