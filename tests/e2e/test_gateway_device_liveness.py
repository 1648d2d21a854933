"""The gateway's kept-open link to an edge node proves liveness by its subscription's keep-alives.

An idle link sends the device nothing to probe it (no ServerState Read a second), asks the edge node for a short
session timeout, notices a black-holed link once the keep-alives stop, and comes back once they flow again.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from asyncua import ua
from asyncua.common.callback import CallbackType

from edge_node.app import EdgeNode
from gateway.identity import GATEWAY_NAME, INSTANCE_URI
from gateway.opcua.device_link import DeviceLink
from nodesets.ids import DeviceState
from tests.conftest import Signer
from tests.edge_harness import edge_settings, wait_for
from tests.faultproxy import FaultProxy
from tests.tls import seed

pytestmark = pytest.mark.e2e


@pytest.mark.timeout(120)
async def test_an_idle_link_reads_nothing_and_a_silent_one_is_lost_and_comes_back(
    tmp_path: Path, signer: Signer
) -> None:
    async with EdgeNode(edge_settings(tmp_path, signer.trust_dir, device_id="edge-a")) as edge:
        assert edge.server is not None
        reads: list[Any] = []

        async def on_read(event: Any, dispatcher: Any) -> None:
            if event.is_external:  # a client's Read, not the server's own
                reads.extend(event.request_params.NodesToRead)

        edge.server.subscribe_server_callback(CallbackType.PreRead, on_read)
        proxy = await FaultProxy(urlparse(edge.url).port or 0).start()
        link = DeviceLink(
            "edge-a",
            proxy.url("/edge/"),
            keepalive_s=1.0,
            liveness_s=3.0,
            session_timeout_s=12.0,
            pki_dir=seed(tmp_path / "gateway-pki", INSTANCE_URI, GATEWAY_NAME),  # a gateway's certificate
        )
        running = asyncio.create_task(link.run())
        try:
            assert await link.wait_online(30)
            await asyncio.sleep(0.5)  # what the link reads while it subscribes is done
            reads.clear()
            await asyncio.sleep(4)  # four keep-alive periods, more than a liveness window
            probes = [r for r in reads if r.NodeId == ua.NodeId(ua.ObjectIds.Server_ServerStatus_State)]
            assert probes == [], "an idle link must not probe the device"
            assert link.online
            assert link.view.state is not DeviceState.OFFLINE

            sessions = list(edge.server.iserver._external_sessions.values())  # asyncua keeps no public list
            assert [s.session_timeout for s in sessions] == [12.0]  # the edge frees a lost gateway's session soon

            proxy.blackhole = True  # the connection stays open, nothing passes: only the keep-alives can tell
            lost_at = asyncio.get_running_loop().time()

            async def offline() -> bool:
                return not link.online and link.view.state is DeviceState.OFFLINE

            await wait_for(offline, timeout=15, what="the link to notice the silence")
            assert asyncio.get_running_loop().time() - lost_at >= 2.0  # not before the keep-alives are overdue
            assert link.view.last_seen is not None
            proxy.blackhole = False
            proxy.reset()
            assert await link.wait_online(30)
        finally:
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running
            await proxy.stop()
