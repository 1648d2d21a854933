"""Model Monitor ingest over OPC UA: a gateway collecting from 10, 50 and 100 edge record sources.

Edge side (this process): every simulated device is its own OPC UA endpoint (its own asyncua
server, own port) offering the edge node's real ``InferenceServer/Records`` object
(edge_node/opcua/records.py: FetchRecords, AcknowledgeRecords, RecordsReady events) over the
edge node's real durable queue (edge_node/monitor/queue.py, one records.sqlite3 per device),
fed by a generator with ``RATE`` prediction records a second per device instead of a model.
Many endpoints share this process and its event loop: on 2 cores, 100 edge processes would
measure the scheduler, not the gateway. An endpoint costs about 0.8 s to start (its address
space) and 12 MiB, so the endpoints start once and the sizes grow 10 -> 50 -> 100 on them.

Gateway side (its own process, so that its CPU time and RSS are its own: /proc/<pid>/stat and
status): the gateway's record collection exactly as ``Gateway`` wires it: one asyncua session
per device, ``record_collector`` (gateway/opcua/monitor.py: OpcUaRecordSource, the RecordsReady
subscription) running ``Monitor.collect`` (RecordIngest) into one ``MonitorStore``
(monitor.sqlite3), with the gateway's defaults (poll 2 s, 1000 records per fetch). The rest of
the gateway (Model Manager, device registry) is not in it.

Figures per size, each round one steady window (after a warm-up) measured on both sides at once:
records stored per second against records made per second (the floor: keeping up is 1.00x);
gateway CPU % against two floors run after each window in processes of their own: a bare
aiosqlite ``executemany`` loop inserting the same records in batches of the same size (the
store's floor), and a bare asyncua loop calling FetchRecords/AcknowledgeRecords on the same
endpoints at the same cadence, parsing and storing nothing (the wire's floor; its windows run
after the gateway's, once the gateway stopped, so that the two never share the queues), each CPU
time scaled to the same record rate; gateway RSS against the same process with its sessions open, before
collecting. The bare loop's insert capacity (records/s) is printed too.

    python -m bench --only monitor_ingest             # in the suite (--quick: 10 devices, short windows)
    python -m bench.monitor_ingest --devices 10 50    # on its own
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sqlite3
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from asyncua import Client, Server

from bench.suite import Rounds, print_header
from edge_node.monitor.queue import RecordQueue
from edge_node.opcua.pipeline_nodes import create_inference_server
from edge_node.opcua.records import READY_PERIOD_S, RecordNodes
from sdk.monitor.records import LOG_STREAM, PredictionRecord
from sdk.opcua.ids import node_id
from sdk.opcua.ports import free_port
from sdk.opcua.service import new_server

RATE = 10.0
"""Prediction records a second per device (the issue's load: 100 devices x 10/s = 1000/s)."""
TICK_S = 0.1
SIZES = [10, 50, 100]
_CLK_TCK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def _record() -> PredictionRecord:
    return PredictionRecord(
        time=datetime.now(UTC),
        model="pump-health",
        version="1.0.0",
        inputs={
            "vibration_rms": 2.41,
            "bearing_temperature": 61.5,
            "discharge_pressure": 4.2,
            "flow_rate": 112.0,
            "speed": 1477.0,
        },
        outputs={"anomaly_score": 0.12, "remaining_life": 812.0},
        latency_ms=0.8,
        part_key="S00012345",
    )


class EdgeSource:
    """One simulated device: its own endpoint with the edge node's Records object over its own queue."""

    def __init__(self, device: str, folder: Path) -> None:
        self.device = device
        self.url = f"opc.tcp://127.0.0.1:{free_port()}/{device}/"
        self.queue = RecordQueue(folder / device / "records.sqlite3")
        self.server: Server | None = None
        self.made = 0
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        await self.queue.open(["main", LOG_STREAM])
        server, ns, instance_ns = await new_server(
            endpoint=self.url,
            name=f"bench edge {self.device}",
            application_uri=f"urn:modelline:bench:{self.device}",
            product="edge",
            anonymous_role="Operator",  # acknowledging deletes records: Operator (loopback only)
        )
        await create_inference_server(server, ns, instance_ns)
        records = await RecordNodes.create(
            server, ns, server.get_node(node_id("InferenceServer", instance_ns)), self.queue
        )
        await server.start()
        self.server = server
        self._tasks = [asyncio.create_task(self.queue.run()), asyncio.create_task(records.run())]

    def make(self, record: PredictionRecord) -> None:
        self.queue.append("main", record)
        self.made += 1

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.server is not None:
            await self.server.stop()
        await self.queue.close()


async def _generate(sources: list[EdgeSource]) -> None:
    """RATE records a second to each device, every TICK_S; a late tick makes up what it owes."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    made = 0  # per device, since this generator started
    while True:
        await asyncio.sleep(TICK_S)
        due = int((loop.time() - start) * RATE) - made
        record = _record()
        for source in sources:
            for _ in range(due):
                source.make(record)
        made += due


class GatewayProcess:
    """The gateway's record collection in a process of its own."""

    def __init__(self, folder: Path, urls: dict[str, str]) -> None:
        self.folder = folder
        self.urls = urls
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "devices.json").write_text(json.dumps(self.urls), encoding="utf-8")
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.monitor_ingest",
            "--gateway",
            str(self.folder),
            stdout=asyncio.subprocess.PIPE,
            stdin=asyncio.subprocess.DEVNULL,
        )
        assert self.proc.stdout is not None
        while (line := (await asyncio.wait_for(self.proc.stdout.readline(), 300)).decode().strip()) != "connected":
            if not line:
                raise RuntimeError(f"the gateway process ended ({await self.proc.wait()}) before connecting")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def cpu_s(self) -> float:
        """User + system CPU time of the process so far (/proc/<pid>/stat fields 14 and 15)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _CLK_TCK

    def rss_mib(self) -> float:
        return int(Path(f"/proc/{self.pid}/statm").read_text().split()[1]) * _PAGE / 2**20

    def stored(self) -> int:
        with contextlib.closing(sqlite3.connect(f"file:{self.folder / 'monitor.sqlite3'}?mode=ro", uri=True)) as db:
            return int(db.execute("SELECT count(*) FROM predictions").fetchone()[0])

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 30)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


async def _gateway(folder: Path) -> None:
    """The gateway side (``--gateway FOLDER``): collect from every device in FOLDER/devices.json until SIGTERM."""
    from gateway.monitor.service import Monitor  # noqa: PLC0415 - the gateway side only
    from gateway.monitor.store import MonitorStore  # noqa: PLC0415
    from gateway.opcua.monitor import record_collector  # noqa: PLC0415

    urls: dict[str, str] = json.loads((folder / "devices.json").read_text(encoding="utf-8"))
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with MonitorStore.open(folder / "monitor.sqlite3") as store, contextlib.AsyncExitStack() as stack:
        monitor = Monitor(store)  # the gateway's defaults: poll 2 s, 1000 records per fetch
        collect = record_collector(monitor)
        tasks = []
        for device, url in urls.items():
            client = await stack.enter_async_context(Client(url, timeout=30))
            link = SimpleNamespace(device_id=device, view=SimpleNamespace(pipelines={"main": None}))
            tasks.append(asyncio.create_task(collect(link, client)))  # type: ignore[arg-type]
        print("connected", flush=True)
        await stop.wait()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _bare_fetch(folder: Path, seconds: float, windows: int) -> None:
    """The wire floor (``--bare-fetch FOLDER SECONDS``): plain asyncua calls, one session per device, each
    device every READY_PERIOD_S (the RecordsReady cadence the gateway follows): FetchRecords after the last
    sequence fetched, then AcknowledgeRecords up to it; nothing parsed, nothing stored. Prints the CPU time
    of each of ``windows`` timed windows of ``seconds`` and the records fetched in it."""
    from asyncua import ua  # noqa: PLC0415

    from nodesets.ids import MODELLINE_URI  # noqa: PLC0415

    urls: dict[str, str] = json.loads((folder / "devices.json").read_text(encoding="utf-8"))
    fetched = 0
    timing = asyncio.Event()

    async def loop(client: Client) -> None:
        nonlocal fetched
        ml = await client.get_namespace_index(MODELLINE_URI)
        records = await client.nodes.objects.get_child([f"{ml}:InferenceServer", f"{ml}:Records"])
        fetch = await records.get_child(f"{ml}:FetchRecords")
        ack = await records.get_child(f"{ml}:AcknowledgeRecords")
        stream = ua.Variant("main", ua.VariantType.String)
        after = 0
        while True:
            queue_id, texts, _, _ = await records.call_method(
                fetch.nodeid, stream, ua.Variant(after, ua.VariantType.UInt64), ua.Variant(1000, ua.VariantType.UInt32)
            )
            if texts:
                after = int(texts[-1][len('{"sequence":') : texts[-1].index(",")])  # the queue's envelope, unparsed
                if timing.is_set():
                    fetched += len(texts)
                await records.call_method(
                    ack.nodeid,
                    stream,
                    ua.Variant(queue_id, ua.VariantType.String),
                    ua.Variant(after, ua.VariantType.UInt64),
                )
            await asyncio.sleep(READY_PERIOD_S)

    results = []
    async with contextlib.AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(Client(url, timeout=30)) for url in urls.values()]
        tasks = [asyncio.create_task(loop(c)) for c in clients]
        await asyncio.sleep(1.5 * READY_PERIOD_S)  # every loop past its first (backlog) fetch
        timing.set()
        for _ in range(windows):
            fetched, cpu0 = 0, time.process_time()
            await asyncio.sleep(seconds)
            results.append({"cpu_s": time.process_time() - cpu0, "fetched": fetched})
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    print(json.dumps(results), flush=True)


async def _bare_insert(folder: Path, records: int, batch: int) -> None:
    """The floor (``--floor``): insert ``records`` records' JSON with aiosqlite executemany, ``batch`` per
    transaction, into a table keyed like the store's (WAL, synchronous=FULL); print CPU and wall time."""
    import aiosqlite  # noqa: PLC0415

    text = _record().model_dump_json()
    path = folder / "bare.sqlite3"
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    async with aiosqlite.connect(path) as db:
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute("PRAGMA synchronous=FULL")
        await db.execute(
            "CREATE TABLE records (device TEXT, sequence INTEGER, json TEXT, PRIMARY KEY (device, sequence))"
        )
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for start in range(0, records, batch):
            rows = [("edge-000", n, text) for n in range(start, min(records, start + batch))]
            await db.executemany("INSERT INTO records VALUES (?, ?, ?)", rows)
            await db.commit()
        print(json.dumps({"cpu_s": time.process_time() - cpu0, "wall_s": time.perf_counter() - wall0}), flush=True)


async def _floor(*argv: str) -> Any:
    """Run a floor (``--floor`` or ``--bare-fetch``) in a process of its own; what it printed last."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.monitor_ingest", *argv, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await proc.communicate()
    if proc.returncode:
        raise RuntimeError(f"the floor {argv[0]} failed ({proc.returncode})")
    return json.loads(out.decode().strip().splitlines()[-1])


@dataclass
class Window:
    made_per_s: float
    stored_per_s: float
    cpu_percent: float
    rss_mib: float
    insert_cpu_percent: float
    insert_per_s: float
    fetch_cpu_percent: float


async def _window(sources: list[EdgeSource], gateway: GatewayProcess, seconds: float, folder: Path) -> Window:
    """One steady window of the gateway, then the bare insert loop's floor for the same records."""
    made0, cpu0, t0 = sum(s.made for s in sources), gateway.cpu_s(), time.monotonic()
    stored0 = await asyncio.to_thread(gateway.stored)
    await asyncio.sleep(seconds)
    made1, cpu1, t1 = sum(s.made for s in sources), gateway.cpu_s(), time.monotonic()
    stored1 = await asyncio.to_thread(gateway.stored)
    rss = gateway.rss_mib()
    wall, made = t1 - t0, made1 - made0
    # The gateway fetches on each RecordsReady event (at most one a second per device): batches of RATE records.
    batch = max(1, int(RATE * READY_PERIOD_S))
    insert = await _floor("--floor", str(folder), str(max(made, 1)), str(batch))
    return Window(
        made_per_s=made / wall,
        stored_per_s=(stored1 - stored0) / wall,
        cpu_percent=100 * (cpu1 - cpu0) / wall,
        rss_mib=rss,
        insert_cpu_percent=100 * insert["cpu_s"] / wall,  # the same records in the same time
        insert_per_s=max(made, 1) / insert["wall_s"],
        fetch_cpu_percent=0.0,  # measured after the gateway stopped (wire_floor)
    )


def _replay(values: list[float]) -> Any:
    """A sampler that hands out one precomputed round at a time (both sides were measured in one window)."""
    it = iter(values)

    async def sample() -> list[float]:
        return [next(it)]

    return sample


async def measure(rounds: Rounds, sizes: list[int] | None = None) -> None:
    """Figures per size: records stored/s vs made/s, gateway CPU % vs a bare insert loop, gateway RSS."""
    sizes = sizes or ([10] if rounds.quick else SIZES)
    warm_up_s, window_s = (3.0, 3.0) if rounds.quick else (10.0, 20.0)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        sources: list[EdgeSource] = []
        generator: asyncio.Task[None] | None = None
        try:
            for size in sizes:
                while len(sources) < size:
                    source = EdgeSource(f"edge-{len(sources):03d}", folder / "edges")
                    await source.start()
                    sources.append(source)
                active = sources[:size]
                gateway = GatewayProcess(folder / f"gateway-{size}", {s.device: s.url for s in active})
                if generator is not None:
                    generator.cancel()
                generator = asyncio.create_task(_generate(active))
                await gateway.start()
                idle = gateway.rss_mib()  # before collection got going: connected, nothing stored yet
                try:
                    await asyncio.sleep(warm_up_s)
                    windows = [await _window(active, gateway, window_s, folder) for _ in range(rounds.count)]
                finally:
                    await gateway.stop()
                    warnings = (gateway.folder / "gateway.log").read_text(encoding="utf-8").splitlines()
                    for line in warnings[:5]:
                        print(f"{'':16} gateway: {line}", flush=True)
                # The wire floor on the same endpoints once the gateway is gone (the two must not share the queues).
                bare = await _floor("--bare-fetch", str(gateway.folder), str(window_s), str(len(windows)))
                for w, b in zip(windows, bare, strict=True):  # per record fetched, at the rate the gateway was given
                    w.fetch_cpu_percent = 100 * b["cpu_s"] / max(b["fetched"], 1) * w.made_per_s
                await rounds.pair(
                    f"{size} devices x {RATE:g}/s: records stored",
                    "rec/s",
                    _replay([w.stored_per_s for w in windows]),
                    _replay([w.made_per_s for w in windows]),
                    "records made in the same window (keeping up: 1.00x)",
                    better="higher",
                )
                await rounds.pair(
                    f"{size} devices: gateway CPU",
                    "%",
                    _replay([w.cpu_percent for w in windows]),
                    _replay([w.insert_cpu_percent for w in windows]),
                    f"bare aiosqlite executemany of the same records, {RATE * READY_PERIOD_S:g} per commit",
                )
                await rounds.pair(
                    f"{size} devices: gateway CPU (wire floor)",
                    "%",
                    _replay([w.cpu_percent for w in windows]),
                    _replay([w.fetch_cpu_percent for w in windows]),
                    "bare asyncua FetchRecords/AcknowledgeRecords loop, same endpoints, per record at the same rate",
                )
                await rounds.pair(
                    f"{size} devices: gateway RSS",
                    "MiB",
                    _replay([w.rss_mib for w in windows]),
                    _replay([idle for _ in windows]),
                    "the same process with the sessions open, before collecting",
                )
                capacity = min(w.insert_per_s for w in windows)
                batch = f"{RATE * READY_PERIOD_S:g} per commit"
                print(f"{'':16} bare executemany insert capacity ({batch}): {capacity:.0f} rec/s", flush=True)
        finally:
            if generator is not None:
                generator.cancel()
            await asyncio.gather(*(s.stop() for s in sources), return_exceptions=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--devices", type=int, nargs="+", default=SIZES)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--gateway", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--floor", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--bare-fetch", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    if args.gateway is not None:  # its warnings (a link lost, a store write failed) go to gateway.log in its folder
        handler = logging.FileHandler(args.gateway / "gateway.log")
        handler.setLevel(logging.WARNING)
        logging.getLogger().addHandler(handler)
        logging.getLogger("gateway").setLevel(logging.WARNING)
        asyncio.run(_gateway(args.gateway))
        return
    if args.bare_fetch is not None:
        asyncio.run(_bare_fetch(Path(args.bare_fetch[0]), float(args.bare_fetch[1]), int(args.bare_fetch[2])))
        return
    if args.floor is not None:
        asyncio.run(_bare_insert(Path(args.floor[0]), int(args.floor[1]), int(args.floor[2])))
        return
    print_header()
    asyncio.run(measure(Rounds("monitor_ingest", args.rounds, quick=False), args.devices))


if __name__ == "__main__":
    main()
