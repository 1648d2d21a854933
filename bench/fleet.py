"""Fleet: what one gateway spends per connected edge device, at 100, 500 and 1,000 devices.

Edge side (this process): ``bench.fleet_sim.Fleet``, real edge nodes without a PLC, each
serving many endpoints (one gateway link per endpoint: its own session and subscription).
Gateway side (a process of its own, so its CPU time and RSS are its own: /proc): the real
``Gateway`` with the devices in its store before it starts, as after a restart; it connects
to every device and idles. The floor (a process of its own too): the same number of bare
asyncua client sessions with one subscription each (the device's DeviceHealth and pipeline
States, the gateway's publishing interval and keep-alive), nothing else.

Figures per size, each round one window measured on both processes at once: idle CPU per
device (% of a core, the process's CPU over the window less that of the same process with
no devices, divided by the devices), the whole gateway's idle CPU, RSS per device (MiB, the
same difference); at the largest size the p99 of a ModelManager method call (RegisterDevice
of a device that is registered already: a lookup, no write) against a Read of the same
gateway's CurrentTime in the same rounds.

    python -m bench --only fleet            # in the suite (--quick: 100 devices, short windows)
    python -m bench.fleet --devices 100 500 1000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import tempfile
import time
import tracemalloc
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from asyncua import ua

from bench.fleet_sim import Fleet, connect
from bench.suite import Rounds, print_header
from sdk.keys import generate_key_pair
from sdk.opcua.ports import free_port

SIZES = [100, 500, 1000]
_CLK_TCK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")
ML = "http://modelline.io/UA/"
DI = "http://opcfoundation.org/UA/DI/"
MIRROR_MS = 250.0  # the gateway's defaults (DeviceLink.mirror_interval_ms, GatewaySettings.device_keepalive_s)
KEEPALIVE_S = 5.0


class Proc:
    """A side process of this benchmark: started with ``args``, ready when it printed ``ready``."""

    def __init__(self, *args: str) -> None:
        self.args = args
        self.proc: asyncio.subprocess.Process | None = None
        self.lines: list[str] = []

    async def start(self) -> Proc:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.fleet",
            *self.args,
            stdout=asyncio.subprocess.PIPE,
            stdin=asyncio.subprocess.DEVNULL,
        )
        await self.expect("ready", 600)
        return self

    async def expect(self, word: str, within_s: float = 600) -> str:
        assert self.proc is not None
        assert self.proc.stdout is not None
        while True:
            line = (await asyncio.wait_for(self.proc.stdout.readline(), within_s)).decode().strip()
            if not line:
                raise RuntimeError(f"{self.args[0]} ended ({await self.proc.wait()}) before {word!r}")
            self.lines.append(line)
            if line.split(" ", 1)[0] == word:
                return line

    def cpu_s(self) -> float:
        """User + system CPU time so far (/proc/<pid>/stat fields 14 and 15)."""
        assert self.proc is not None
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _CLK_TCK

    def rss_mib(self) -> float:
        assert self.proc is not None
        return int(Path(f"/proc/{self.proc.pid}/statm").read_text().split()[1]) * _PAGE / 2**20

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 60)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


async def _until_signalled() -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()


async def _gateway_side(folder: Path) -> None:
    """``--gateway FOLDER``: a Gateway with every device of FOLDER/devices.json stored; prints ``ready <url>`` when
    it serves, ``online`` once every link is up, then idles until SIGTERM."""
    from gateway.app import Gateway  # noqa: PLC0415 - the gateway side only
    from gateway.settings import GatewaySettings  # noqa: PLC0415
    from gateway.store.base import DeviceRecord  # noqa: PLC0415
    from gateway.store.sqlite import SqliteStore  # noqa: PLC0415

    urls: dict[str, str] = json.loads((folder / "devices.json").read_text(encoding="utf-8"))
    data = folder / "gateway"
    data.mkdir(parents=True, exist_ok=True)
    async with SqliteStore.open(data / "gateway.sqlite3") as store:
        now = datetime.now(UTC)
        for device, url in urls.items():
            await store.put_device(DeviceRecord(id=device, endpoint=url, registered_at=now))
    settings = GatewaySettings(
        endpoint=f"opc.tcp://127.0.0.1:{free_port()}/gateway/",
        data_dir=data,
        trust_dir=folder / "trust",
        anonymous_role="Engineer",
        backup_interval_s=0,
    )
    async with Gateway(settings) as gateway:
        print(f"ready {gateway.url}", flush=True)
        links = list(gateway.devices.links.values())
        while waiting := [link for link in links if not link.online]:
            print(f"{len(waiting)} of {len(links)} device links not up yet", file=sys.stderr, flush=True)
            await waiting[0].wait_online(10.0)
        print("online", flush=True)
        if os.environ.get("FLEET_TRACEMALLOC"):  # where a device's memory goes (bench/RESULTS.md)
            await asyncio.sleep(10)
            snapshot = tracemalloc.take_snapshot()
            for stat in snapshot.statistics("filename")[:25]:
                print(stat, file=sys.stderr, flush=True)
        await _until_signalled()


async def _bare_side(folder: Path) -> None:
    """``--bare FOLDER``: the floor. One bare asyncua session per device with one subscription to the device's
    DeviceHealth and pipeline States (publishing interval and keep-alive as the gateway's); ``ready`` before it
    connects, ``online`` once all are subscribed; idles until SIGTERM."""
    urls: dict[str, str] = json.loads((folder / "devices.json").read_text(encoding="utf-8"))
    print("ready", flush=True)
    clients = []

    class Handler:
        def datachange_notification(self, node: Any, value: Any, data: Any) -> None:
            pass

    params = ua.CreateSubscriptionParameters()
    params.RequestedPublishingInterval = MIRROR_MS
    params.RequestedMaxKeepAliveCount = int(KEEPALIVE_S * 1000 / MIRROR_MS)
    params.RequestedLifetimeCount = 3 * params.RequestedMaxKeepAliveCount
    params.MaxNotificationsPerPublish = 10000
    params.PublishingEnabled = True

    async def one(url: str) -> None:
        client = connect(url)
        client.session_timeout = 30_000
        await client.connect()
        clients.append(client)
        di, ml = await client.get_namespace_index(DI), await client.get_namespace_index(ML)
        device_set = await client.nodes.objects.get_child(f"{di}:DeviceSet")
        nodes = []
        for device in await device_set.get_children(nodeclassmask=ua.NodeClass.Object):
            try:
                nodes.append(await device.get_child(f"{di}:DeviceHealth"))
            except ua.UaStatusCodeError:
                continue
        folder = await client.nodes.objects.get_child([f"{ml}:InferenceServer", f"{ml}:Pipelines"])
        nodes += [await p.get_child(f"{ml}:State") for p in await folder.get_children()]
        sub = await client.create_subscription(params, Handler())
        await sub.subscribe_data_change(nodes, queuesize=1)

    gate = asyncio.Semaphore(20)

    async def gated(url: str) -> None:
        async with gate:
            await one(url)

    await asyncio.gather(*(gated(u) for u in urls.values()))
    print("online", flush=True)
    await _until_signalled()
    for client in clients:
        try:
            await asyncio.wait_for(client.disconnect(), 2)
        except Exception:  # noqa: BLE001, S110 - stopping the floor
            pass


@dataclass
class Window:
    cpu_percent: float
    rss_mib: float


async def _windows(procs: list[Proc], seconds: float, count: int) -> list[list[Window]]:
    """``count`` windows of ``seconds``, each measured on every process at once."""
    out: list[list[Window]] = [[] for _ in procs]
    for _ in range(count):
        before = [p.cpu_s() for p in procs]
        start = time.monotonic()
        await asyncio.sleep(seconds)
        wall = time.monotonic() - start
        for i, p in enumerate(procs):
            out[i].append(Window(100 * (p.cpu_s() - before[i]) / wall, p.rss_mib()))
    return out


def _replay_rounds(rounds: list[list[float]]) -> Any:
    it = iter(rounds)

    async def sample() -> list[float]:
        return next(it)

    return sample


def _replay(values: list[float]) -> Any:
    it = iter(values)

    async def sample() -> list[float]:
        return [next(it)]

    return sample


async def _call_times(
    url: str, device: tuple[str, str], calls: int, rounds: int
) -> tuple[list[list[float]], list[list[float]]]:
    """RegisterDevice of a registered device and a Read of CurrentTime, ``calls`` each per round, interleaved."""
    client = connect(url)
    await client.connect()
    try:
        ml = await client.get_namespace_index(ML)
        manager = await client.nodes.objects.get_child(f"{ml}:ModelManager")
        register = await manager.get_child(f"{ml}:RegisterDevice")
        current_time = client.get_node(ua.ObjectIds.Server_ServerStatus_CurrentTime)
        ours: list[list[float]] = []
        theirs: list[list[float]] = []
        args = (ua.Variant(device[0], ua.VariantType.String), ua.Variant(device[1], ua.VariantType.String))
        for _ in range(rounds):
            read, call = [], []
            for _ in range(calls):
                t0 = time.perf_counter()
                await current_time.read_value()
                t1 = time.perf_counter()
                await manager.call_method(register.nodeid, *args)
                t2 = time.perf_counter()
                read.append((t1 - t0) * 1000)
                call.append((t2 - t1) * 1000)
            theirs.append(read)
            ours.append(call)
        return ours, theirs
    finally:
        await client.disconnect()


def _write_devices(folder: Path, urls: dict[str, str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "devices.json").write_text(json.dumps(urls), encoding="utf-8")


async def _sides(folder: Path, urls: dict[str, str]) -> tuple[Proc, Proc]:
    await asyncio.to_thread(_write_devices, folder, urls)
    gateway = await Proc("--gateway", str(folder)).start()
    bare = await Proc("--bare", str(folder)).start()
    return gateway, bare


async def measure(rounds: Rounds, sizes: list[int] | None = None) -> None:
    """Idle CPU and RSS per device of the gateway against bare sessions, per size; method-call p99 at the largest."""
    sizes = sizes or ([100] if rounds.quick else SIZES)
    settle_s, window_s = (6.0, 4.0) if rounds.quick else (15.0, 20.0)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        generate_key_pair(folder / "trust")
        async with Fleet(folder / "edges", folder / "trust") as fleet:
            # The same processes with no device: what a device adds is measured against them.
            empty = folder / "size-0"
            empty.mkdir()
            (empty / "trust").symlink_to(folder / "trust")
            gw0, bare0 = await _sides(empty, {})
            try:
                await gw0.expect("online")
                await asyncio.sleep(settle_s)
                base_gw, base_bare = await _windows([gw0, bare0], window_s, 1)
                base_gw_rss = base_gw[0].rss_mib
                base_gw_cpu = base_gw[0].cpu_percent
                base_bare_rss = base_bare[0].rss_mib
                base_bare_cpu = base_bare[0].cpu_percent
            finally:
                await gw0.stop()
                await bare0.stop()
            for size in sizes:
                await fleet.add(size - len(fleet.urls))
                side = folder / f"size-{size}"
                side.mkdir()
                (side / "trust").symlink_to(folder / "trust")
                started = time.monotonic()
                gw, bare = await _sides(side, dict(fleet.urls))
                try:
                    await gw.expect("online", 900)
                    online_s = time.monotonic() - started
                    await bare.expect("online", 900)
                    await asyncio.sleep(settle_s)
                    ours, theirs = await _windows([gw, bare], window_s, rounds.count)
                    print(
                        f"{'':16} {size} devices: gateway start to all online {online_s:.1f} s; "
                        f"no-device gateway {base_gw_cpu:.2f} % / {base_gw_rss:.0f} MiB, bare {base_bare_cpu:.2f} % "
                        f"/ {base_bare_rss:.0f} MiB",
                        flush=True,
                    )
                    await rounds.pair(
                        f"{size} idle devices: CPU per device",
                        "% core",
                        _replay([max(w.cpu_percent - base_gw_cpu, 0) / size for w in ours]),
                        _replay([max(w.cpu_percent - base_bare_cpu, 0) / size for w in theirs]),
                        "bare asyncua sessions, one subscription each (same interval, keep-alive)",
                    )
                    await rounds.pair(
                        f"{size} idle devices: gateway CPU",
                        "% core",
                        _replay([w.cpu_percent for w in ours]),
                        _replay([w.cpu_percent for w in theirs]),
                        "the bare sessions' process",
                    )
                    await rounds.pair(
                        f"{size} idle devices: RSS per device",
                        "MiB",
                        _replay([(w.rss_mib - base_gw_rss) / size for w in ours]),
                        _replay([(w.rss_mib - base_bare_rss) / size for w in theirs]),
                        "bare asyncua sessions, one subscription each",
                    )
                    if size == sizes[-1]:
                        url = (await _ready_url(gw)).split(" ", 1)[1]
                        calls = 50 if rounds.quick else 200
                        first = next(iter(fleet.urls.items()))
                        mine, floor = await _call_times(url, first, calls, rounds.count)
                        figure = await rounds.pair(
                            f"{size} devices: method call",
                            "ms",
                            _replay_rounds(mine),
                            _replay_rounds(floor),
                            "a Read of CurrentTime on the same gateway, same rounds",
                        )
                        print(
                            f"{'':16} method call p99 {figure.modelline.p99:.2f} ms (Read p99 {figure.floor.p99:.2f})",
                            flush=True,
                        )
                finally:
                    await gw.stop()
                    await bare.stop()


async def _ready_url(proc: Proc) -> str:
    return next(line for line in proc.lines if line.startswith("ready "))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--devices", type=int, nargs="+", default=SIZES)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--gateway", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--bare", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    if args.gateway is not None:
        if os.environ.get("FLEET_TRACEMALLOC"):
            tracemalloc.start()
        asyncio.run(_gateway_side(args.gateway))
        return
    if args.bare is not None:
        asyncio.run(_bare_side(args.bare))
        return
    print_header()
    asyncio.run(measure(Rounds("fleet", args.rounds, quick=args.quick), args.devices))


if __name__ == "__main__":
    main()
