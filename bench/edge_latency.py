"""Tag-to-prediction latency through an edge node, next to a bare two-hop asyncua relay in the same run.

Floor: a relay server subscribed to the PLC tag writes each value into a variable
of its own, and a client subscribed to that variable times the PLC write to the
notification: two OPC UA hops, no model. ModelLine: the same write reaches the
edge node's subscription, runs the pump model in onnxruntime and the output
change reaches a client subscribed to the prediction (two hops plus inference).
Every subscription uses the same publishing interval (the binding's smallest).

    python -m bench --only edge_latency                  # as part of the suite
    python -m bench.edge_latency --writes 200            # on its own
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

from asyncua import Server, ua

from bench.suite import Rounds, print_header
from edge_node.app import EdgeNode
from sdk.di_client import SoftwareUpdateClient, set_binding
from sdk.examples import example_dir
from sdk.keys import generate_key_pair, load_private_key
from sdk.opcua.ports import free_port
from sdk.opcua.shelf import init_server
from sdk.package.build import build_package
from sdk.package.spec import PackageSpec
from tests.edge_harness import HEALTHY, SimulatedPlc
from tests.tls import Client, EdgeSettings  # the node trusts this client; the PLC link is encrypted too

INTERVAL_MS = 10  # the binding's smallest publishing interval


class _Arrivals:
    def __init__(self) -> None:
        self.time = 0.0
        self.event = asyncio.Event()

    def datachange_notification(self, node: Any, value: Any, data: Any) -> None:
        if not self.event.is_set():
            self.time = time.perf_counter()
            self.event.set()


class _Relay:
    """The floor: a server that mirrors the PLC's speed tag into a variable of its own, nothing else."""

    def __init__(self, plc: SimulatedPlc) -> None:
        self.plc = plc
        self.server = Server()
        self.url = f"opc.tcp://127.0.0.1:{free_port()}/relay/"
        self.node: Any = None
        self._client: Client | None = None

    async def start(self) -> None:
        await init_server(self.server)
        self.server.set_endpoint(self.url)
        ns = await self.server.register_namespace("urn:bench:relay")
        self.node = await self.server.nodes.objects.add_variable(ua.NodeId("speed", ns), f"{ns}:speed", 0.0)
        await self.server.start()
        self._client = Client(self.plc.url)
        await self._client.connect()
        sub = await self._client.create_subscription(INTERVAL_MS, self)
        await sub.subscribe_data_change(self._client.get_node(self.plc.node_id("speed")), queuesize=1)

    def datachange_notification(self, node: Any, value: Any, data: Any) -> None:
        dv = data.monitored_item.Value
        asyncio.get_running_loop().create_task(self.server.write_attribute_value(self.node.nodeid, dv))

    async def stop(self) -> None:
        if self._client is not None:
            await self._client.disconnect()
        await self.server.stop()


async def _latencies(client: Client, node_id: ua.NodeId, plc: SimulatedPlc, writes: int, offset: int) -> list[float]:
    """Time ``writes`` PLC writes to the first notification each causes on ``node_id``."""
    arrivals = _Arrivals()
    sub = await client.create_subscription(INTERVAL_MS, arrivals)
    await sub.subscribe_data_change(client.get_node(node_id), queuesize=1)
    await asyncio.sleep(0.3)
    samples = []
    for i in range(writes):
        arrivals.event.clear()
        start = time.perf_counter()
        await plc.write("speed", 1400.0 + (offset + i) % 200 + 0.5)  # every write changes the value
        try:
            await asyncio.wait_for(arrivals.event.wait(), 5)
        except TimeoutError:
            continue
        samples.append((arrivals.time - start) * 1000.0)
        await asyncio.sleep(INTERVAL_MS / 1000.0 * 2)  # let the previous publish cycle drain
    await sub.delete()
    if not samples:
        raise RuntimeError("no write reached the subscriber")
    return samples


async def measure(rounds: Rounds, writes: int | None = None) -> None:
    """Figure: tag-to-prediction latency p50 and p99, ModelLine vs the bare relay."""
    writes = writes or (20 if rounds.quick else 100)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
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
        relay = _Relay(plc)
        await relay.start()
        settings = EdgeSettings(
            endpoint=f"opc.tcp://127.0.0.1:{free_port()}/edge/",
            data_dir=root / "edge",
            trust_dir=root / "keys",
            anonymous_role="Engineer",  # a benchmark on loopback installs without a login
        )
        try:
            async with EdgeNode(settings) as node, Client(node.url) as edge, Client(relay.url) as relayed:
                su = await SoftwareUpdateClient.find(edge)
                await su.install(await su.transfer(package))
                binding = plc.binding()
                binding["publishing_interval_ms"] = INTERVAL_MS
                await set_binding(edge, "main", json.dumps(binding))
                output = ua.NodeId.from_string("ns=1;s=InferenceServer.Pipelines.main.Outputs.remaining_life")
                done = 0

                async def ours() -> list[float]:
                    nonlocal done
                    done += writes
                    return await _latencies(edge, output, plc, writes, done)

                async def floor() -> list[float]:
                    nonlocal done
                    done += writes
                    return await _latencies(relayed, relay.node.nodeid, plc, writes, done)

                await rounds.pair(
                    "tag-to-prediction latency",
                    "ms",
                    ours,
                    floor,
                    f"bare two-hop asyncua relay, publishing interval {INTERVAL_MS} ms",
                )
        finally:
            await relay.stop()
            await plc.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--writes", type=int, default=100, help="writes per round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    print_header()
    asyncio.run(measure(Rounds("edge_latency", args.rounds, quick=False), args.writes))


if __name__ == "__main__":
    main()
