"""Rollouts that survive a SIGKILL: the gateway or the edge node killed at each step and started again.

The killed part runs as a real `modelline gateway` or `modelline edge` process on its own data folder,
killed with SIGKILL (no clean-up of any kind) and started again on the same folder. The gateway reaches
the edge node through a fault proxy (tests/faultproxy.py), which holds a step in mid-flight where a kill
must land inside it (a transfer, an install whose answer is not yet back). Each test checks the end
against what the device really has: its slot state, not only what the gateway says.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import onnx
import pytest
from asyncua import Node, ua
from onnx import numpy_helper

from edge_node.app import EdgeNode
from edge_node.slots.slot import ModelSlot
from edge_node.slots.store import SlotState
from gateway.app import Gateway
from nodesets.ids import DeploymentState, InstallationState, PipelineState
from sdk.file_client import upload
from sdk.package.build import build_package
from sdk.package.spec import PackageSpec
from tests.conftest import Signer
from tests.edge_harness import HEALTHY, SimulatedPlc, edge_settings, running_plc, wait_for
from tests.faultproxy import FaultProxy
from tests.opcua_servers import free_port
from tests.processes import ServerProcess
from tests.tls import Client, GatewaySettings

pytestmark = pytest.mark.e2e

ML = "http://modelline.io/UA/"
PADDING = 1 << 20  # float32 values: 4 MB more per package, so that a transfer has chunks to stop between
BAD_SENSOR = ua.StatusCodes.BadSensorFailure


def _padded_pump(example: Path, signer: Signer, out: Path, version: str) -> Path:
    """The pump health model with 4 MB of weights it does not use (incompressible, like real weights)."""
    model = onnx.load(str(example / "model.onnx"))
    pad = np.random.default_rng(1).random(PADDING, dtype=np.float32)
    model.graph.initializer.append(numpy_helper.from_array(pad, "pad"))
    onnx.save(model, out.with_suffix(".onnx"))
    return build_package(
        out.with_suffix(".onnx"),
        out,
        name="pump-health",
        version=version,
        spec=PackageSpec.load(example / "spec.toml"),
        private_key=signer.private_key,
    ).path


def _env(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELLINE_") or k == "MODELLINE_CACHE_DIR"}
    return env | settings


@asynccontextmanager
async def _killed_at_the_end(*processes: ServerProcess) -> AsyncIterator[None]:
    """Every process is stopped (killed if it must be) whatever happens, and checked gone."""
    try:
        yield
    finally:
        for process in processes:
            await process.kill()
        assert not any(p.running for p in processes)


async def _deployment(client: Client, deployment_id: str) -> dict[str, Any]:
    ml = await client.get_namespace_index(ML)
    node = await client.nodes.objects.get_child([f"{ml}:ModelManager", f"{ml}:Deployments", f"1:{deployment_id}"])
    values = {name: await (await node.get_child(f"{ml}:{name}")).read_value() for name in ("State", "LastError")}
    values["State"] = DeploymentState(values["State"])
    return values


async def _deploy(client: Client, version: str, targets: list[str], **options: Any) -> str:
    ml = await client.get_namespace_index(ML)
    manager = await client.nodes.objects.get_child(f"{ml}:ModelManager")
    return str(
        await manager.call_method(
            f"{ml}:Deploy",
            ua.Variant("pump-health", ua.VariantType.String),
            ua.Variant(version, ua.VariantType.String),
            ua.Variant(targets, ua.VariantType.String),
            ua.Variant(json.dumps(options), ua.VariantType.String),
        )
    )


# --- the gateway killed ------------------------------------------------------------------------


DEVICES = ("edge-a", "edge-b")


@dataclass
class KilledGateway:
    """A gateway process; in-process edge nodes, each reached through a fault proxy; a PLC for their inputs.

    A test holds edge-a's step in mid-flight; edge-b goes its own pace, so a kill finds it at any step."""

    gateway: ServerProcess
    url: str
    edges: dict[str, EdgeNode]
    proxies: dict[str, FaultProxy]
    plc: SimulatedPlc
    package: Path
    sha256: str

    @property
    def edge(self) -> EdgeNode:
        return self.edges["edge-a"]

    @property
    def proxy(self) -> FaultProxy:
        return self.proxies["edge-a"]

    @property
    def slot(self) -> ModelSlot:
        return self.edge.slots["main"]

    @property
    def slots(self) -> list[ModelSlot]:
        return [edge.slots["main"] for edge in self.edges.values()]

    async def deploy(self, version: str = "1.0.0", **options: Any) -> str:
        binding = self.plc.binding(mode="periodic", interval_ms=100)
        async with Client(self.url) as client:
            return await _deploy(client, version, list(self.edges), binding=binding, **options)

    async def rollback(self, deployment_id: str) -> str:
        async with Client(self.url) as client:
            ml = await client.get_namespace_index(ML)
            manager = await client.nodes.objects.get_child(f"{ml}:ModelManager")
            return str(
                await manager.call_method(
                    f"{ml}:Rollback",
                    ua.Variant(deployment_id, ua.VariantType.String),
                    ua.Variant("", ua.VariantType.String),
                )
            )

    async def state(self, deployment_id: str) -> DeploymentState:
        try:
            async with Client(self.url, timeout=2) as client:
                return (await _deployment(client, deployment_id))["State"]
        except (OSError, TimeoutError, ua.UaError):
            return DeploymentState.PENDING  # not answering (yet): nothing to learn

    async def settled(self, deployment_id: str) -> dict[str, Any]:
        async def final() -> dict[str, Any] | None:
            async with Client(self.url) as client:
                values = await _deployment(client, deployment_id)
            return values if values["State"] in (DeploymentState.ACTIVE, DeploymentState.FAILED) else None

        return await wait_for(final, timeout=90, what=f"{deployment_id} to finish")

    async def kill_and_restart(self, before_restart: Any = None) -> None:
        await self.gateway.kill()
        for proxy in self.proxies.values():
            proxy.blackhole = False
            proxy.reset()  # what the dead gateway left open
        if before_restart is not None:
            await before_restart()
        await self.gateway.start(self.url)

    def on_package(self) -> bool:
        """Every device serves the deployed package, confirmed."""
        return all(
            slot.state.current is not None
            and slot.state.current.sha256 == self.sha256
            and not slot.awaiting_confirmation
            for slot in self.slots
        )

    async def no_transfer_files(self) -> bool:
        return not [
            p
            for edge in self.edges.values()
            for p in (edge.settings.data_dir / "slots").rglob("*")
            if "transfers" in p.parts and p.is_file()
        ]

    async def all_confirming(self, deployment_id: str) -> None:
        """Wait until every target waits in Confirming (for a Good prediction the inputs do not allow)."""

        async def confirming() -> bool:
            return self.targets(deployment_id) == dict.fromkeys(self.edges, DeploymentState.CONFIRMING)

        await wait_for(confirming, timeout=60, what=f"every target of {deployment_id} to be Confirming")

    async def reverted(self) -> bool:
        """Every device reverted to what it had before: no model."""
        return all(slot.state.current is None and not slot.awaiting_confirmation for slot in self.slots)

    def targets(self, deployment_id: str) -> dict[str, DeploymentState]:
        """Each target's stored state."""
        return _target_states(self.gateway.log.parent / "gateway" / "gateway.sqlite3", deployment_id)

    async def assert_truthful(self, deployment_id: str, expected: DeploymentState) -> None:
        """Each target's stored state, and the version the gateway shows per device, are what the devices have."""
        assert self.targets(deployment_id) == dict.fromkeys(self.edges, expected)

        async def shown() -> bool:
            async with Client(self.url) as client:
                ml = await client.get_namespace_index(ML)
                devices = await client.nodes.objects.get_child([f"{ml}:ModelManager", f"{ml}:Devices"])
                for device, edge in self.edges.items():
                    node = await devices.get_child([f"1:{device}", f"{ml}:ActiveVersion"])
                    current = edge.slots["main"].state.current
                    if await node.read_value() != (current.version if current else ""):
                        return False
            return True

        await wait_for(shown, what="the gateway to show the version each device serves")


def _target_states(database: Path, deployment_id: str) -> dict[str, DeploymentState]:
    """Each target's state as the gateway's database keeps it (read-only: the gateway may be running)."""
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
        rows = db.execute(
            "SELECT device_id, state FROM deployment_targets WHERE deployment_id = ?", (deployment_id,)
        ).fetchall()
    return {device: DeploymentState.from_label(state) for device, state in rows}


@asynccontextmanager
async def gateway_process(
    tmp_path: Path, signer: Signer, example: Path, versions: tuple[str, ...] = ("1.0.0",)
) -> AsyncIterator[KilledGateway]:
    packages = [_padded_pump(example, signer, tmp_path / f"pump-health-{v}.mlpkg", v) for v in versions]
    package = packages[0]
    url = f"opc.tcp://127.0.0.1:{free_port()}/gateway/"
    argv = ["gateway", "--endpoint", url, "--data-dir", str(tmp_path / "gateway"), "--trust", str(signer.trust_dir)]
    gateway = ServerProcess(
        "gateway", argv, tmp_path / "gateway.log", _env(MODELLINE_GATEWAY_ANONYMOUS_ROLE="Engineer")
    )
    async with AsyncExitStack() as stack:
        plc = await stack.enter_async_context(running_plc())
        await plc.write_all(HEALTHY)
        edges: dict[str, EdgeNode] = {}
        proxies: dict[str, FaultProxy] = {}
        for device in DEVICES:
            settings = edge_settings(tmp_path / device, signer.trust_dir, device_id=device)
            edges[device] = await stack.enter_async_context(EdgeNode(settings))
            proxies[device] = await FaultProxy(urlparse(edges[device].url).port or 0).start()
            stack.push_async_callback(proxies[device].stop)
        await stack.enter_async_context(_killed_at_the_end(gateway))
        await gateway.start(url)
        async with Client(url) as client:
            ml = await client.get_namespace_index(ML)
            manager = await client.nodes.objects.get_child(f"{ml}:ModelManager")
            for stored in packages:
                await upload(client, await manager.get_child(f"{ml}:Upload"), stored.read_bytes(), ua.Variant())
            for device, proxy in proxies.items():
                await manager.call_method(
                    f"{ml}:RegisterDevice",
                    ua.Variant(device, ua.VariantType.String),
                    ua.Variant(proxy.url("/edge/"), ua.VariantType.String),
                )
        sha256 = hashlib.sha256(package.read_bytes()).hexdigest()
        yield KilledGateway(gateway, url, edges, proxies, plc, package, sha256)


async def _inputs_bad(plc: SimulatedPlc) -> None:
    for feature, value in HEALTHY.items():
        await plc.write(feature, value, status=BAD_SENSOR)


@pytest.mark.timeout(120)
async def test_a_gateway_killed_while_transferring_resumes_and_the_device_ends_on_the_version(
    tmp_path: Path, signer: Signer, example: Path
) -> None:
    async with gateway_process(tmp_path, signer, example) as plant:
        plant.proxy.blackhole_after(plant.package.stat().st_size // 2)  # edge-a's transfer held half-way
        deployment = await plant.deploy(confirmation_timeout_s=60)
        await wait_for(lambda: _true(plant.proxy.blackhole), what="the transfer to be held half-way")
        assert plant.targets(deployment)["edge-a"] is DeploymentState.TRANSFERRING
        await plant.kill_and_restart()
        values = await plant.settled(deployment)
        assert values["State"] is DeploymentState.ACTIVE, values["LastError"]
        assert plant.on_package()
        await plant.assert_truthful(deployment, DeploymentState.ACTIVE)
        await wait_for(plant.no_transfer_files, what="the abandoned transfer's file to go")


@pytest.mark.timeout(120)
async def test_a_gateway_killed_while_installing_resumes_and_confirms_after_a_health_check(
    tmp_path: Path, signer: Signer, example: Path
) -> None:
    async with gateway_process(tmp_path, signer, example) as plant:
        seen: list[InstallationState] = []

        async def hold_the_answer(slot: ModelSlot) -> None:
            # The install has begun on the device: its answer never reaches the gateway, which stays Installing.
            if not seen and slot.install_state is InstallationState.INSTALLING:
                seen.append(slot.install_state)
                plant.proxy.blackhole = True

        plant.slot.listen(hold_the_answer)
        deployment = await plant.deploy(confirmation_timeout_s=60)
        await wait_for(lambda: _true(bool(seen)), what="the install to begin")
        assert plant.targets(deployment)["edge-a"] is DeploymentState.INSTALLING
        await plant.kill_and_restart()
        values = await plant.settled(deployment)
        assert values["State"] is DeploymentState.ACTIVE, values["LastError"]
        assert plant.on_package()
        await plant.assert_truthful(deployment, DeploymentState.ACTIVE)


@pytest.mark.timeout(120)
async def test_a_gateway_killed_while_confirming_confirms_only_after_a_fresh_health_check(
    tmp_path: Path, signer: Signer, example: Path
) -> None:
    async with gateway_process(tmp_path, signer, example) as plant:
        await _inputs_bad(plant.plc)  # no Good prediction: the gateway waits in Confirming
        deployment = await plant.deploy(confirmation_timeout_s=60, health_check_s=60)
        await plant.all_confirming(deployment)
        assert await plant.state(deployment) is DeploymentState.CONFIRMING  # as clients see it
        await plant.gateway.kill()
        assert all(slot.awaiting_confirmation for slot in plant.slots)  # the devices still wait for Confirm

        async def good_inputs() -> None:
            await plant.plc.write_all(HEALTHY)

        await plant.kill_and_restart(before_restart=good_inputs)
        values = await plant.settled(deployment)
        assert values["State"] is DeploymentState.ACTIVE, values["LastError"]
        assert plant.on_package()
        await plant.assert_truthful(deployment, DeploymentState.ACTIVE)


@pytest.mark.timeout(120)
async def test_a_gateway_killed_while_confirming_reports_the_revert_it_finds(
    tmp_path: Path, signer: Signer, example: Path
) -> None:
    async with gateway_process(tmp_path, signer, example) as plant:
        await _inputs_bad(plant.plc)
        deployment = await plant.deploy(confirmation_timeout_s=3, health_check_s=60)
        await plant.all_confirming(deployment)
        await plant.gateway.kill()
        await plant.kill_and_restart(before_restart=lambda: wait_for(plant.reverted, what="the devices to revert"))
        values = await plant.settled(deployment)
        assert values["State"] is DeploymentState.FAILED
        assert values["LastError"].startswith(
            "wave 1, device edge-a: the device reverted to no model before the install was confirmed (device: "
        ), values["LastError"]
        assert "not confirmed within 3 s; no fallback: the slot serves no model)" in values["LastError"]
        assert await plant.reverted()  # what the devices really have
        await plant.assert_truthful(deployment, DeploymentState.FAILED)


@pytest.mark.timeout(120)
async def test_a_gateway_restarted_while_confirming_does_not_confirm_on_a_good_prediction_from_before(
    tmp_path: Path, signer: Signer, example: Path
) -> None:
    async with gateway_process(tmp_path, signer, example) as plant:
        await _inputs_bad(plant.plc)
        deployment = await plant.deploy(confirmation_timeout_s=25, health_check_s=8)
        await plant.all_confirming(deployment)
        await plant.gateway.kill()
        # While the gateway is down the new model makes a Good prediction, then only Bad ones: its newest
        # Good prediction names the deployed configuration, but the device is not healthy now.
        pipelines = [slot.pipeline for slot in plant.slots]
        await plant.plc.write_all(HEALTHY)

        async def good_once() -> bool:
            return all(
                p.status.configuration and p.status.good_configuration == p.status.configuration for p in pipelines
            )

        await wait_for(good_once, what="a Good prediction of the new model")
        await _inputs_bad(plant.plc)

        async def bad_since() -> bool:
            return all(p.status.state is PipelineState.DEGRADED for p in pipelines)

        await wait_for(bad_since, what="Bad predictions")
        await plant.kill_and_restart()
        values = await plant.settled(deployment)
        assert values["State"] is DeploymentState.FAILED
        assert "no healthy predictions within 8 s of the install (pipeline main: Degraded)" in values["LastError"]
        assert all(slot.awaiting_confirmation for slot in plant.slots)  # never confirmed: they revert by themselves
        await wait_for(plant.reverted, timeout=30, what="the devices to revert")
        await plant.assert_truthful(deployment, DeploymentState.FAILED)


@pytest.mark.timeout(120)
async def test_a_gateway_killed_while_a_rollback_installs_does_not_swap_back_when_resumed(
    tmp_path: Path, signer: Signer, example: Path
) -> None:
    async with gateway_process(tmp_path, signer, example, versions=("1.0.0", "1.1.0")) as plant:
        for version in ("1.0.0", "1.1.0"):
            values = await plant.settled(await plant.deploy(version, confirmation_timeout_s=60))
            assert values["State"] is DeploymentState.ACTIVE, values["LastError"]
        swapped: list[str] = []

        async def hold_the_answer(slot: ModelSlot) -> None:
            # The rollback's install is done on edge-a (1.0.0 Current again, 1.1.0 its Fallback), but the
            # answer never reaches the gateway, which is killed with the target still Installing.
            current = slot.state.current
            if not swapped and current is not None and current.version == "1.0.0":
                swapped.append(current.version)
                plant.proxy.blackhole = True

        plant.slot.listen(hold_the_answer)
        rollback = await plant.rollback("deploy-0002")
        await wait_for(lambda: _true(bool(swapped)), what="edge-a to roll back")
        assert plant.targets(rollback)["edge-a"] is DeploymentState.INSTALLING
        await plant.kill_and_restart()
        values = await plant.settled(rollback)
        assert values["State"] is DeploymentState.ACTIVE, values["LastError"]
        for device, edge in plant.edges.items():
            state = edge.slots["main"].state
            assert state.current is not None and state.fallback is not None
            assert (state.current.version, state.fallback.version) == ("1.0.0", "1.1.0"), device
        await plant.assert_truthful(rollback, DeploymentState.ACTIVE)


@pytest.mark.timeout(120)
async def test_an_edge_node_killed_while_confirming_is_installed_again_once_it_returns(
    tmp_path: Path, signer: Signer, example: Path
) -> None:
    async with running_plc() as plc, edge_process(tmp_path, signer, example) as plant:
        await _inputs_bad(plc)  # no Good prediction: the gateway waits in Confirming
        deployment = await plant.deploy(binding=plc.binding(mode="periodic", interval_ms=100), health_check_s=60)

        async def confirming() -> bool:
            targets = await plant.gateway.store.targets(deployment)
            return [t.state for t in targets] == [DeploymentState.CONFIRMING]

        await wait_for(confirming, timeout=60, what="the target to be Confirming")
        await plant.edge.kill()
        assert plant.slot_state().awaiting_confirmation  # killed before Confirm: it reverts when it starts
        await plc.write_all(HEALTHY)
        await plant.edge.start(plant.url)
        record = await plant.settled(deployment)
        assert record.state is DeploymentState.ACTIVE, record.last_error
        slot = plant.slot_state()
        assert slot.current is not None and slot.current.sha256 == plant.sha256
        assert not slot.awaiting_confirmation and slot.pending is None
        assert plant.transfer_files() == []


async def _true(value: bool) -> bool:
    return value


# --- the edge node killed ----------------------------------------------------------------------


@dataclass
class KilledEdge:
    """An edge node process reached through a fault proxy, and an in-process gateway deploying to it."""

    edge: ServerProcess
    url: str
    data_dir: Path
    gateway: Gateway
    proxy: FaultProxy
    package: Path
    sha256: str

    async def deploy(self, **options: Any) -> str:
        # No binding unless given: the health check is a short look at DeviceHealth; retried long enough
        # for any restart.
        async with Client(self.gateway.url) as client:
            return await _deploy(client, "1.0.0", ["edge-a"], confirmation_timeout_s=60, retry_for_s=120, **options)

    async def settled(self, deployment_id: str) -> Any:
        async def final() -> Any:
            record = next(r for r in await self.gateway.store.deployments() if r.id == deployment_id)
            return record if record.state in (DeploymentState.ACTIVE, DeploymentState.FAILED) else None

        return await wait_for(final, timeout=90, what=f"{deployment_id} to finish")

    def slot_state(self) -> SlotState:
        """What the device really has, from its own state file."""
        return SlotState.model_validate_json((self.data_dir / "slots" / "main" / "state.json").read_bytes())

    def transfer_files(self) -> list[Path]:
        return [p for p in (self.data_dir / "slots").rglob("*") if "transfers" in p.parts and p.is_file()]


@asynccontextmanager
async def edge_process(tmp_path: Path, signer: Signer, example: Path) -> AsyncIterator[KilledEdge]:
    package = _padded_pump(example, signer, tmp_path / "pump-health-1.0.0.mlpkg", "1.0.0")
    url = f"opc.tcp://127.0.0.1:{free_port()}/edge/"
    data_dir = tmp_path / "edge"
    argv = ["edge", "--endpoint", url, "--data-dir", str(data_dir), "--trust", str(signer.trust_dir)]
    argv += ["--device-id", "edge-a"]
    edge = ServerProcess("edge", argv, tmp_path / "edge.log", _env(MODELLINE_EDGE_ANONYMOUS_ROLE="Engineer"))
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(_killed_at_the_end(edge))
        await edge.start(url)
        proxy = await FaultProxy(urlparse(url).port or 0).start()
        stack.push_async_callback(proxy.stop)
        settings = GatewaySettings(
            endpoint=f"opc.tcp://127.0.0.1:{free_port()}/gateway/",
            data_dir=tmp_path / "gateway",
            trust_dir=signer.trust_dir,
            anonymous_role="Engineer",
        )
        gateway = await stack.enter_async_context(Gateway(settings))
        async with Client(gateway.url) as client:
            ml = await client.get_namespace_index(ML)
            manager = await client.nodes.objects.get_child(f"{ml}:ModelManager")
            await upload(client, await manager.get_child(f"{ml}:Upload"), package.read_bytes(), ua.Variant())
            await manager.call_method(
                f"{ml}:RegisterDevice",
                ua.Variant("edge-a", ua.VariantType.String),
                ua.Variant(proxy.url("/edge/"), ua.VariantType.String),
            )
        await wait_for(lambda: _true(gateway.devices.get("edge-a").online), what="the device link")
        sha256 = hashlib.sha256(package.read_bytes()).hexdigest()
        yield KilledEdge(edge, url, data_dir, gateway, proxy, package, sha256)


@pytest.mark.timeout(120)
async def test_an_edge_node_killed_during_the_transfer_gets_the_version_once_it_returns(
    tmp_path: Path, signer: Signer, example: Path
) -> None:
    async with edge_process(tmp_path, signer, example) as plant:
        plant.proxy.blackhole_after(plant.package.stat().st_size // 2)  # the transfer held half-way
        deployment = await plant.deploy()
        await wait_for(lambda: _true(plant.proxy.blackhole), what="the transfer to be held half-way")
        assert plant.transfer_files(), "no transfer under way on the device"
        await plant.edge.kill()
        assert [t.state for t in await plant.gateway.store.targets(deployment)] == [DeploymentState.TRANSFERRING]
        plant.proxy.blackhole = False
        plant.proxy.reset()
        await plant.edge.start(plant.url)
        record = await plant.settled(deployment)
        assert record.state is DeploymentState.ACTIVE, record.last_error
        state = plant.slot_state()
        assert state.current is not None and state.current.sha256 == plant.sha256
        assert not state.awaiting_confirmation and state.pending is None
        assert plant.transfer_files() == []


@pytest.mark.timeout(120)
async def test_an_edge_node_killed_during_the_install_gets_the_version_once_it_returns(
    tmp_path: Path, signer: Signer, example: Path
) -> None:
    async with edge_process(tmp_path, signer, example) as plant:
        killed: list[str] = []
        edge = plant.edge

        class KillOnInstalling:
            def datachange_notification(self, node: Node, value: Any, data: Any) -> None:
                if str(getattr(value, "Text", value)) == InstallationState.INSTALLING.label and not killed:
                    assert edge.proc is not None
                    plant.proxy.blackhole = True  # the gateway cannot hear the install end and move on
                    edge.proc.kill()  # at once, in the middle of loading and checking the new model
                    killed.append("installing")

        async with Client(plant.url) as watcher:
            di = await watcher.get_namespace_index("http://opcfoundation.org/UA/DI/")
            state = await watcher.nodes.objects.get_child(
                [
                    f"{di}:DeviceSet",
                    "1:edge-a",
                    "1:main",
                    f"{di}:SoftwareUpdate",
                    f"{di}:Installation",
                    "0:CurrentState",
                ]
            )
            subscription = await watcher.create_subscription(0, KillOnInstalling())
            await subscription.subscribe_data_change(state)
            deployment = await plant.deploy()
            await wait_for(lambda: _true(bool(killed)), timeout=60, what="the install to begin")
        await edge.kill()
        assert [t.state for t in await plant.gateway.store.targets(deployment)] == [DeploymentState.INSTALLING]
        plant.proxy.blackhole = False
        plant.proxy.reset()
        await edge.start(plant.url)
        record = await plant.settled(deployment)
        assert record.state is DeploymentState.ACTIVE, record.last_error
        slot = plant.slot_state()
        assert slot.current is not None and slot.current.sha256 == plant.sha256
        assert not slot.awaiting_confirmation and slot.pending is None
        assert plant.transfer_files() == []
