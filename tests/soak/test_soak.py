"""Soak: a PLC changing its tags every 100 ms, a gateway and three edge nodes, and faults on a schedule.

It runs the way production runs: the gateway (with its Model Monitor collecting every edge node's records)
and each edge node are their own `modelline gateway` / `modelline edge` processes; the test process holds
only the PLC, the fault proxies and a client that watches the outputs as an HMI would. Faults, in turn: the
PLC goes away for a few seconds; the gateway's link to one edge node is reset; the gateway restarts, as a
process restarts: SIGTERM (a clean stop, exit code 0) and started again on its data folder.

What must hold all along: no Bad prediction outside the windows of the injected faults (a PLC outage makes
outputs Uncertain_LastUsableValue, not Bad), and every long-lived process's RSS (/proc/<pid>/status VmRSS)
and open descriptors (/proc/<pid>/fd) stay flat, each sampled on its own. An edge node lives the whole
soak; a restarted gateway is a new process, so each incarnation is a series of its own: its level at the
same uptime must not grow from one incarnation to the next, and the last one, which lives the second half
of the long soak (gateway restarts happen in its first half), must be flat after its warm-up (a
least-squares slope, and the last third's median against the first third's). The short soak is too short
to see a trend and bounds only the total growth.

The default test run soaks for a short while (the same scenario, one fault of each kind);
``MODELLINE_SOAK_MINUTES=10 pytest tests/soak -m slow -n 0 -s`` runs the long soak whose result
bench/RESULTS.md records.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from asyncua import ua

from nodesets.ids import DeploymentState, DeviceState
from sdk.file_client import upload
from tests.conftest import Signer
from tests.e2e.test_rollout_restarts import _deploy, _deployment, _env
from tests.edge_harness import HEALTHY, SimulatedPlc, build_pump, output_node, wait_for
from tests.faultproxy import FaultProxy
from tests.opcua_servers import free_port
from tests.processes import ServerProcess
from tests.tls import Client

pytestmark = pytest.mark.e2e

ML = "http://modelline.io/UA/"
EDGES = ("edge-a", "edge-b", "edge-c")
GRACE_S = 5.0  # after a fault ends, outputs may take this long to be Good again
TEST_PROCESS = "test process"  # the PLC, the fault proxies and the watching client


def _proc(pid: int | str) -> tuple[int, int] | None:
    """(VmRSS KiB, open descriptors) of a process; None once it has gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except (FileNotFoundError, ProcessLookupError):
        return None
    rss = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)
    return rss, fds


@dataclass
class Watch:
    """Every prediction update an HMI would see, by edge node: how many, the last status, the non-Good ones."""

    counts: dict[str, int] = field(default_factory=dict)
    last: dict[str, str] = field(default_factory=dict)
    not_good: dict[str, list[tuple[float, str]]] = field(default_factory=dict)  # (monotonic time, status name)
    faults: list[tuple[float, float, str]] = field(default_factory=list)  # (start, end, what)

    def seen(self, edge: str, at: float, status: str) -> None:
        self.counts[edge] = self.counts.get(edge, 0) + 1
        self.last[edge] = status
        if status != "Good":
            self.not_good.setdefault(edge, []).append((at, status))

    def bad_outside_faults(self) -> list[tuple[str, float, str]]:
        return [
            (edge, at, status)
            for edge, updates in self.not_good.items()
            for at, status in updates
            if status.startswith("Bad") and not any(s <= at <= e + GRACE_S for s, e, _ in self.faults)
        ]


@dataclass
class Series:
    """One process's samples: (monotonic s, RSS KiB, open descriptors), and when it was started."""

    name: str
    started: float
    samples: list[tuple[float, int, int]] = field(default_factory=list)


@dataclass
class Soak:
    root: Path
    signer: Signer
    plc: SimulatedPlc
    edges: dict[str, ServerProcess]
    edge_urls: dict[str, str]
    proxies: dict[str, FaultProxy]
    gateway: ServerProcess
    gateway_url: str
    series: dict[int, Series] = field(default_factory=dict)  # by pid: a restarted gateway is a new series
    incarnations: int = 0

    def measured(self) -> list[tuple[int, str]]:
        """(pid, name) of every process to sample now."""
        running = [(p.proc.pid, p.name) for p in (*self.edges.values(), self.gateway) if p.proc and p.running]
        return [(os.getpid(), TEST_PROCESS), *running]

    async def start_gateway(self) -> None:
        started = time.monotonic()
        await self.gateway.start(self.gateway_url)
        assert self.gateway.proc is not None
        self.incarnations += 1
        self.series[self.gateway.proc.pid] = Series(f"gateway #{self.incarnations}", started)

    async def stop_gateway(self) -> None:
        code = await self.gateway.stop()
        assert code == 0, f"the gateway did not stop cleanly on SIGTERM ({code}): {self.gateway.tail()}"


@asynccontextmanager
async def soak_plant(root: Path, signer: Signer) -> AsyncIterator[Soak]:
    async with AsyncExitStack() as stack:
        plc = await SimulatedPlc().start()
        stack.push_async_callback(plc.stop)
        edges, urls, proxies = {}, {}, {}
        for name in EDGES:
            urls[name] = f"opc.tcp://127.0.0.1:{free_port()}/edge/"
            argv = ["edge", "--endpoint", urls[name], "--data-dir", str(root / name), "--trust", str(signer.trust_dir)]
            env = _env(MODELLINE_EDGE_ANONYMOUS_ROLE="Engineer", MODELLINE_EDGE_DEVICE_ID=name)
            edges[name] = ServerProcess(name, argv, root / f"{name}.log", env)
            stack.push_async_callback(edges[name].kill)
        started = time.monotonic()
        await asyncio.gather(*(edges[name].start(urls[name]) for name in EDGES))
        for name in EDGES:
            proxies[name] = await FaultProxy(int(urls[name].split(":")[2].split("/")[0])).start()
            stack.push_async_callback(proxies[name].stop)
        gateway_url = f"opc.tcp://127.0.0.1:{free_port()}/gateway/"
        argv = ["gateway", "--endpoint", gateway_url, "--data-dir", str(root / "gateway")]
        env = _env(
            MODELLINE_GATEWAY_ANONYMOUS_ROLE="Engineer",
            MODELLINE_GATEWAY_DEVICE_CALL_TIMEOUT_S="10",
            MODELLINE_GATEWAY_DEVICE_PROBE_S="5",
        )
        gateway = ServerProcess("gateway", [*argv, "--trust", str(signer.trust_dir)], root / "gateway.log", env)
        stack.push_async_callback(gateway.kill)
        soak = Soak(root, signer, plc, edges, urls, proxies, gateway, gateway_url)
        soak.series[os.getpid()] = Series(TEST_PROCESS, started)
        for name, edge in edges.items():
            assert edge.proc is not None
            soak.series[edge.proc.pid] = Series(name, started)
        await soak.start_gateway()
        yield soak


async def _deploy_pump(soak: Soak, example: Path) -> None:
    async with Client(soak.gateway_url) as client:
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
        deployment = await _deploy(client, "1.0.0", list(EDGES), binding=soak.plc.binding(), confirmation_timeout_s=60)

        async def active() -> bool:
            values = await _deployment(client, deployment)
            assert values["State"] is not DeploymentState.FAILED, values["LastError"]
            return values["State"] is DeploymentState.ACTIVE

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
        subs = {}
        for name, url in soak.edge_urls.items():
            client = await stack.enter_async_context(Client(url))
            node = await output_node(client, "main", "anomaly_score")
            sub = await client.create_subscription(100, None, queue_maxsize=10_000)
            await stack.enter_async_context(sub)
            await sub.subscribe_data_change([node])
            subs[name] = sub
        while not stop.is_set():
            for name, sub in subs.items():
                event = await sub.next_event(timeout=0.05)
                if event is not None and hasattr(event, "data"):
                    status = event.data.monitored_item.Value.StatusCode
                    watch.seen(name, time.monotonic(), status.name if status else "Good")


def _sample_all(soak: Soak) -> None:
    now = time.monotonic()
    for pid, _ in soak.measured():
        if pid in soak.series and (measured := _proc(pid)) is not None:
            soak.series[pid].samples.append((now, *measured))


async def _sample(soak: Soak, stop: asyncio.Event, every_s: float) -> None:
    """RSS and open descriptors of every process every ``every_s``, each process on its own."""
    while not stop.is_set():
        _sample_all(soak)
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


async def _online(soak: Soak, edge: str) -> bool:
    """The gateway shows the device connected (Online or Degraded), read as any client reads it."""
    try:
        async with Client(soak.gateway_url, timeout=5) as client:
            ml = await client.get_namespace_index(ML)
            devices = await client.nodes.objects.get_child([f"{ml}:ModelManager", f"{ml}:Devices"])
            state = await (await devices.get_child([f"1:{edge}", f"{ml}:State"])).read_value()
    except (OSError, TimeoutError, ua.UaError):
        return False
    return DeviceState(state) is not DeviceState.OFFLINE


async def _link_reset(soak: Soak, edge: str) -> None:
    soak.proxies[edge].reset()
    await wait_for(lambda: _online(soak, edge), timeout=30, what=f"the gateway's link to {edge} to return")


async def _gateway_restart(soak: Soak) -> None:
    await soak.stop_gateway()
    await soak.start_gateway()
    for edge in EDGES:
        await wait_for(lambda e=edge: _online(soak, e), timeout=30, what=f"{edge} online after the restart")


def _schedule(minutes: float) -> list[tuple[float, str]]:
    """(seconds from the start, fault): one of each kind per 1.5 minutes, evenly spread. In a long soak the
    gateway restarts in the first half only, so that its last incarnation lives long enough to show a trend;
    its restarts in the second half become PLC outages and link resets in turn."""
    kinds = ("PLC outage", "link reset edge-b", "gateway restart")
    count = len(kinds) * max(1, round(minutes / 1.5))
    every = minutes * 60 / (count + 1)
    schedule = []
    for number in range(count):
        at, what = (number + 1) * every, kinds[number % len(kinds)]
        if what == "gateway restart" and minutes > 3 and at > minutes * 30:
            what = kinds[(number // len(kinds)) % 2]
        schedule.append((at, what))
    return schedule


async def _soak(soak: Soak, minutes: float, example: Path) -> Watch:
    await _deploy_pump(soak, example)
    watch, stop = Watch(), asyncio.Event()
    tasks = [
        asyncio.create_task(_drive_plc(soak, stop)),
        asyncio.create_task(_watch_outputs(soak, watch, stop)),
        asyncio.create_task(_sample(soak, stop, every_s=10.0 if minutes > 3 else 5.0)),
    ]
    actions: dict[str, Callable[[], Awaitable[None]]] = {
        "PLC outage": lambda: _plc_outage(soak),
        "link reset edge-b": lambda: _link_reset(soak, "edge-b"),
        "gateway restart": lambda: _gateway_restart(soak),
    }
    try:
        start = time.monotonic()
        for at, what in _schedule(minutes):
            await asyncio.sleep(max(0.0, start + at - time.monotonic()))
            await _fault(watch, what, actions[what])
        await asyncio.sleep(max(0.0, start + minutes * 60 - time.monotonic()))
        await asyncio.sleep(GRACE_S)
        _sample_all(soak)
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
    for name, edge in soak.edges.items():
        assert edge.running, f"{name} ended: {edge.tail()}"
    return watch


def _slope_mib_per_min(points: list[tuple[float, int]]) -> float:
    """Least-squares slope of (monotonic s, KiB) points, in MiB per minute."""
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    cov = sum((t - mean_t) * (v - mean_v) for t, v in points)
    return cov / var * 60 / 1024 if var else 0.0


def _median(values: list[int]) -> int:
    return sorted(values)[len(values) // 2]


def _flat(series: Series, warm_end: float, failed: list[str]) -> str:
    """Check a long-lived process's RSS and descriptors flat after ``warm_end`` (failures into ``failed``); its
    summary."""
    steady = [s for s in series.samples if s[0] >= warm_end]
    (_, rss0, fds0), (_, rss1, fds1) = series.samples[0], series.samples[-1]
    text = f"{series.name}: RSS {rss0 / 1024:.0f} -> {rss1 / 1024:.0f} MiB, fds {fds0} -> {fds1}"
    if len(steady) < 12 or steady[-1][0] - steady[0][0] < 180:  # too short to see a trend: bound the total
        _expect(rss1 - rss0 < 64 * 1024, f"{text}: {_rss_series(series)}", failed)
        _expect(fds1 - fds0 <= 10, f"{text}: open descriptors grew", failed)
        return text
    slope = _slope_mib_per_min([(t, rss) for t, rss, _ in steady])
    third = len(steady) // 3
    first, last = steady[:third], steady[-third:]
    median_first, median_last = _median([r for _, r, _ in first]), _median([r for _, r, _ in last])
    fds_first, fds_last = max(f for _, _, f in first), max(f for _, _, f in last)
    text += (
        f"; after warm-up ({len(steady)} samples over {(steady[-1][0] - steady[0][0]) / 60:.1f} min): slope "
        f"{slope:+.2f} MiB/min, median first third {median_first / 1024:.1f} MiB, last third "
        f"{median_last / 1024:.1f} MiB, fds max {fds_first} -> {fds_last}"
    )
    # A leak of 1 MiB a minute in a process that lives on fails both: over the 5 to 7 minutes after
    # warm-up, the medians of the first and last thirds are 3.5 to 5 minutes apart.
    _expect(slope < 0.5, f"{text}: {_rss_series(series)}", failed)
    _expect(median_last - median_first < 3 * 1024, f"{text}: {_rss_series(series)}", failed)
    _expect(fds_last <= fds_first + 5, f"{text}: open descriptors grew", failed)
    return text


def _expect(holds: bool, what: str, failed: list[str]) -> None:
    if not holds:
        failed.append(what)


def _rss_series(series: Series) -> str:
    step = max(1, len(series.samples) // 40)
    return "RSS MiB " + " ".join(f"{rss // 1024}" for _, rss, _ in series.samples[::step])


def _check(soak: Soak, watch: Watch, long: bool) -> str:
    bad = watch.bad_outside_faults()
    assert bad == [], bad[:20]
    for name in EDGES:
        assert watch.counts.get(name, 0) > 20, f"{name}: only {watch.counts.get(name, 0)} prediction updates"
        assert watch.last[name] == "Good", f"{name} ends {watch.last[name]}"
    kinds = {what for _, _, what in watch.faults}
    assert {"PLC outage", "link reset edge-b", "gateway restart"} <= kinds, kinds
    for series in soak.series.values():
        print(f"{series.name} {_rss_series(series)}; fds {' '.join(str(f) for _, _, f in series.samples)}")
    lines: list[str] = []
    failed: list[str] = []  # every process is checked and reported before the test fails on any
    # Warm-up of the processes that live through the soak: until the second gateway restart is over (each
    # edge node sees its gateway go and come back; the first times raise its allocator's high-water marks).
    restarts = [end for _, end, what in watch.faults if what == "gateway restart"]
    warm_end = restarts[min(1, len(restarts) - 1)] + 10
    for series in soak.series.values():
        if series.name in EDGES:
            lines.append(_flat(series, warm_end, failed))
    test_process = next(s for s in soak.series.values() if s.name == TEST_PROCESS)
    (_, rss0, fds0), (_, rss1, fds1) = test_process.samples[0], test_process.samples[-1]
    lines.append(
        f"{TEST_PROCESS} (PLC, proxies, watcher): RSS {rss0 / 1024:.0f} -> {rss1 / 1024:.0f} MiB, fds {fds0} -> {fds1}"
    )
    _expect(rss1 - rss0 < 64 * 1024 and fds1 - fds0 <= 10, lines[-1], failed)
    # Each gateway incarnation: its level at the same uptime (30 to 80 s after its start) must not grow from
    # one incarnation to the next; the last one, the long-lived one, must be flat after a minute's warm-up.
    gateways = sorted((s for s in soak.series.values() if s.name.startswith("gateway")), key=lambda s: s.started)
    levels = []
    for series in gateways:
        early = [rss for t, rss, _ in series.samples if 30 <= t - series.started <= 80]
        levels.append(_median(early) if early else None)
    shown = " ".join(f"{level / 1024:.1f}" if level else "-" for level in levels)
    lines.append(f"gateway level 30-80 s after each start, MiB: {shown}")
    known = [level for level in levels if level]
    assert len(known) >= 2 or not long, lines[-1]  # the short soak's second gateway lives less than 30 s
    _expect(all(level - known[0] < 8 * 1024 for level in known), lines[-1], failed)
    _expect(all(b - a < 4 * 1024 for a, b in zip(known, known[1:], strict=False)), lines[-1], failed)
    for series in gateways:
        lines.append(_flat(series, series.started + 60, failed))
    updates = sum(watch.counts.values())
    lines.insert(
        0,
        f"{len(watch.faults)} faults ({', '.join(f'{n} {k}' for k, n in sorted(_kinds(watch).items()))}), "
        f"{updates} prediction updates seen, 0 Bad outside faults",
    )
    print("\n".join(lines))
    assert failed == [], "\n".join(failed)
    return "\n".join(lines)


def _kinds(watch: Watch) -> dict[str, int]:
    counted: dict[str, int] = {}
    for _, _, what in watch.faults:
        counted[what] = counted.get(what, 0) + 1
    return counted


@pytest.mark.timeout(300)
async def test_short_soak_with_one_fault_of_each_kind(tmp_path: Path, signer: Signer, example: Path) -> None:
    async with soak_plant(tmp_path, signer) as soak:
        watch = await _soak(soak, 1.5, example)
    _check(soak, watch, long=False)


@pytest.mark.slow
@pytest.mark.timeout(3600)
@pytest.mark.skipif(
    not os.environ.get("MODELLINE_SOAK_MINUTES"), reason="the long soak runs when MODELLINE_SOAK_MINUTES is set"
)
async def test_long_soak(tmp_path: Path, signer: Signer, example: Path) -> None:
    minutes = float(os.environ["MODELLINE_SOAK_MINUTES"])
    async with soak_plant(tmp_path, signer) as soak:
        watch = await _soak(soak, minutes, example)
    print(f"soak {minutes:g} min:")
    _check(soak, watch, long=True)
