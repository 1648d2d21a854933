"""Tag-to-prediction latency through an edge node, next to a bare asyncua hop measured in the same run.

Baseline: a client subscribed to a PLC tag, time from the PLC's write to the
client's data-change notification (one OPC UA hop). ModelLine: the same write
reaches the edge node's subscription, runs the pump model in onnxruntime and the
output change reaches a client subscribed to the prediction (two hops plus
inference). Both at the same publishing interval.

    python -m bench.edge_latency                  # 200 writes at 10 ms publishing interval
    python -m bench.edge_latency --writes 1000 --interval-ms 20
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from asyncua import Client, ua

from edge_node.app import EdgeNode
from edge_node.settings import EdgeSettings
from sdk.di_client import SoftwareUpdateClient, set_binding
from sdk.examples import example_dir
from sdk.keys import generate_key_pair, load_private_key
from sdk.package.build import build_package
from sdk.package.spec import PackageSpec
from tests.edge_harness import HEALTHY, SimulatedPlc
from tests.opcua_servers import free_port


class _Arrivals:
    def __init__(self) -> None:
        self.times: list[float] = []
        self.event = asyncio.Event()

    def datachange_notification(self, node: Any, value: Any, data: Any) -> None:
        self.times.append(time.perf_counter())
        self.event.set()


async def _measure(
    client: Client, node_id: ua.NodeId, plc: SimulatedPlc, writes: int, interval_ms: float
) -> list[float]:
    arrivals = _Arrivals()
    sub = await client.create_subscription(interval_ms, arrivals)
    await sub.subscribe_data_change(client.get_node(node_id), queuesize=1)
    await asyncio.sleep(0.5)
    latencies = []
    for i in range(writes):
        arrivals.event.clear()
        arrivals.times.clear()
        start = time.perf_counter()
        await plc.write("speed", 1400.0 + (i % 200))  # every write changes the value
        try:
            await asyncio.wait_for(arrivals.event.wait(), 5)
        except TimeoutError:
            continue
        latencies.append((arrivals.times[0] - start) * 1000.0)
        await asyncio.sleep(interval_ms / 1000.0 * 2)  # let the previous publish cycle drain
    await sub.delete()
    return latencies


def _row(label: str, values: list[float]) -> str:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return f"{label:<34} {statistics.median(ordered):>8.2f} {p99:>8.2f} {len(ordered):>7}"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=200)
    parser.add_argument("--interval-ms", type=float, default=10.0, help="publishing interval of every subscription")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)

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
        settings = EdgeSettings(
            endpoint=f"opc.tcp://127.0.0.1:{free_port()}/edge/", data_dir=root / "edge", trust_dir=root / "keys"
        )
        try:
            async with EdgeNode(settings) as node, Client(node.url) as edge_client, Client(plc.url) as plc_client:
                su = await SoftwareUpdateClient.find(edge_client)
                await su.install(await su.transfer(package))
                binding = plc.binding()
                binding["publishing_interval_ms"] = max(10, int(args.interval_ms))
                await set_binding(edge_client, "main", json.dumps(binding))
                output = ua.NodeId.from_string("ns=1;s=InferenceServer.Pipelines.main.Outputs.remaining_life")
                baseline = await _measure(plc_client, plc.nodes["speed"].nodeid, plc, args.writes, args.interval_ms)
                modelline = await _measure(edge_client, output, plc, args.writes, args.interval_ms)
                status = node.slots["main"].pipeline.status
        finally:
            await plc.stop()

    print(f"publishing interval {args.interval_ms:g} ms, {args.writes} writes; latency in ms")
    print(f"{'path':<34} {'p50':>8} {'p99':>8} {'samples':>7}")
    print(_row("baseline: PLC write -> client", baseline))
    print(_row("ModelLine: PLC write -> prediction", modelline))
    print(
        f"ratio p50 {statistics.median(modelline) / statistics.median(baseline):.2f}x; "
        f"last inference {status.last_latency_ms:.3f} ms, skipped {status.skipped_count}"
    )


if __name__ == "__main__":
    asyncio.run(main())
