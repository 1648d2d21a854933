"""Tag-to-prediction latency through an edge node at publishing intervals 0, 10 and 100 ms, next to the bare relay.

Floor (``bench.edge_setup.Relay``): a server subscribed to the source's tags runs the same model in onnxruntime on
each change and writes the result into a variable of its own; a client subscribed to that variable times the
source write to the notification: two OPC UA hops and one inference. ModelLine: the same write reaches the edge
node's input subscription, the pipeline runs the model and the output change reaches a client subscribed to the
prediction. Both sides and both hops use the same publishing interval; at 0 a server publishes each change as soon
as it happens (asyncua: no publishing timer). The model is a sum over 5 tags (microseconds per run).

    python -m bench --only edge_latency                  # as part of the suite
    python -m bench.edge_latency --writes 200            # on its own
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import tempfile
import time
from pathlib import Path

from asyncua import Client, ua

from bench.edge_setup import (
    Arrivals,
    Relay,
    TagServer,
    binding,
    build,
    edge_settings,
    install_everywhere,
    output_id,
    session,
)
from bench.suite import Rounds, print_header
from edge_node.app import EdgeNode
from sdk.di_client import set_binding

INTERVALS_MS = (0, 10, 100)
TAGS = 5


async def _latencies(
    client: Client, node_id: ua.NodeId, tags: TagServer, writes: int, offset: int, interval_ms: int
) -> list[float]:
    """Time ``writes`` source writes to the first notification each causes on ``node_id``."""
    arrivals = Arrivals()
    sub = await client.create_subscription(interval_ms, arrivals)
    await sub.subscribe_data_change(client.get_node(node_id), queuesize=1, sampling_interval=0.0)
    await asyncio.sleep(0.2 + 2 * interval_ms / 1000.0)
    samples = []
    for i in range(writes):
        arrivals.clear()
        start = time.perf_counter()
        await tags.write(0, 1000.0 + (offset + i) % 500 + 0.5)  # every write changes the value
        try:
            await asyncio.wait_for(arrivals.event.wait(), 5)
        except TimeoutError:
            continue
        samples.append((arrivals.time - start) * 1000.0)
        await asyncio.sleep(0.002 + interval_ms / 1000.0 * 2)  # let the previous publish cycle drain
    await sub.delete()
    if not samples:
        raise RuntimeError("no write reached the subscriber")
    return samples


async def measure(rounds: Rounds, writes: int | None = None) -> None:
    """Figures: tag-to-prediction latency at publishing intervals 0, 10 and 100 ms, ModelLine vs the bare relay."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        built = await asyncio.to_thread(build, root / "pkg", TAGS)
        tags = await TagServer(TAGS).start()
        relay = await Relay(tags.url, [n.to_string() for n in tags.ids], built.model, INTERVALS_MS[0]).start()
        try:
            async with EdgeNode(edge_settings(root, built, plc=tags.url)) as node:
                await install_everywhere(node, built, tags, INTERVALS_MS[0])
                async with session(node.url) as edge, session(relay.url) as relayed:
                    done = 0
                    for interval in INTERVALS_MS:
                        count = writes or _writes(rounds.quick, interval)
                        await relay.set_interval(interval)
                        await set_binding(edge, "p0", binding(tags, TAGS, interval))
                        await asyncio.sleep(0.5)  # the edge node re-subscribes to its inputs

                        async def ours(interval: int = interval, count: int = count) -> list[float]:
                            nonlocal done
                            done += count
                            return await _latencies(edge, output_id("p0"), tags, count, done, interval)

                        async def floor(interval: int = interval, count: int = count) -> list[float]:
                            nonlocal done
                            done += count
                            return await _latencies(relayed, relay.outputs[0], tags, count, done, interval)

                        await rounds.pair(
                            f"tag-to-prediction, interval {interval} ms",
                            "ms",
                            ours,
                            floor,
                            f"bare two-hop relay with onnxruntime, publishing interval {interval} ms",
                        )
        finally:
            await relay.stop()
            await tags.stop()


def _writes(quick: bool, interval_ms: int) -> int:
    if interval_ms >= 100:
        return 5 if quick else 30
    return 20 if quick else 150


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--writes", type=int, help="writes per round (default: by interval)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    print_header()
    asyncio.run(measure(Rounds("edge_latency", args.rounds, quick=args.quick), args.writes))


if __name__ == "__main__":
    main()
