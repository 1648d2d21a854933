"""Transfer: each package hop including its commit, push to Active, and the gateway's memory during a wave.

Sides. The gateway runs in a process of its own (``bench.fleet``'s gateway side: the real ``Gateway`` with the
devices in its store), so that its RSS is its own; the edge nodes are real edge nodes in this process
(``bench.fleet_sim.Fleet``, one address space per device); packages are DI packages (.uadipkg) of a MatMul model
of the given size, signed by a plant CA the gateway and the edge nodes trust. Every ModelLine session is signed
and encrypted (the product default). The floor of each hop is the bare chunk loop: a bare asyncua server with
one method that appends its ByteString argument to a file (Open / Write / Close methods), called with the same
chunk size (the server's MaxByteStringLength, 1 MiB) over the same security (the strongest policy both offer,
signed and encrypted, certificates from the test CA), in the same kind of process as the hop's server.

Figures, all at one package size (quick 8 MB, full 100 MB):
- upload hop: ``modelline push``'s upload to the gateway (GenerateFileForWrite, Write per chunk, CloseAndCommit,
  where the gateway verifies the package) against the bare loop to a sink in a process of its own;
- install hop: the DI transfer to an edge node (SoftwareUpdateClient.transfer: the same calls, CloseAndCommit
  verifies and loads the model) against the bare loop to a sink in this process;
- push to Active: upload, Deploy to one device (health_check_s 0: the short look at DeviceHealth is policy,
  not transfer), until the deployment is Active, against both bare loops back to back;
- gateway peak RSS during one wave of WAVE devices (the whole deployment, sampled every 20 ms) against the
  same process just before it. The full run's wave is the target's: 100 devices, 100 MB. Its 100 edge nodes
  hold the model each (~10 GB in this process, ~20 GB of disk for their slots), so that figure has one round.

    python -m bench --only transfer               # in the suite (--quick: 8 MB, 2 devices)
    python -m bench.transfer --size-mb 100 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import aclosing, asynccontextmanager
from pathlib import Path
from typing import Any, BinaryIO

from asyncua import Server, ua
from asyncua.common.methods import uamethod

from bench.fleet import ML, Proc
from bench.fleet_sim import Fleet, connect
from bench.package_verify import big_model
from bench.suite import Rounds, print_header
from sdk.opcua.ports import free_port
from sdk.opcua.security import SECURE_POLICIES
from sdk.package.archive import sha256_file

_PAGE = os.sysconf("SC_PAGE_SIZE")
WAVE_FULL, WAVE_QUICK = 100, 2
SINK_NS = "urn:bench:sink"


class Sink:
    """The floor's server: Open, Write(ByteString) appending to a file in a worker thread, Close."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.url = f"opc.tcp://127.0.0.1:{free_port()}/sink/"
        self.server = Server()
        self._file: BinaryIO | None = None

    async def start(self) -> Sink:
        from sdk.opcua.shelf import init_server  # noqa: PLC0415
        from tests import tls  # noqa: PLC0415

        await init_server(self.server)
        self.server.set_endpoint(self.url)
        cert, key = tls.issue(self.folder / "sink-pki", "urn:bench:sink", "bench sink")
        await self.server.load_certificate(str(cert))
        await self.server.load_private_key(str(key))
        self.server.set_security_policy(list(SECURE_POLICIES))
        ns = await self.server.register_namespace(SINK_NS)
        sink = await self.server.nodes.objects.add_object(ua.NodeId("Sink", ns), f"{ns}:Sink")
        target = self.folder / "sink.bin"

        @uamethod
        async def open_(parent: ua.NodeId) -> None:
            self._file = await asyncio.to_thread(open, target, "wb")

        @uamethod
        async def write(parent: ua.NodeId, data: bytes) -> None:
            assert self._file is not None
            await asyncio.to_thread(_write_through, self._file, data)

        @uamethod
        async def close(parent: ua.NodeId) -> None:
            if self._file is not None:
                await asyncio.to_thread(self._file.close)
                self._file = None

        await sink.add_method(ua.NodeId("Sink.Open", ns), f"{ns}:Open", open_, [], [])
        await sink.add_method(ua.NodeId("Sink.Write", ns), f"{ns}:Write", write, [ua.VariantType.ByteString], [])
        await sink.add_method(ua.NodeId("Sink.Close", ns), f"{ns}:Close", close, [], [])
        await self.server.start()
        return self

    async def stop(self) -> None:
        await self.server.stop()


def _write_through(fh: BinaryIO, data: bytes) -> None:
    fh.write(data)
    fh.flush()  # as FileNode does: a full disk is the Write's error


async def bare_loop(url: str, package: Path, chunk: int = 1 << 20) -> None:
    """The floor of one hop: Open, one Write call per chunk read from the file, Close."""
    from sdk.file_client import _chunks  # noqa: PLC0415 - the same chunked reader as the upload

    client = connect(url, timeout=120)
    await client.connect()
    try:
        ns = await client.get_namespace_index(SINK_NS)
        sink = client.get_node(ua.NodeId("Sink", ns))
        await sink.call_method(ua.NodeId("Sink.Open", ns))
        write = ua.NodeId("Sink.Write", ns)
        async with aclosing(_chunks(package, chunk)) as chunks:
            async for block in chunks:
                await sink.call_method(write, ua.Variant(block, ua.VariantType.ByteString))
        await sink.call_method(ua.NodeId("Sink.Close", ns))
    finally:
        await client.disconnect()


def _packages(folder: Path, size_mb: int, versions: list[str]) -> tuple[list[Path], Path]:
    """DI packages of one MatMul model of about ``size_mb`` MiB, one per version, signed by a plant CA; and the
    folder the gateway and edge nodes trust."""
    from sdk.package.build import build_package  # noqa: PLC0415
    from tests.pki import Pki  # noqa: PLC0415

    pki = Pki(folder)
    signer = pki.issue("bench author")
    model = folder / "big.onnx"
    big_model(model, size_mb)
    built = [
        build_package(model, folder / f"big-{v}.uadipkg", name="big", version=v, identity=signer).path for v in versions
    ]
    model.unlink()
    return built, pki.folder


class PeakRss:
    """Samples a process's RSS every 20 ms while running; ``peak_mib`` is the highest seen."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_mib = 0.0
        self._task: asyncio.Task[None] | None = None

    def now_mib(self) -> float:
        return int(Path(f"/proc/{self.pid}/statm").read_text().split()[1]) * _PAGE / 2**20

    async def __aenter__(self) -> PeakRss:
        self.peak_mib = self.now_mib()

        async def sample() -> None:
            while True:
                self.peak_mib = max(self.peak_mib, self.now_mib())
                await asyncio.sleep(0.02)

        self._task = asyncio.create_task(sample())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        self.peak_mib = max(self.peak_mib, self.now_mib())


@asynccontextmanager
async def _sink_process(folder: Path) -> AsyncIterator[str]:
    """A Sink in a process of its own (the upload hop's floor: the gateway is a process of its own too)."""
    await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.transfer", "--sink", str(folder), stdout=asyncio.subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 120)).decode().split()
        if not line or line[0] != "ready":
            raise RuntimeError(f"the sink process did not start ({await proc.wait()})")
        yield line[1]
    finally:
        if proc.returncode is None:
            proc.terminate()
            await proc.wait()


async def _sink_side(folder: Path) -> None:
    """``--sink FOLDER``: a Sink (its certificate from this process's test CA) until stdin closes or SIGTERM."""
    sink = await Sink(folder).start()
    print(f"ready {sink.url}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await sink.stop()


async def _deploy(manager: Any, ml: int, version: str, devices: list[str], wave: int) -> None:
    """Deploy ``big`` ``version`` to ``devices`` in one wave and wait until it is Active (fail otherwise)."""
    from bench.fleet import _deployment_state  # noqa: PLC0415
    from nodesets.ids import DeploymentState  # noqa: PLC0415

    options = json.dumps({"waves": wave, "health_check_s": 0})
    deployment = str(
        await manager.call_method(
            f"{ml}:Deploy",
            ua.Variant("big", ua.VariantType.String),
            ua.Variant(version, ua.VariantType.String),
            ua.Variant(devices, ua.VariantType.String),
            ua.Variant(options, ua.VariantType.String),
        )
    )
    done = (DeploymentState.ACTIVE, DeploymentState.FAILED)
    state = await _deployment_state(manager, ml, deployment)
    while state not in done:  # polled as an operator's client would: 20 ms
        await asyncio.sleep(0.02)
        state = await _deployment_state(manager, ml, deployment)
    if state != DeploymentState.ACTIVE:
        raise RuntimeError(f"deployment of big {version} ended {DeploymentState(state).name}")


async def measure(rounds: Rounds, size_mb: int | None = None) -> None:
    """Every figure of the module's docstring."""
    from sdk.di_client import SoftwareUpdateClient  # noqa: PLC0415
    from sdk.file_client import upload  # noqa: PLC0415

    size_mb = size_mb or (8 if rounds.quick else 100)
    wave = WAVE_QUICK if rounds.quick else WAVE_FULL
    label = f"{size_mb} MB"
    with tempfile.TemporaryDirectory(prefix="bench-transfer-") as tmp:
        folder = Path(tmp)
        push_versions = [f"1.0.{n}" for n in range(rounds.count)]
        wave_versions = [f"2.0.{n}" for n in range(rounds.count)]
        built, trust = await asyncio.to_thread(_packages, folder, size_mb, ["0.0.1", *push_versions, *wave_versions])
        package, push_packages = built[0], built[1 : 1 + rounds.count]
        async with Fleet(folder / "edges", trust, per_space=1) as fleet, _sink_process(folder / "far") as far:
            await fleet.add(wave)
            devices = list(fleet.urls)
            first = fleet.urls[devices[0]]
            side = folder / "gateway-side"
            side.mkdir()
            (side / "devices.json").write_text(json.dumps(dict(fleet.urls)), encoding="utf-8")
            (side / "trust").symlink_to(trust)
            near = await Sink(folder / "near").start()
            gateway = await Proc("--gateway", str(side)).start()
            try:
                await gateway.expect("online", 300)
                url = gateway.ready_url
                client = connect(url, timeout=120)
                await client.connect()
                edge = connect(first, timeout=120)
                await edge.connect()
                try:
                    ml = await client.get_namespace_index(ML)
                    manager = await client.nodes.objects.get_child(f"{ml}:ModelManager")
                    upload_node = await manager.get_child(f"{ml}:Upload")

                    async def push() -> list[float]:
                        start = time.perf_counter()
                        await upload(client, upload_node, package, ua.Variant())
                        return [(time.perf_counter() - start) * 1000]

                    async def far_loop() -> list[float]:
                        start = time.perf_counter()
                        await bare_loop(far, package)
                        return [(time.perf_counter() - start) * 1000]

                    await rounds.pair(
                        f"upload hop incl. commit, {label}",
                        "ms",
                        push,
                        far_loop,
                        "bare chunk loop (1 MiB Write calls to a file), own process, same security",
                    )

                    su = await SoftwareUpdateClient.find(edge)
                    digest = bytes.fromhex((await asyncio.to_thread(sha256_file, package)).sha256)

                    async def install_hop() -> list[float]:
                        start = time.perf_counter()
                        await su.transfer(package, sha256=digest)  # the hash as the gateway's store knows it
                        return [(time.perf_counter() - start) * 1000]

                    async def near_loop() -> list[float]:
                        start = time.perf_counter()
                        await bare_loop(near.url, package)
                        return [(time.perf_counter() - start) * 1000]

                    await rounds.pair(
                        f"install hop incl. commit, {label}",
                        "ms",
                        install_hop,
                        near_loop,
                        "bare chunk loop (1 MiB Write calls to a file), same process, same security",
                    )

                    versions = iter(zip(push_versions, push_packages, strict=True))

                    async def to_active() -> list[float]:
                        version, path = next(versions)
                        start = time.perf_counter()
                        await upload(client, upload_node, path, ua.Variant())
                        await _deploy(manager, ml, version, devices[:1], 1)
                        return [time.perf_counter() - start]

                    async def both_loops() -> list[float]:
                        start = time.perf_counter()
                        await bare_loop(far, package)
                        await bare_loop(near.url, package)
                        return [time.perf_counter() - start]

                    figure = await rounds.pair(
                        f"push to Active, 1 device, {label}",
                        "s",
                        to_active,
                        both_loops,
                        "both bare chunk loops back to back",
                    )
                    print(f"{'':16} push to Active median {figure.modelline.median:.2f} s (target < 3 s)", flush=True)

                    for path in built[1 + rounds.count :]:
                        await upload(client, upload_node, path, ua.Variant())
                    waves = iter(wave_versions)
                    assert gateway.proc is not None
                    rss = PeakRss(gateway.proc.pid)
                    before: list[float] = []

                    async def wave_peak() -> list[float]:
                        before.append(rss.now_mib())
                        async with rss:
                            await _deploy(manager, ml, next(waves), devices, wave)
                        return [rss.peak_mib]

                    async def idle() -> list[float]:
                        await asyncio.sleep(0.5)
                        return [rss.now_mib()]

                    # one round for a wave of many large models: each round fills every device's slot once more
                    wave_rounds = Rounds(
                        rounds.benchmark, 1 if wave >= 50 else rounds.count, rounds.quick, rounds.figures
                    )
                    figure = await wave_rounds.pair(
                        f"gateway peak RSS, wave of {wave}, {label}",
                        "MiB",
                        wave_peak,
                        idle,
                        "the gateway process just before the wave",
                    )
                    rise = figure.modelline.max - min(before)
                    print(
                        f"{'':16} gateway RSS rise during the wave {rise:.1f} MiB, {rise / wave:.1f} MiB per target "
                        "(target: peak < 300 MiB for a wave of 100)",
                        flush=True,
                    )
                finally:
                    await edge.disconnect()
                    await client.disconnect()
            finally:
                await gateway.stop()
                await near.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--sink", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    if args.sink is not None:
        asyncio.run(_sink_side(args.sink))
        return
    print_header()
    asyncio.run(measure(Rounds("transfer", args.rounds, quick=args.quick), 8 if args.quick else args.size_mb))


if __name__ == "__main__":
    main()
