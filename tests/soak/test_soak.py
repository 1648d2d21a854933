"""Soak: a PLC changing its tags every 100 ms, a gateway and three edge nodes, and faults on a schedule.

Faults, in turn: the PLC goes away for a few seconds; the gateway's link to one edge node is reset;
the gateway restarts on its data folder. What must hold all along: no Bad prediction outside the
windows of the injected faults (a PLC outage makes outputs Uncertain_LastUsableValue, not Bad), and
the process's RSS and open descriptors stay flat (after a warm-up: a least-squares slope of RSS and the
last third's median against the first third's, in the long soak; the short one is too short to see a
trend and bounds only the total growth).

The default test run soaks for a short while (the same scenario, one fault of each kind);
``MODELLINE_SOAK_MINUTES=10 pytest tests/soak -m slow -n 0 -s`` runs the long soak whose result
bench/RESULTS.md records.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from asyncua import Client, ua

from edge_node.app import EdgeNode
from gateway.app import Gateway
from gateway.settings import GatewaySettings
from nodesets.ids import DeploymentState
from sdk.file_client import upload
from tests.conftest import Signer
from tests.edge_harness import HEALTHY, SimulatedPlc, build_pump, edge_settings, output_node, wait_for
from tests.faultproxy import FaultProxy
from tests.opcua_servers import free_port

pytestmark = pytest.mark.e2e

ML = "http://modelline.io/UA/"
EDGES = ("edge-a", "edge-b", "edge-c")
GRACE_S = 5.0  # after a fault ends, outputs may take this long to be Good again


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@dataclass
class Watch:
    """Every prediction update an HMI would see, by edge node: (monotonic time, status name)."""

    updates: dict[str, list[tuple[float, str]]] = field(default_factory=dict)
    faults: list[tuple[float, float, str]] = field(default_factory=list)  # (start, end, what)

    def bad_outside_faults(self) -> list[tuple[str, float, str]]:
        found = []
        for edge, updates in self.updates.items():
            for at, status in updates:
                if status.startswith("Bad") and not any(s <= at <= e + GRACE_S for s, e, _ in self.faults):
                    found.append((edge, at, status))
        return found


@dataclass
class Soak:
    root: Path
    signer: Signer
    plc: SimulatedPlc
    edges: dict[str, EdgeNode]
    proxies: dict[str, FaultProxy]
    settings: GatewaySettings
    stack: AsyncExitStack
    gateway: Gateway | None = None

    async def start_gateway(self) -> Gateway:
        self.gateway = Gateway(self.settings)
        await self.gateway.__aenter__()
        return self.gateway

    async def stop_gateway(self) -> None:
        if self.gateway is not None:
            await self.gateway.__aexit__(None, None, None)
            self.gateway = None


@asynccontextmanager
async def soak_plant(root: Path, signer: Signer) -> AsyncIterator[Soak]:
    async with AsyncExitStack() as stack:
        plc = await SimulatedPlc().start()
        stack.push_async_callback(plc.stop)
        edges, proxies = {}, {}
        for name in EDGES:
            edges[name] = await stack.enter_async_context(
                EdgeNode(edge_settings(root / name, signer.trust_dir, device_id=name))
            )
            proxies[name] = await FaultProxy(urlparse(edges[name].url).port or 0).start()
            stack.push_async_callback(proxies[name].stop)
        settings = GatewaySettings(
            endpoint=f"opc.tcp://127.0.0.1:{free_port()}/gateway/",
            data_dir=root / "gateway",
            trust_dir=signer.trust_dir,
            anonymous_role="Engineer",
            device_call_timeout_s=10,
            device_probe_s=5,
        )
        soak = Soak(root, signer, plc, edges, proxies, settings, stack)
        stack.push_async_callback(soak.stop_gateway)
        yield soak


async def _deploy(soak: Soak, example: Path) -> None:
    gateway = await soak.start_gateway()
    async with Client(gateway.url) as client:
        ml = await client.get_namespace_index(ML)
        manager = await client.nodes.objects.get_child(f"{ml}:ModelManager")
        package = build_pump(example, soak.signer, soak.root / "pump.mlpkg").path
        await upload(client, await manager.get_child(f"{ml}:Upload"), package.read_bytes(), ua.Variant())
        for name in EDGES:
            await manager.call_method(
                f"{ml}:RegisterDevice",
                ua.Variant(name, ua.VariantType.String),
                ua.Variant(soak.proxies[name].url("/edge/"), ua.VariantType.String),
            )
        options = {"binding": soak.plc.binding(), "confirmation_timeout_s": 60}
        deployment = await manager.call_method(
            f"{ml}:Deploy",
            ua.Variant("pump-health", ua.VariantType.String),
            ua.Variant("1.0.0", ua.VariantType.String),
            ua.Variant(list(EDGES), ua.VariantType.String),
            ua.Variant(json.dumps(options), ua.VariantType.String),
        )

    async def active() -> bool:
        record = next(r for r in await gateway.store.deployments() if r.id == deployment)
        assert record.state is not DeploymentState.FAILED, record.last_error
        return record.state is DeploymentState.ACTIVE

    await wait_for(active, timeout=90, what="the deployment to all three edge nodes")


async def _drive_plc(soak: Soak, stop: asyncio.Event) -> None:
    """New, plausible values every 100 ms (a healthy pump with noise), whenever the PLC is up."""
    rng = random.Random(1)
    while not stop.is_set():
        if soak.plc.server is not None:
            values = {k: v * (1 + rng.uniform(-0.02, 0.02)) for k, v in HEALTHY.items()}
            with suppress(Exception):  # the PLC may be stopping for an injected outage
                await soak.plc.write_all(values)
        await asyncio.sleep(0.1)


async def _watch_outputs(soak: Soak, watch: Watch, stop: asyncio.Event) -> None:
    async with AsyncExitStack() as stack:
        queues: dict[str, Any] = {}
        for name, edge in soak.edges.items():
            client = await stack.enter_async_context(Client(edge.url))
            node = await output_node(client, "main", "anomaly_score")
            sub = await client.create_subscription(100, None, queue_maxsize=10_000)
            await stack.enter_async_context(sub)
            await sub.subscribe_data_change([node])
            queues[name] = sub
            watch.updates[name] = []
        while not stop.is_set():
            for name, sub in queues.items():
                event = await sub.next_event(timeout=0.05)
                if event is not None and hasattr(event, "data"):
                    status = event.data.monitored_item.Value.StatusCode
                    watch.updates[name].append((time.monotonic(), status.name if status else "Good"))


async def _sample(samples: list[tuple[float, int, int]], stop: asyncio.Event, every_s: float = 5.0) -> None:
    """RSS and open descriptors every ``every_s``, for the record (and for finding where memory goes)."""
    while not stop.is_set():
        samples.append((time.monotonic(), _rss_kib(), _fds()))
        with suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every_s)


async def _fault(watch: Watch, what: str, action: Callable[[], Awaitable[None]]) -> None:
    start = time.monotonic()
    await action()
    watch.faults.append((start, time.monotonic(), what))


async def _plc_outage(soak: Soak) -> None:
    await soak.plc.stop()
    await asyncio.sleep(5)
    await soak.plc.start()


async def _link_reset(soak: Soak, edge: str) -> None:
    soak.proxies[edge].reset()
    await wait_for(lambda: _online(soak, edge), timeout=30, what=f"the gateway's link to {edge} to return")


async def _online(soak: Soak, edge: str) -> bool:
    return soak.gateway is not None and soak.gateway.devices.get(edge).online


async def _gateway_restart(soak: Soak) -> None:
    await soak.stop_gateway()
    await soak.start_gateway()
    for edge in EDGES:
        await wait_for(lambda e=edge: _online(soak, e), timeout=30, what=f"{edge} online after the restart")


async def _soak(soak: Soak, minutes: float, example: Path) -> tuple[Watch, list[tuple[float, int, int]]]:
    await _deploy(soak, example)
    watch, stop = Watch(), asyncio.Event()
    samples: list[tuple[float, int, int]] = []
    tasks = [
        asyncio.create_task(_drive_plc(soak, stop)),
        asyncio.create_task(_watch_outputs(soak, watch, stop)),
        asyncio.create_task(_sample(samples, stop)),
    ]
    try:
        faults: list[tuple[str, Callable[[], Awaitable[None]]]] = [
            ("PLC outage", lambda: _plc_outage(soak)),
            ("link reset edge-b", lambda: _link_reset(soak, "edge-b")),
            ("gateway restart", lambda: _gateway_restart(soak)),
        ]
        start = time.monotonic()
        end = start + minutes * 60
        count = len(faults) * max(1, round(minutes / 1.5))  # one of each kind per 1.5 minutes
        every = minutes * 60 / (count + 1)
        for number in range(count):
            await asyncio.sleep(max(0.0, start + (number + 1) * every - time.monotonic()))
            what, action = faults[number % len(faults)]
            await _fault(watch, what, action)
        await asyncio.sleep(max(0.0, end - time.monotonic()))
        await asyncio.sleep(GRACE_S)
        samples.append((time.monotonic(), _rss_kib(), _fds()))
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
    return watch, samples


def _slope_mib_per_min(points: list[tuple[float, int]]) -> float:
    """Least-squares slope of (monotonic s, KiB) points, in MiB per minute."""
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    cov = sum((t - mean_t) * (v - mean_v) for t, v in points)
    return cov / var * 60 / 1024 if var else 0.0


def _check(watch: Watch, samples: list[tuple[float, int, int]]) -> str:
    bad = watch.bad_outside_faults()
    assert bad == [], bad[:20]
    for name, updates in watch.updates.items():
        assert len(updates) > 20, f"{name}: only {len(updates)} prediction updates"
        assert updates[-1][1] == "Good", f"{name} ends {updates[-1][1]}"
    kinds = {what for _, _, what in watch.faults}
    assert {"PLC outage", "link reset edge-b", "gateway restart"} <= kinds, kinds
    series = " ".join(f"{rss // 1024}" for _, rss, _ in samples[:: max(1, len(samples) // 40)])
    print(f"RSS MiB every ~{(samples[-1][0] - samples[0][0]) / max(1, min(40, len(samples))):.0f} s: {series}")
    print(f"fds: {' '.join(str(f) for _, _, f in samples[:: max(1, len(samples) // 40)])}")
    # Warm-up: until the second gateway restart is over. The first two restarts of a gateway raise the
    # allocator's high-water mark (old and new gateway are both in memory for a moment), by 4 to 14 MiB
    # each; later ones do not (tests/e2e/test_gateway_restart_memory.py, bench/RESULTS.md).
    restarts = [end for _, end, what in watch.faults if what == "gateway restart"]
    warm_end = restarts[min(1, len(restarts) - 1)] + 10
    steady = [s for s in samples if s[0] >= warm_end]
    (_, rss0, fds0), (_, rss1, fds1) = samples[0], samples[-1]
    assert rss1 - rss0 < 64 * 1024, f"RSS grew from {rss0} KiB to {rss1} KiB: {series}"
    summary = f"RSS {rss0 // 1024} -> {rss1 // 1024} MiB, fds {fds0} -> {fds1}"
    if len(steady) >= 12 and steady[-1][0] - steady[0][0] >= 180:  # the long soak: enough to see a trend
        slope = _slope_mib_per_min([(t, rss) for t, rss, _ in steady])
        third = len(steady) // 3
        first, last = steady[:third], steady[-third:]
        median_first = sorted(r for _, r, _ in first)[third // 2]
        median_last = sorted(r for _, r, _ in last)[third // 2]
        # The leak this caught grew 10 MiB a minute (a stopped gateway kept alive at each restart).
        assert slope < 1.5, f"RSS rises {slope:.2f} MiB/min after warm-up: {series}"
        assert median_last - median_first < 12 * 1024, f"RSS median {median_first} -> {median_last} KiB: {series}"
        assert max(f for _, _, f in last) <= max(f for _, _, f in first) + 5, "open descriptors grew"
        summary += (
            f"; after warm-up ({len(steady)} samples): slope {slope:+.2f} MiB/min, median first third "
            f"{median_first // 1024} MiB, last third {median_last // 1024} MiB, fds max "
            f"{max(f for _, _, f in first)} -> {max(f for _, _, f in last)}"
        )
    else:
        assert fds1 - fds0 <= 10, f"open descriptors grew from {fds0} to {fds1}"
    updates = sum(len(u) for u in watch.updates.values())
    return (
        f"{len(watch.faults)} faults ({', '.join(sorted(kinds))}), {updates} prediction updates seen, "
        f"0 Bad outside faults; {summary}"
    )


@pytest.mark.timeout(300)
async def test_short_soak_with_one_fault_of_each_kind(tmp_path: Path, signer: Signer, example: Path) -> None:
    async with soak_plant(tmp_path, signer) as soak:
        watch, samples = await _soak(soak, 1.5, example)
    print(_check(watch, samples))


@pytest.mark.slow
@pytest.mark.timeout(3600)
@pytest.mark.skipif(
    not os.environ.get("MODELLINE_SOAK_MINUTES"), reason="the long soak runs when MODELLINE_SOAK_MINUTES is set"
)
async def test_long_soak(tmp_path: Path, signer: Signer, example: Path) -> None:
    minutes = float(os.environ["MODELLINE_SOAK_MINUTES"])
    async with soak_plant(tmp_path, signer) as soak:
        watch, samples = await _soak(soak, minutes, example)
    print(f"soak {minutes:g} min: {_check(watch, samples)}")
