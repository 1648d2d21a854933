"""Start-up: the command line, an edge node to its first Good prediction, a gateway with a full store.

Every figure is a wall time from spawning a process to the moment it did its job, next to the
same time for a floor spawned the same way with the same interpreter:

- ``modelline --version`` and ``modelline --help`` until they exit; floor: ``python -c pass``.
- ``modelline edge`` on a data folder with an installed, bound model (the address-space cache
  warm) until a client subscribed to its output sees a Good prediction made after the spawn;
  floor: a bare relay process (asyncua server from the same cache, one client subscription to
  the same five PLC tags, onnxruntime on the same model, the output written to a variable)
  measured the same way.
- ``modelline gateway`` with 1,000 model versions and 500 devices in its store (the devices'
  endpoints refuse connections: offline) until a client's session to it is open; floor: a bare
  asyncua server started from the same cache, until a session to it is open. The versions are
  records of one package each under another version number (the gateway reads records and
  manifests at start, never the package files).

ModelLine's side runs as shipped, secure by default: the clients' sessions to the edge node and the
gateway are signed and encrypted (certificates from the test CA of tests/tls.py, which the data
folders trust), as is the edge node's link to the PLC; the floors' sessions are unencrypted.

    python -m bench --only startup
    python -m bench.startup --rounds 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import shutil
import signal
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from asyncua import Client, ua

from bench.suite import Rounds, print_header
from tests import tls

HERE = Path(__file__).resolve().parent
OUTPUT = "ns=1;s=InferenceServer.Pipelines.main.Outputs.remaining_life"
INTERVAL_MS = 10
VERSIONS, DEVICES = 1000, 500


def _cli() -> str:
    return str(Path(sys.executable).parent / "modelline")


async def _run_timed(*argv: str) -> float:
    """Seconds from spawning ``argv`` until it exited (it must succeed)."""
    start = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.DEVNULL)
    if await proc.wait():
        raise RuntimeError(f"{argv} failed ({proc.returncode})")
    return time.perf_counter() - start


def _exits(argv: list[str], runs: int) -> Any:
    async def sample() -> list[float]:
        return [await _run_timed(*argv) * 1000 for _ in range(runs)]

    return sample


async def _connect(url: str, deadline: float) -> Client:
    """A session to ``url`` as soon as it answers (tries every 20 ms until ``deadline``)."""
    while True:
        client = tls.Client(url, timeout=10, watchdog_intervall=600)
        try:
            await client.connect()
        except (OSError, TimeoutError, ua.UaError):
            if time.perf_counter() > deadline:
                raise
            await asyncio.sleep(0.02)
        else:
            return client


class _FirstGood:
    def __init__(self, after: datetime) -> None:
        self.after = after
        self.event = asyncio.Event()

    def datachange_notification(self, node: Any, value: Any, data: Any) -> None:
        dv = data.monitored_item.Value
        made = dv.ServerTimestamp or dv.SourceTimestamp  # the inputs' source time is older: when it was made
        fresh = made is not None and made.replace(tzinfo=UTC) >= self.after
        if dv.StatusCode.is_good() and fresh and value is not None:
            self.event.set()


async def _spawn_until_good(argv: list[str], url: str, node_id: str) -> float:
    """Seconds from spawning ``argv`` until a Good value of ``node_id`` on ``url`` that was made after it."""
    after = datetime.now(UTC)
    start = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.DEVNULL)
    try:
        client = await _connect(url, start + 60)
        try:
            first = _FirstGood(after)
            sub = await client.create_subscription(INTERVAL_MS, first)
            while True:  # the outputs appear once the slot loaded its model, after the server started
                try:
                    await sub.subscribe_data_change(client.get_node(node_id), queuesize=1)
                    break
                except ua.UaStatusCodeError:
                    if time.perf_counter() > start + 60:
                        raise
                    await asyncio.sleep(0.02)
            await asyncio.wait_for(first.event.wait(), 60)
            return time.perf_counter() - start
        finally:
            await client.disconnect()
    finally:
        await _stop(proc)


async def _spawn_until_session(argv: list[str], url: str) -> float:
    """Seconds from spawning ``argv`` until a session to ``url`` is open."""
    start = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.DEVNULL)
    try:
        client = await _connect(url, start + 120)
        elapsed = time.perf_counter() - start
        await client.disconnect()
        return elapsed
    finally:
        await _stop(proc)


async def _stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 30)
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def _relay(plc_url: str, port: int, model: Path) -> None:
    """``--relay PLC PORT MODEL``: the edge floor. A server from the cached address space with one output
    variable, a subscription to the PLC's five tags, onnxruntime on every change, the output written."""
    import numpy as np  # noqa: PLC0415 - the floor's own imports
    import onnxruntime as ort  # noqa: PLC0415
    from asyncua import Server  # noqa: PLC0415

    from sdk.opcua.shelf import init_server  # noqa: PLC0415
    from tests.edge_harness import FEATURES  # noqa: PLC0415

    server = Server()
    await init_server(server)
    server.set_endpoint(f"opc.tcp://127.0.0.1:{port}/relay/")
    await server.register_namespace("urn:bench:relay")
    out = await server.nodes.objects.add_variable(ua.NodeId.from_string(OUTPUT), "1:remaining_life", 0.0)
    session = await asyncio.to_thread(ort.InferenceSession, str(model), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    values: dict[str, float] = {}
    writes: set[asyncio.Task[None]] = set()
    async with server:
        client = Client(plc_url)
        await client.connect()
        loop = asyncio.get_running_loop()
        nodes = {client.get_node(f"ns=2;s=Pump1.{f}").nodeid: f for f in FEATURES}

        class Handler:
            def datachange_notification(self, node: Any, value: Any, data: Any) -> None:
                values[nodes[node.nodeid]] = float(value)
                if len(values) == len(FEATURES):
                    x = np.array([[values[f] for f in FEATURES]], dtype=np.float32)
                    y = float(np.ravel(session.run(None, {name: x})[-1])[-1])
                    dv = ua.DataValue(ua.Variant(y, ua.VariantType.Double), SourceTimestamp=ua.DateTime.now(UTC))
                    dv.ServerTimestamp = dv.SourceTimestamp
                    task = loop.create_task(server.write_attribute_value(out.nodeid, dv))
                    writes.add(task)
                    task.add_done_callback(writes.discard)

        sub = await client.create_subscription(INTERVAL_MS, Handler())
        await sub.subscribe_data_change([client.get_node(n) for n in nodes], queuesize=1)
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        await client.disconnect()


async def _bare_server(port: int) -> None:
    """``--bare-server PORT``: the gateway floor. An asyncua server from the cached address space, serving."""
    from asyncua import Server  # noqa: PLC0415

    from sdk.opcua.shelf import init_server  # noqa: PLC0415

    server = Server()
    await init_server(server)
    server.set_endpoint(f"opc.tcp://127.0.0.1:{port}/bare/")
    async with server:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()


async def _prepare_edge(root: Path) -> tuple[Any, Path, Path, Path, Path]:
    """A PLC, keys, and an edge data folder with the pump model installed and bound (made by a real edge node)."""
    from edge_node.app import EdgeNode  # noqa: PLC0415
    from sdk.di_client import SoftwareUpdateClient, set_binding  # noqa: PLC0415
    from sdk.examples import example_dir  # noqa: PLC0415
    from sdk.keys import generate_key_pair, load_private_key  # noqa: PLC0415
    from sdk.opcua.ports import free_port  # noqa: PLC0415
    from sdk.package.build import build_package  # noqa: PLC0415
    from sdk.package.spec import PackageSpec  # noqa: PLC0415
    from tests.edge_harness import HEALTHY, SimulatedPlc  # noqa: PLC0415

    keys = generate_key_pair(root / "keys")
    example = example_dir()
    package = build_package(
        example / "model.onnx",
        root / "pump.mlpkg",
        name="pump-health",
        version="1.0.0",
        spec=PackageSpec.load(example / "spec.toml"),
        private_key=load_private_key(keys.private_path),
    ).path
    plc = await SimulatedPlc().start()
    await plc.write_all(HEALTHY)
    settings = tls.EdgeSettings(  # its data folder trusts the test CA, which issued the bench client's certificate
        endpoint=f"opc.tcp://127.0.0.1:{free_port()}/edge/",
        data_dir=root / "edge",
        trust_dir=root / "keys",
        anonymous_role="Engineer",
    )
    async with EdgeNode(settings) as node, tls.Client(node.url) as client:
        su = await SoftwareUpdateClient.find(client)
        await su.install(await su.transfer(package))
        binding = plc.binding()
        binding["publishing_interval_ms"] = INTERVAL_MS
        await set_binding(client, "main", json.dumps(binding))
    return plc, root / "edge", root / "keys", example / "model.onnx", package


async def _prepare_gateway(root: Path, trust: Path, package: Path, versions: int, devices: int) -> Path:
    """A gateway data folder whose store holds ``versions`` model versions and ``devices`` devices (all offline)."""
    from gateway.store.base import DeviceRecord, ModelVersionRecord  # noqa: PLC0415
    from gateway.store.sqlite import SqliteStore  # noqa: PLC0415
    from sdk.keys import TrustStore  # noqa: PLC0415
    from sdk.opcua.ports import free_port  # noqa: PLC0415
    from sdk.package.verify import verify_package  # noqa: PLC0415

    data = root / "gateway"
    (data / "packages").mkdir(parents=True)
    verified = await asyncio.to_thread(verify_package, package, TrustStore.load(trust), run_samples=False)
    now = datetime.now(UTC)
    first = ModelVersionRecord.of(verified, now)
    await asyncio.to_thread(shutil.copyfile, package, data / "packages" / f"{first.sha256}.mlpkg")
    manifest = json.loads(first.manifest_json)
    async with SqliteStore.open(data / "gateway.sqlite3") as store:
        for n in range(versions):
            version = f"1.{n // 100}.{n % 100}"
            text = json.dumps({**manifest, "version": version})
            await store.put_model_version(first.model_copy(update={"version": version, "manifest_json": text}))
        for n in range(devices):
            endpoint = f"opc.tcp://127.0.0.1:{free_port()}/edge/"  # nothing listens: the device is offline
            await store.put_device(DeviceRecord(id=f"edge-{n:04d}", endpoint=endpoint, registered_at=now))
    return data


async def measure(rounds: Rounds) -> None:
    """The command line, the edge node's start and the gateway's start, each against its floor."""
    from sdk.opcua.ports import free_port  # noqa: PLC0415

    python = sys.executable
    runs = 3 if rounds.quick else 5
    await rounds.pair(
        "modelline --version",
        "ms",
        _exits([_cli(), "--version"], runs),
        _exits([python, "-c", "pass"], runs),
        "python -c pass, same interpreter",
    )
    await rounds.pair(
        "modelline --help",
        "ms",
        _exits([_cli(), "--help"], runs),
        _exits([python, "-c", "pass"], runs),
        "python -c pass, same interpreter",
    )
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        plc, data_dir, trust, model, package = await _prepare_edge(root)
        try:
            edge_port, relay_port = free_port(), free_port()

            async def edge() -> list[float]:
                argv = [
                    _cli(),
                    "edge",
                    "--endpoint",
                    f"opc.tcp://127.0.0.1:{edge_port}/edge/",
                    "--data-dir",
                    str(data_dir),
                    "--trust",
                    str(trust),
                ]
                return [await _spawn_until_good(argv, f"opc.tcp://127.0.0.1:{edge_port}/edge/", OUTPUT) * 1000]

            async def relay() -> list[float]:
                argv = [python, "-m", "bench.startup", "--relay", plc.url, str(relay_port), str(model)]
                return [await _spawn_until_good(argv, f"opc.tcp://127.0.0.1:{relay_port}/relay/", OUTPUT) * 1000]

            await rounds.pair(
                "edge start to first Good prediction",
                "ms",
                edge,
                relay,
                "bare relay process: cached asyncua server, PLC subscription, onnxruntime (unencrypted; ModelLine's "
                "sessions signed and encrypted)",
            )
        finally:
            await plc.stop()
        versions, devices = (100, 50) if rounds.quick else (VERSIONS, DEVICES)  # quick: a smaller store
        gateway_dir = await _prepare_gateway(root, trust, package, versions, devices)
        gateway_port, bare_port = free_port(), free_port()

        async def gateway() -> list[float]:
            url = f"opc.tcp://127.0.0.1:{gateway_port}/gateway/"
            argv = [_cli(), "gateway", "--endpoint", url, "--data-dir", str(gateway_dir), "--trust", str(trust)]
            tls.seed_process(argv[1:])  # its data folder trusts the test CA, which issued the client certificate
            return [await _spawn_until_session(argv, url) * 1000]

        async def bare() -> list[float]:
            argv = [python, "-m", "bench.startup", "--bare-server", str(bare_port)]
            return [await _spawn_until_session(argv, f"opc.tcp://127.0.0.1:{bare_port}/bare/") * 1000]

        await rounds.pair(
            f"gateway start, {versions} versions + {devices} devices",
            "ms",
            gateway,
            bare,
            "bare asyncua server process from the same cache (its session unencrypted, the gateway's encrypted)",
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--relay", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--bare-server", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    if args.relay:
        asyncio.run(_relay(args.relay[0], int(args.relay[1]), Path(args.relay[2])))
        return
    if args.bare_server:
        asyncio.run(_bare_server(args.bare_server))
        return
    print_header()
    asyncio.run(measure(Rounds("startup", args.rounds, quick=args.quick)))


if __name__ == "__main__":
    main()
