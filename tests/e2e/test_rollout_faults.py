"""Rollouts under faults: the link to the edge node reset or black-holed in the middle of a transfer.

The gateway reaches the edge node only through a fault proxy (tests/faultproxy.py); the package is a
few MB, so that a fault can land between its chunks or during CloseAndCommit.
"""

from __future__ import annotations

import json
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
from onnx import TensorProto, helper, numpy_helper

from edge_node.app import EdgeNode
from edge_node.slots.slot import ModelSlot
from gateway.app import Gateway
from nodesets.ids import DeploymentState
from sdk.file_client import upload
from sdk.package.build import build_package
from tests.conftest import Signer
from tests.edge_harness import edge_settings, wait_for
from tests.faultproxy import FaultProxy
from tests.opcua_servers import free_port
from tests.tls import Client, GatewaySettings

pytestmark = pytest.mark.e2e

ML = "http://modelline.io/UA/"
PADDING = 1 << 20  # float32 values: a 4 MB model, four transfer chunks of 1 MiB


def _padded_model(path: Path) -> Path:
    """y = 2x, carrying 4 MB of random weights it does not use (incompressible, like real weights)."""
    pad = numpy_helper.from_array(np.random.default_rng(1).random(PADDING, dtype=np.float32), "pad")
    two = numpy_helper.from_array(np.array([[2.0]], dtype=np.float32), "two")
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "two"], ["y"])],
        "padded",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1])],
        [two, pad],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


@dataclass
class Line:
    gateway: Gateway
    edge: EdgeNode
    proxy: FaultProxy
    manager: Node
    ml: int
    package: Path

    async def deploy(self, **options: Any) -> str:
        args = [
            ua.Variant("padded", ua.VariantType.String),
            ua.Variant("1.0.0", ua.VariantType.String),
            ua.Variant(["edge-a"], ua.VariantType.String),
            ua.Variant(json.dumps({"confirmation_timeout_s": 30, **options}), ua.VariantType.String),
        ]
        return str(await self.manager.call_method(f"{self.ml}:Deploy", *args))

    async def settled(self, deployment_id: str, within: float = 90) -> Any:
        async def final() -> Any:
            record = next(r for r in await self.gateway.store.deployments() if r.id == deployment_id)
            return record if record.state in (DeploymentState.ACTIVE, DeploymentState.FAILED) else None

        return await wait_for(final, timeout=within, what=f"{deployment_id} to finish")

    def leftovers(self) -> list[Path]:
        """Temporary transfer files on the edge node."""
        return [p for p in (self.edge.settings.data_dir / "slots").rglob("*") if p.is_file() and "transfers" in p.parts]


@asynccontextmanager
async def line(tmp_path: Path, signer: Signer, **gateway_settings: Any) -> AsyncIterator[Line]:
    package = build_package(
        _padded_model(tmp_path / "padded.onnx"),
        tmp_path / "padded.mlpkg",
        name="padded",
        version="1.0.0",
        private_key=signer.private_key,
    ).path
    async with AsyncExitStack() as stack:
        edge = await stack.enter_async_context(
            EdgeNode(edge_settings(tmp_path / "edge", signer.trust_dir, device_id="edge-a"))
        )
        proxy = await FaultProxy(urlparse(edge.url).port or 0).start()
        stack.push_async_callback(proxy.stop)
        settings = GatewaySettings(
            endpoint=f"opc.tcp://127.0.0.1:{free_port()}/gateway/",
            data_dir=tmp_path / "gateway",
            trust_dir=signer.trust_dir,
            anonymous_role="Engineer",
            device_call_timeout_s=5,  # a black hole shows within seconds, not the product's minutes
            device_probe_s=3,
            **gateway_settings,
        )
        gateway = await stack.enter_async_context(Gateway(settings))
        client = await stack.enter_async_context(Client(gateway.url))
        ml = await client.get_namespace_index(ML)
        manager = await client.nodes.objects.get_child(f"{ml}:ModelManager")
        await upload(client, await manager.get_child(f"{ml}:Upload"), package.read_bytes(), ua.Variant())
        await manager.call_method(
            f"{ml}:RegisterDevice",
            ua.Variant("edge-a", ua.VariantType.String),
            ua.Variant(proxy.url("/edge/"), ua.VariantType.String),
        )
        yield Line(gateway, edge, proxy, manager, ml, package)


def _installed(line: Line) -> bool:
    model = line.edge.slots["main"].pipeline.model
    return model is not None and model.manifest.name == "padded"


@pytest.mark.timeout(180)
async def test_a_link_reset_in_the_middle_of_the_transfer_is_retried_and_completes(
    tmp_path: Path, signer: Signer
) -> None:
    async with line(tmp_path, signer) as plant:
        await wait_for(lambda: _online(plant), what="the device link")
        plant.proxy.reset_after(plant.package.stat().st_size // 2)
        record = await plant.settled(await plant.deploy())
        assert record.state is DeploymentState.ACTIVE, record.last_error
        assert plant.proxy.resets >= 1  # the fault did happen
        assert _installed(plant)
        await wait_for(lambda: _no_leftovers(plant), what="temporary transfer files to go")


@pytest.mark.timeout(180)
async def test_a_black_hole_during_the_transfer_is_retried_once_the_link_heals(tmp_path: Path, signer: Signer) -> None:
    async with line(tmp_path, signer) as plant:
        await wait_for(lambda: _online(plant), what="the device link")
        deployment = await plant.deploy()

        async def transferring() -> bool:
            return plant.proxy.upstream_bytes > plant.package.stat().st_size // 4

        await wait_for(transferring, what="the transfer to be under way")
        plant.proxy.blackhole = True

        async def lost() -> bool:
            return not plant.gateway.devices.get("edge-a").online

        await wait_for(lost, timeout=20, what="the gateway to notice the black hole")
        plant.proxy.blackhole = False
        plant.proxy.reset()  # what the black hole left half-open
        record = await plant.settled(deployment)
        assert record.state is DeploymentState.ACTIVE, record.last_error
        assert _installed(plant)
        await wait_for(lambda: _no_leftovers(plant), what="temporary transfer files to go")


@pytest.mark.timeout(180)
async def test_a_link_reset_during_close_and_commit_installs_the_pending_package_without_a_second_transfer(
    tmp_path: Path, signer: Signer
) -> None:
    async with line(tmp_path, signer) as plant:
        await wait_for(lambda: _online(plant), what="the device link")
        size = plant.package.stat().st_size
        start = plant.proxy.upstream_bytes
        cut_at: list[int] = []

        async def reset_once_pending(slot: ModelSlot) -> None:
            # Called inside CloseAndCommit once the package is verified and Pending, before the reply goes
            # out: the gateway's call is cut off after the whole package went upstream, as a reset would.
            if not cut_at and slot.state.pending is not None and plant.proxy.upstream_bytes - start > size:
                cut_at.append(plant.proxy.upstream_bytes)
                plant.proxy.reset()

        plant.edge.slots["main"].listen(reset_once_pending)
        record = await plant.settled(await plant.deploy())
        assert record.state is DeploymentState.ACTIVE, record.last_error
        assert cut_at, "the reset did not happen during CloseAndCommit"
        assert plant.proxy.upstream_bytes - cut_at[0] < size // 2  # the retry installed Pending: no second transfer
        assert _installed(plant)
        assert plant.edge.slots["main"].state.pending is None  # no stray Pending left behind
        await wait_for(lambda: _no_leftovers(plant), what="temporary transfer files to go")


@pytest.mark.timeout(120)
async def test_a_link_that_never_comes_back_fails_with_the_step_and_the_cause(tmp_path: Path, signer: Signer) -> None:
    async with line(tmp_path, signer) as plant:
        await wait_for(lambda: _online(plant), what="the device link")
        plant.proxy.reset_after(plant.package.stat().st_size // 2)
        deployment = await plant.deploy(retry_for_s=0)
        record = await plant.settled(deployment)
        assert record.state is DeploymentState.FAILED
        assert record.last_error.startswith("wave 1, device edge-a: connection lost during the transfer: ")
        assert record.last_error.endswith("(gave up after 0 s of retries)")
        assert plant.edge.slots["main"].state.current is None  # the device is untouched, serving what it had


async def _online(plant: Line) -> bool:
    return plant.gateway.devices.get("edge-a").online


async def _no_leftovers(plant: Line) -> bool:
    return not plant.leftovers()


async def test_a_reset_link_leaves_no_session_behind_on_the_edge_node(tmp_path: Path, signer: Signer) -> None:
    # The edge node keeps a lost connection's session (with its subscriptions) until the session's time-out:
    # the link's requested one, here asyncua's smallest (5 s) instead of the product's 30 s.
    async with line(tmp_path, signer, device_session_timeout_s=5) as plant:
        assert plant.edge.server is not None
        sessions = plant.edge.server.iserver._external_sessions  # asyncua keeps no public list

        await wait_for(lambda: _online(plant), timeout=30, what="the device link")
        assert len(sessions) == 1

        async def count(n: int) -> bool:
            return len(sessions) == n

        plant.proxy.reset()
        # the link reconnects with a new session while the lost one is kept (else nothing here is tested)
        await wait_for(lambda: count(2), timeout=30, what="the link to reconnect")
        await wait_for(lambda: count(1), timeout=20, what="the lost connection's session to time out")
        assert await _online(plant)
