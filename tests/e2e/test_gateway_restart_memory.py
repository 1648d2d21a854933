"""A gateway restarted in one process, again and again, gives its memory back each time.

The soak (tests/soak) restarts its gateway in-process as a fault; each restart used to keep the
stopped gateway alive (14 MiB), through asyncua log records that pytest's log capture keeps
(bench/RESULTS.md). Here a gateway with a stored version and a registered, connected edge node
restarts eight times under pytest's log capture, as in the soak.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import weakref
from pathlib import Path

import pytest
from asyncua import ua

from edge_node.app import EdgeNode
from gateway.app import Gateway
from sdk.file_client import upload
from tests.conftest import Signer
from tests.edge_harness import build_pump, edge_settings, wait_for
from tests.opcua_servers import free_port
from tests.tls import Client, GatewaySettings

ML = "http://modelline.io/UA/"
RESTARTS = 8
WARM_UP = 2  # the first restarts raise the allocator's high-water mark (old and new gateway overlap)


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


@pytest.mark.timeout(300)
async def test_restarted_gateways_are_released(tmp_path: Path, signer: Signer, example: Path) -> None:
    settings = GatewaySettings(
        endpoint=f"opc.tcp://127.0.0.1:{free_port()}/gateway/",
        data_dir=tmp_path / "gateway",
        trust_dir=signer.trust_dir,
        anonymous_role="Engineer",
    )
    async with EdgeNode(edge_settings(tmp_path / "edge", signer.trust_dir)) as edge:
        async with Gateway(settings) as gateway, Client(gateway.url) as client:
            ml = await client.get_namespace_index(ML)
            manager = await client.nodes.objects.get_child(f"{ml}:ModelManager")
            package = build_pump(example, signer, tmp_path / "pump.mlpkg").path
            await upload(client, await manager.get_child(f"{ml}:Upload"), package.read_bytes(), ua.Variant())
            await manager.call_method(
                f"{ml}:RegisterDevice",
                ua.Variant("edge-1", ua.VariantType.String),
                ua.Variant(edge.url, ua.VariantType.String),
            )
        del gateway, client, manager
        stopped: list[weakref.ref[Gateway]] = []
        rss = [_rss_kib()]
        for _ in range(RESTARTS):
            async with Gateway(settings) as gateway:

                async def online(g: Gateway = gateway) -> bool:
                    return g.devices.get("edge-1").online

                await wait_for(online, timeout=30, what="the gateway's link to the edge node")
                stopped.append(weakref.ref(gateway))
            del gateway, online
            gc.collect()
            rss.append(_rss_kib())
    await asyncio.sleep(0.5)  # the last link's closing callbacks run
    gc.collect()
    alive = [ref for ref in stopped if ref() is not None]
    assert alive == [], f"{len(alive)} of {RESTARTS} stopped gateways still in memory"
    growth = [b - a for a, b in zip(rss[WARM_UP:], rss[WARM_UP + 1 :], strict=False)]
    print(f"RSS after each restart (MiB): {' '.join(f'{r / 1024:.1f}' for r in rss)}")
    assert statistics.median(growth) < 2 * 1024, f"RSS grows {statistics.median(growth)} KiB per restart: {rss}"
