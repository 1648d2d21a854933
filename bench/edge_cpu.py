"""CPU per prediction and sustained predictions per second per core of an edge node, next to the bare relay.

The edge node and the relay (``bench.edge_setup.Relay``: subscription -> onnxruntime -> one write) each run in a
process of their own, and only that process's CPU time (user + system, /proc) is counted; the source tags (one tag
server per side, so the idle side gets no notifications) and the subscriber run in the benchmark's process.

- CPU per prediction: one pipeline over 8 tags at publishing interval 0, closed loop (write a tag, wait for the
  prediction's notification, next): the child's CPU time over the predictions it made. The subscriber's session
  to the edge node is signed and encrypted (the only kind it accepts); the floor is measured twice, with an
  unencrypted session (the bare relay) and with the edge node's security (``relay-secure``).
- Sustained predictions per second per core: the tags are written as fast as the benchmark can for a few seconds;
  predictions made over the child's CPU seconds, with 1, 10 and 50 pipelines over 8 tags and with 8, 64 and 256
  tags feeding one pipeline. Every change of a tag is a trigger; the edge node folds triggers that arrive while it
  runs into the next run (SkippedCount), the relay runs once per notification.

    python -m bench --only edge_cpu
    python -m bench.edge_cpu --quick
    python -m bench.edge_cpu --shapes 8x1 256x1 --profile /tmp/prof   # py-spy raw profiles of the edge node
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from asyncua import ua

from bench.edge_setup import (
    Arrivals,
    Built,
    Relay,
    TagServer,
    binding,
    build,
    cpu_seconds,
    edge_settings,
    output_id,
    session,
)
from bench.suite import Rounds, print_header
from edge_node.app import EdgeNode
from sdk.di_client import SoftwareUpdateClient, set_binding

INTERVAL_MS = 0
SHAPES = [(8, 1), (8, 10), (8, 50), (64, 1), (256, 1)]
"""(input tags, pipelines) of the sustained figures; the quick run takes the first only."""


def _child(kind: str, root: str, built: Built, tags_url: str, tag_ids: list[str], slots: int, conn: Connection) -> None:
    """A child process: the edge node or the relay, answering "count" (predictions so far) until "stop"."""
    logging.basicConfig(level=logging.ERROR)
    asyncio.run(_serve(kind, Path(root), built, tags_url, tag_ids, slots, conn))


async def _serve(
    kind: str, root: Path, built: Built, tags_url: str, tag_ids: list[str], slots: int, conn: Connection
) -> None:
    loop = asyncio.get_running_loop()
    if kind in ("relay", "relay-secure"):
        pki = root / "pki" if kind == "relay-secure" else None
        relay = await Relay(tags_url, tag_ids, built.model, INTERVAL_MS, pipelines=slots, pki_dir=pki).start()
        conn.send((relay.url, [n.to_string() for n in relay.outputs]))
        try:
            while (await loop.run_in_executor(None, conn.recv)) == "count":
                conn.send(relay.predictions)
        finally:
            await relay.stop()
        return
    async with EdgeNode(edge_settings(root, built, slots, plc=tags_url, seed=False)) as node:
        conn.send((node.url, [output_id(slot).to_string() for slot in node.settings.slots]))
        while (await loop.run_in_executor(None, conn.recv)) == "count":
            conn.send(sum(slot.pipeline.status.inference_count for slot in node.slots.values()))


class _Side:
    """One side (edge node or relay) in its own process, with its own tag server."""

    def __init__(self, kind: str, root: Path, built: Built, slots: int) -> None:
        self.kind, self.root, self.built, self.slots = kind, root, built, slots
        self.tags = TagServer(built.inputs)
        self.url = ""
        self.outputs: list[str] = []

    async def start(self) -> _Side:
        await self.tags.start()
        ctx = multiprocessing.get_context("spawn")
        self.conn, theirs = ctx.Pipe()
        if self.kind == "edge":  # its PKI folder from this process's test CA, which the bench clients' certificate has
            await asyncio.to_thread(edge_settings, self.root / self.kind, self.built, self.slots)
        ids = [n.to_string() for n in self.tags.ids]
        self.process = ctx.Process(
            target=_child,
            args=(self.kind, str(self.root / self.kind), self.built, self.tags.url, ids, self.slots, theirs),
            daemon=True,
        )
        self.process.start()
        self.url, self.outputs = await self._ask(None, wait_s=120)
        if self.kind == "edge":
            async with session(self.url) as client:
                for i in range(self.slots):
                    su = await SoftwareUpdateClient.find(client, slot=f"p{i}")
                    await su.install(await su.transfer(self.built.package))
                    await set_binding(client, f"p{i}", binding(self.tags, self.built.inputs, INTERVAL_MS))
        await asyncio.sleep(0.5)  # subscriptions in place
        return self

    async def _ask(self, command: str | None, wait_s: float = 30) -> Any:
        if command is not None:
            self.conn.send(command)
        loop = asyncio.get_running_loop()
        ready = await loop.run_in_executor(None, self.conn.poll, wait_s)
        if not ready:
            raise RuntimeError(f"{self.kind} process did not answer")
        return self.conn.recv()

    async def predictions(self) -> int:
        """Predictions the side made so far (the edge node: InferenceCount of every pipeline)."""
        return int(await self._ask("count"))

    def cpu(self) -> float:
        """CPU seconds the side's process used so far."""
        assert self.process.pid is not None
        return cpu_seconds(self.process.pid)

    async def stop(self) -> None:
        try:
            self.conn.send("stop")
        except OSError:
            pass
        await asyncio.get_running_loop().run_in_executor(None, self.process.join, 30)
        if self.process.is_alive():
            self.process.kill()
        await self.tags.stop()


async def _cpu_per_prediction(
    side: _Side, predictions: int, offset: list[int], profile: Path | None = None
) -> list[float]:
    """Closed loop: ``predictions`` writes, each waited for at the subscriber; the side's CPU ms per prediction."""
    async with session(side.url) as client:
        arrivals = Arrivals()
        sub = await client.create_subscription(INTERVAL_MS, arrivals)
        await sub.subscribe_data_change(
            client.get_node(ua.NodeId.from_string(side.outputs[0])), queuesize=1, sampling_interval=0.0
        )
        await asyncio.sleep(0.3)
        spy = _py_spy(side, 60, profile)
        before_count, before_cpu = await side.predictions(), side.cpu()
        for _ in range(predictions):
            offset[0] += 1
            arrivals.clear()
            await side.tags.write(offset[0] % side.built.inputs, float(offset[0] % 10_000) + 0.5)
            await asyncio.wait_for(arrivals.event.wait(), 10)
        await asyncio.sleep(0.05)
        made = await side.predictions() - before_count
        used = side.cpu() - before_cpu
        await _stop_spy(spy)
        await sub.delete()
    return [used * 1000.0 / max(made, 1)]


def _py_spy(side: _Side, seconds: float, profile: Path | None) -> subprocess.Popen[bytes] | None:
    """py-spy (``record --format raw``, 500 Hz, Python frames only) on the side's process for ``seconds``, if asked."""
    if profile is None:
        return None
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    profile.mkdir(parents=True, exist_ok=True)
    out = profile / f"{side.kind}-{side.built.inputs}x{side.slots}-{time.time_ns()}.txt"
    return subprocess.Popen(
        [spy, "record", "--pid", str(side.process.pid), "--rate", "500", "--format", "raw", "--nonblocking"]
        + ["--duration", str(max(1, int(seconds))), "-o", str(out)],  # stopped sooner by _stop_spy
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def _stop_spy(spy: subprocess.Popen[bytes] | None) -> None:
    """Stop py-spy now (it writes its profile on SIGINT)."""
    if spy is not None:
        spy.send_signal(signal.SIGINT)
        await asyncio.to_thread(spy.wait, 30)


async def _throughput(side: _Side, seconds: float, offset: list[int], profile: Path | None = None) -> list[float]:
    """The tags written as fast as possible for ``seconds``: predictions per CPU second of the side's process."""
    spy = _py_spy(side, seconds, profile)
    before_count, before_cpu = await side.predictions(), side.cpu()
    end = time.monotonic() + seconds
    n = side.built.inputs
    while time.monotonic() < end:
        for _ in range(20):
            offset[0] += 1
            await side.tags.write(offset[0] % n, float(offset[0] % 10_000) + 0.5)
        await asyncio.sleep(0)  # let the tag server publish
    await asyncio.sleep(0.3)  # the last triggers served
    made = await side.predictions() - before_count
    used = side.cpu() - before_cpu
    await _stop_spy(spy)
    return [made / used if used > 0 else 0.0]


async def measure(rounds: Rounds, shapes: list[tuple[int, int]] | None = None, profile: Path | None = None) -> None:
    """Figures: CPU per prediction; sustained predictions per second per core by pipelines and by input tags
    (``shapes``: (tags, pipelines), default SHAPES); with ``profile`` a py-spy profile of each sustained run."""
    quick = rounds.quick
    offset = [0]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)

        async def pair_of(inputs: int, slots: int) -> tuple[_Side, _Side]:
            where = root / f"{inputs}x{slots}"
            built = await asyncio.to_thread(build, where / "pkg", inputs)
            floor = await _Side("relay", where, built, slots).start()
            try:
                ours = await _Side("edge", where, built, slots).start()
            except BaseException:
                await floor.stop()
                raise
            return ours, floor

        seconds = 1.0 if quick else 4.0
        count = 150 if quick else 500
        for inputs, slots in shapes or (SHAPES[:1] if quick else SHAPES):
            ours, floor = await pair_of(inputs, slots)
            try:
                if (inputs, slots) == (8, 1):
                    await rounds.pair(
                        "CPU per prediction (1 pipeline, 8 tags)",
                        "ms CPU",
                        lambda ours=ours: _cpu_per_prediction(ours, count, offset, profile),  # type: ignore[misc]
                        lambda floor=floor: _cpu_per_prediction(floor, count, offset, profile),  # type: ignore[misc]
                        "bare relay process (subscription, onnxruntime, one write), interval 0; unencrypted",
                    )
                    # The same floor with its subscriber's session signed and encrypted like the edge node's.
                    secure = await _Side("relay-secure", root / f"{inputs}x{slots}", ours.built, slots).start()
                    try:
                        await rounds.pair(
                            "CPU per prediction, floor encrypted too",
                            "ms CPU",
                            lambda ours=ours: _cpu_per_prediction(ours, count, offset, profile),  # type: ignore[misc]
                            lambda floor=secure: _cpu_per_prediction(floor, count, offset, profile),  # type: ignore[misc]
                            "the relay with the edge node's security (Basic256Sha256 or stronger, SignAndEncrypt)",
                        )
                    finally:
                        await secure.stop()
                await rounds.pair(
                    f"predictions/s per core ({slots} pipeline{'s' if slots > 1 else ''}, {inputs} tags)",
                    "1/s",
                    lambda ours=ours: _throughput(ours, seconds, offset, profile),  # type: ignore[misc]
                    lambda floor=floor: _throughput(floor, seconds, offset, profile),  # type: ignore[misc]
                    "bare relay process doing the same, tags written as fast as possible",
                    better="higher",
                )
            finally:
                await ours.stop()
                await floor.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--shapes", nargs="*", help="TAGSxPIPELINES, e.g. 8x1 8x10 256x1 (default: all)")
    parser.add_argument("--profile", type=Path, help="a folder for py-spy raw profiles of the sustained runs")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    shapes = [tuple(int(n) for n in s.split("x")) for s in args.shapes] if args.shapes else None
    print_header()
    asyncio.run(measure(Rounds("edge_cpu", args.rounds, quick=args.quick), shapes, args.profile))  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
