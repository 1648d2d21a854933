"""Fleet: what one gateway spends per connected edge device, at 100, 500 and 1,000 devices.

Edge side (this process): ``bench.fleet_sim.Fleet``, real edge nodes without a PLC, each
serving many endpoints (one gateway link per endpoint: its own session and subscription).
Gateway side (a process of its own, so its CPU time and RSS are its own: /proc): the real
``Gateway`` with the devices in its store before it starts, as after a restart; it connects
to every device and idles. The floor (a process of its own too): the same number of bare
asyncua client sessions with one subscription each (the device's DeviceHealth and pipeline
States, the gateway's publishing interval and keep-alive), nothing else. Both sides' sessions are
signed and encrypted (Basic256Sha256 or stronger, certificates from the test CA of tests/tls.py):
the devices are edge nodes, which take no other sessions.

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
import statistics
import sys
import tempfile
import time
import tracemalloc
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from asyncua import ua

from bench.fleet_sim import Fleet, connect, seed_client
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
CONNECT_BATCH = 25  # the floor's sessions connecting at once, as the gateway's default device_connect_concurrency
CONNECT_TRIES = 5
STALLED_S = 60.0  # the gateway side gives up when no further device link came up for this long (refused links)


def _seed(folder: Path) -> None:
    """The side processes' PKI folders, from this process's test CA (which the devices trust): the gateway's in
    its data folder, the floor's client certificate in ``client-pki``."""
    from gateway.identity import GATEWAY_NAME, INSTANCE_URI  # noqa: PLC0415
    from tests.tls import seed  # noqa: PLC0415

    seed(folder / "gateway" / "pki", INSTANCE_URI, GATEWAY_NAME)
    seed_client(folder / "client-pki")


class Proc:
    """A side process of this benchmark: started with ``args``, ready when it printed ``ready``."""

    def __init__(self, *args: str) -> None:
        self.args = args
        self.proc: asyncio.subprocess.Process | None = None
        self.lines: list[str] = []

    async def start(self) -> Proc:
        await asyncio.to_thread(_seed, Path(self.args[1]))
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

    @property
    def ready_url(self) -> str:
        """The endpoint URL the side printed with ``ready`` (the gateway side's)."""
        return next(line for line in self.lines if line.startswith("ready ")).split(" ", 1)[1]

    async def expect(self, word: str, within_s: float = 600) -> str:
        assert self.proc is not None
        assert self.proc.stdout is not None
        deadline = time.monotonic() + within_s
        while True:
            left = deadline - time.monotonic()
            try:
                line = (await asyncio.wait_for(self.proc.stdout.readline(), max(left, 0.1))).decode().strip()
            except TimeoutError:
                raise RuntimeError(f"{self.args[0]} printed no {word!r} within {within_s:.0f} s") from None
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
    settings = GatewaySettings(  # data/pki seeded by the parent (_seed): its test CA issued the devices' certificates
        endpoint=f"opc.tcp://127.0.0.1:{free_port()}/gateway/",
        data_dir=data,
        trust_dir=folder / "trust",
        anonymous_role="Engineer",
        backup_interval_s=0,
    )
    async with Gateway(settings) as gateway:
        print(f"ready {gateway.url}", flush=True)
        links = list(gateway.devices.links.values())
        progress = time.monotonic()
        up = 0
        while waiting := [link for link in links if not link.online]:
            if len(links) - len(waiting) > up:
                up, progress = len(links) - len(waiting), time.monotonic()
            elif time.monotonic() - progress > STALLED_S:  # refused or unreachable: fail, do not wait forever
                raise RuntimeError(f"{len(waiting)} of {len(links)} device links did not come up")
            print(f"{len(waiting)} of {len(links)} device links not up yet", file=sys.stderr, flush=True)
            await waiting[0].wait_online(10.0)
        print("online", flush=True)
        if os.environ.get("FLEET_TRACEMALLOC"):  # where a device's memory goes (bench/RESULTS.md)
            await asyncio.sleep(10)
            snapshot = tracemalloc.take_snapshot()
            for stat in snapshot.statistics("filename")[:25]:
                print(stat, file=sys.stderr, flush=True)
            _growth_on_sigusr1(snapshot)
        await _until_signalled()


def _growth_on_sigusr1(first: tracemalloc.Snapshot) -> None:
    """With FLEET_TRACEMALLOC: each SIGUSR1 prints what was allocated, and is still held, since the last one."""
    last = [first]

    def dump() -> None:
        now = tracemalloc.take_snapshot()
        for stat in now.compare_to(last[0], "traceback")[:15]:
            print(stat, file=sys.stderr)
            for line in stat.traceback.format()[-12:]:
                print("   ", line, file=sys.stderr)
        print("---", file=sys.stderr, flush=True)
        last[0] = now

    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, dump)


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

    pki = folder / "client-pki"  # seeded by the parent (_seed)

    async def one(url: str) -> None:
        client = connect(url, pki_dir=pki)
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

    # Signed and encrypted sessions cost both sides RSA work: at most CONNECT_BATCH handshakes at once (the
    # gateway's links are limited the same way, device_connect_concurrency), and a session that did not come up
    # (a time-out while the simulated devices' process is busy with the gateway's) is tried again.
    gate = asyncio.Semaphore(CONNECT_BATCH)

    async def gated(url: str) -> None:
        for attempt in range(1, CONNECT_TRIES + 1):
            async with gate:
                try:
                    await one(url)
                except (OSError, TimeoutError, ua.UaError) as exc:
                    if attempt == CONNECT_TRIES:
                        raise
                    print(f"bare session to {url} failed ({exc!r}); trying again", file=sys.stderr, flush=True)
                else:
                    return
            await asyncio.sleep(attempt)

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


async def _sides(folder: Path, urls: dict[str, str]) -> tuple[Proc, Proc, float]:
    """The gateway, once its links are all up (and the seconds that took), then the floor, once its sessions are:
    one after the other, so that neither's handshakes slow the other's on the shared simulated devices."""
    await asyncio.to_thread(_write_devices, folder, urls)
    started = time.monotonic()
    gateway = await Proc("--gateway", str(folder)).start()
    try:
        await gateway.expect("online", 900)
        online_s = time.monotonic() - started
        bare = await Proc("--bare", str(folder)).start()
    except BaseException:
        await gateway.stop()
        raise
    try:
        await bare.expect("online", 900)
    except BaseException:
        await gateway.stop()
        await bare.stop()
        raise
    return gateway, bare, online_s


async def measure(rounds: Rounds, sizes: list[int] | None = None, with_rollout: bool = True) -> None:
    """Idle CPU and RSS per device of the gateway against bare sessions, per size; method-call p99 at the largest."""
    sizes = sizes or ([100] if rounds.quick else SIZES)
    settle_s, window_s = (3.0, 3.0) if rounds.quick else (45.0, 20.0)  # past the monitor's first polls
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        generate_key_pair(folder / "trust")
        async with Fleet(folder / "edges", folder / "trust") as fleet:
            # The same processes with no device, kept running and measured in the same windows: what a device adds
            # is the difference, under the same load from elsewhere.
            empty = folder / "size-0"
            empty.mkdir()
            (empty / "trust").symlink_to(folder / "trust")
            gw0, bare0, _ = await _sides(empty, {})
            try:
                for size in sizes:
                    await fleet.add(size - len(fleet.urls))
                    side = folder / f"size-{size}"
                    side.mkdir()
                    (side / "trust").symlink_to(folder / "trust")
                    gw, bare, online_s = await _sides(side, dict(fleet.urls))
                    try:
                        await asyncio.sleep(settle_s)
                        ours, theirs, gw_base, bare_base = await _windows(
                            [gw, bare, gw0, bare0], window_s, rounds.count
                        )
                        base_gw_cpu = statistics.median(w.cpu_percent for w in gw_base)
                        base_gw_rss = statistics.median(w.rss_mib for w in gw_base)
                        base_bare_cpu = statistics.median(w.cpu_percent for w in bare_base)
                        base_bare_rss = statistics.median(w.rss_mib for w in bare_base)
                        print(
                            f"{'':16} {size} devices: gateway start to all online {online_s:.1f} s; no-device "
                            f"gateway {base_gw_cpu:.2f} % / {base_gw_rss:.0f} MiB, bare {base_bare_cpu:.2f} % / "
                            f"{base_bare_rss:.0f} MiB",
                            flush=True,
                        )
                        await rounds.pair(
                            f"{size} idle devices: CPU per device",
                            "% core",
                            _replay(
                                [
                                    max(w.cpu_percent - b.cpu_percent, 0) / size
                                    for w, b in zip(ours, gw_base, strict=True)
                                ]
                            ),
                            _replay(
                                [
                                    max(w.cpu_percent - b.cpu_percent, 0) / size
                                    for w, b in zip(theirs, bare_base, strict=True)
                                ]
                            ),
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
                            url = gw.ready_url
                            calls = 30 if rounds.quick else 200
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
                                f"{'':16} method call p99 {figure.modelline.p99:.2f} ms "
                                f"(Read p99 {figure.floor.p99:.2f})",
                                flush=True,
                            )
                    finally:
                        await gw.stop()
                        await bare.stop()
            finally:
                await gw0.stop()
                await bare0.stop()
        if with_rollout and not rounds.quick:  # 100 edge nodes of their own take minutes to start: full runs only
            await rollout(rounds, folder)


ROLLOUT_DEVICES, WAVE = 100, 25


def _packages(folder: Path, key: Path, versions: list[str]) -> list[Path]:
    """The example pump model packaged once per version, signed with ``key``."""
    from sdk.examples import example_dir  # noqa: PLC0415
    from sdk.keys import load_private_key  # noqa: PLC0415
    from sdk.package.build import build_package  # noqa: PLC0415
    from sdk.package.spec import PackageSpec  # noqa: PLC0415

    example = example_dir()
    private = load_private_key(key)
    spec = PackageSpec.load(example / "spec.toml")
    return [
        build_package(
            example / "model.onnx",
            folder / f"pump-{version}.mlpkg",
            name="pump-health",
            version=version,
            spec=spec,
            private_key=private,
        ).path
        for version in versions
    ]


async def _deployment_state(manager: Any, ml: int, deployment: str) -> int:
    folder = await manager.get_child(f"{ml}:Deployments")
    node = await folder.get_child(f"{folder.nodeid.NamespaceIndex}:{deployment}")
    return int(await (await node.get_child(f"{ml}:State")).read_value())


async def _bare_update(url: str, package: Path) -> None:
    """The DI software update of one device as the gateway drives it, with nothing around it."""
    from sdk.di_client import SoftwareUpdateClient  # noqa: PLC0415

    client = connect(url, timeout=120)
    await client.connect()
    try:
        su = await SoftwareUpdateClient.find(client)
        await su.set_confirmation_timeout(60)
        await su.install(await su.transfer(package))
        await su.confirm()
    finally:
        await client.disconnect()


async def rollout(rounds: Rounds, folder: Path) -> None:
    """A new version to ROLLOUT_DEVICES devices in waves of WAVE through the gateway, against the bare DI update
    loop driving the same devices in the same waves from one process."""
    from nodesets.ids import DeploymentState  # noqa: PLC0415
    from sdk.file_client import upload  # noqa: PLC0415

    ours_versions = [f"1.0.{n}" for n in range(rounds.count)]
    bare_versions = [f"2.0.{n}" for n in range(rounds.count)]
    packages = await asyncio.to_thread(
        _packages, folder, folder / "trust" / "signing.key", ours_versions + bare_versions
    )
    ours_packages, bare_packages = packages[: rounds.count], packages[rounds.count :]
    async with Fleet(folder / "rollout-edges", folder / "trust", per_space=1) as fleet:
        started = time.monotonic()
        await fleet.add(ROLLOUT_DEVICES)
        print(f"{'':16} {ROLLOUT_DEVICES} edge nodes started in {time.monotonic() - started:.0f} s", flush=True)
        side = folder / "rollout"
        await asyncio.to_thread(_write_devices, side, dict(fleet.urls))
        (side / "trust").symlink_to(folder / "trust")
        gateway = await Proc("--gateway", str(side)).start()
        try:
            await gateway.expect("online", 900)
            url = gateway.ready_url
            client = connect(url, timeout=60)
            await client.connect()
            try:
                ml = await client.get_namespace_index(ML)
                manager = await client.nodes.objects.get_child(f"{ml}:ModelManager")
                for package in ours_packages:
                    await upload(client, await manager.get_child(f"{ml}:Upload"), package, ua.Variant())
                ours = iter(ours_versions)
                bare = iter(bare_packages)
                targets = ua.Variant(list(fleet.urls), ua.VariantType.String)
                options = ua.Variant(json.dumps({"waves": WAVE, "confirmation_timeout_s": 60}), ua.VariantType.String)

                async def deploy() -> list[float]:
                    start = time.perf_counter()
                    if os.environ.get("FLEET_PYSPY"):  # profile the gateway during the rollout (bench/RESULTS.md)
                        assert gateway.proc is not None
                        spy = Path(sys.executable).parent / "py-spy"
                        profile = os.environ["FLEET_PYSPY"]
                        await asyncio.create_subprocess_exec(
                            str(spy),
                            "record",
                            "-p",
                            str(gateway.proc.pid),
                            "-d",
                            "45",
                            "-r",
                            "50",
                            "-f",
                            "raw",
                            "-o",
                            profile,
                            "--nonblocking",
                            stdout=asyncio.subprocess.DEVNULL,
                        )
                    version = ua.Variant(next(ours), ua.VariantType.String)
                    model = ua.Variant("pump-health", ua.VariantType.String)
                    deployment = str(await manager.call_method(f"{ml}:Deploy", model, version, targets, options))
                    while True:
                        state = await _deployment_state(manager, ml, deployment)
                        if state in (DeploymentState.ACTIVE, DeploymentState.FAILED):
                            break
                        await asyncio.sleep(0.2)
                    if state != DeploymentState.ACTIVE:
                        raise RuntimeError(f"deployment {deployment} ended {DeploymentState(state).name}")
                    return [time.perf_counter() - start]

                async def bare_loop() -> list[float]:
                    start = time.perf_counter()
                    package = next(bare)
                    urls = list(fleet.urls.values())
                    for first in range(0, len(urls), WAVE):
                        await asyncio.gather(*(_bare_update(u, package) for u in urls[first : first + WAVE]))
                    return [time.perf_counter() - start]

                await rounds.pair(
                    f"rollout to {ROLLOUT_DEVICES} devices, waves of {WAVE}",
                    "s",
                    deploy,
                    bare_loop,
                    "bare DI update loop (transfer, install, confirm), same devices and waves",
                )
            finally:
                await client.disconnect()
        finally:
            await gateway.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--devices", type=int, nargs="+", default=SIZES)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rollout", action="store_true", help="the rollout figure only")
    parser.add_argument("--no-rollout", action="store_true", help="the idle figures only")
    parser.add_argument("--gateway", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--bare", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    if args.gateway is not None:
        if os.environ.get("FLEET_TRACEMALLOC"):
            tracemalloc.start(int(os.environ["FLEET_TRACEMALLOC"]))
        asyncio.run(_gateway_side(args.gateway))
        return
    if args.bare is not None:
        asyncio.run(_bare_side(args.bare))
        return
    print_header()
    collected = Rounds("fleet", args.rounds, quick=args.quick)
    if args.rollout:
        asyncio.run(_rollout_only(collected))
        return
    asyncio.run(measure(collected, args.devices, with_rollout=not args.no_rollout))


async def _rollout_only(rounds: Rounds) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        generate_key_pair(Path(tmp) / "trust")
        await rollout(rounds, Path(tmp))


if __name__ == "__main__":
    main()
