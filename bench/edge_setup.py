"""What the edge benchmarks share: a tag server, a model over N tags, the bare relay (their floor), an edge node.

The floor of every edge figure is the bare two-hop relay: a server subscribed to the source's tags keeps their
newest values, runs the same model in onnxruntime on each change (inline) and writes the output into a variable of
its own; a client subscribed to that variable sees the result. That is what tag-to-prediction needs at least: two
OPC UA hops and one inference, nothing else (no status, no mirror, no records).

Every client connection of these benchmarks is made by ``session``: over the strongest secure endpoint the server
offers, with a certificate from the test CA (tests/tls.py), as ModelLine servers refuse anything else; over
SecurityPolicy None to the bare asyncua servers (tag server, relay), which offer nothing else. So ModelLine's side
runs signed and encrypted (the product default) while the floor stays unencrypted, unless the relay is given a PKI
folder (``Relay(pki_dir=...)``): it then offers the edge node's secure policies only (sdk.opcua.security), and
its subscriber's session is signed and encrypted like the edge node's. The edge node's own link to the tag server is
unencrypted by name (``plc_security``), as to a PLC without security, like the relay's.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from asyncua import Client, Server, ua
from asyncua.common.subscription import OverflowPolicy
from onnx import TensorProto, helper, numpy_helper, save

from edge_node.app import EdgeNode
from edge_node.settings import EdgeSettings
from sdk.di_client import SoftwareUpdateClient, set_binding
from sdk.keys import generate_key_pair, load_private_key
from sdk.opcua.ports import free_port
from sdk.opcua.security import SECURE_POLICIES
from sdk.opcua.shelf import init_server
from sdk.package.build import build_package
from sdk.package.spec import PackageSpec
from tests import tls

TAG_NS_URI = "urn:bench:tags"


@asynccontextmanager
async def session(url: str) -> AsyncIterator[Client]:
    """A connected client (anonymous; signed and encrypted where the server offers it), disconnected on exit.

    asyncua's stale-subscription watchdog is stopped: a subscription at publishing interval 0 on an asyncua server
    sends no keep-alives, and the watchdog would re-create it after a second of quiet between rounds.
    """
    client = tls.Client(url, timeout=30)
    await client.connect()
    task = getattr(client, "_stale_watchdog_task", None)
    if isinstance(task, asyncio.Task):
        task.cancel()
    try:
        yield client
    finally:
        await client.disconnect()


class TagServer:
    """The source (a PLC): ``count`` Double tags ns=<ns>;s=T.t<i>."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.url = f"opc.tcp://127.0.0.1:{free_port()}/tags/"
        self.server = Server()
        self.ids: list[ua.NodeId] = []

    async def start(self) -> TagServer:
        await init_server(self.server)
        self.server.set_endpoint(self.url)
        ns = await self.server.register_namespace(TAG_NS_URI)
        for i in range(self.count):
            node = await self.server.nodes.objects.add_variable(
                ua.NodeId(f"T.t{i}", ns), f"{ns}:t{i}", ua.Variant(1.0, ua.VariantType.Double)
            )
            self.ids.append(node.nodeid)
        await self.server.start()
        return self

    async def write(self, index: int, value: float) -> None:
        """A new value of tag ``index``, as a PLC would set it."""
        await self.server.write_attribute_value(
            self.ids[index], ua.DataValue(ua.Variant(value, ua.VariantType.Double), SourceTimestamp=ua.datetime.now())
        )

    async def stop(self) -> None:
        await self.server.stop()


def sum_model(path: Path, inputs: int) -> Path:
    """An ONNX model y = x · 1 over ``inputs`` features (x [1, n] float32 -> y [1, 1]): microseconds per run."""
    ones = numpy_helper.from_array(np.ones((inputs, 1), dtype=np.float32), "ones")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "ones"], ["y"])],
        "sum",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, inputs])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1])],
        [ones],
    )
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


@dataclass(frozen=True)
class Built:
    """A signed package of the sum model over ``inputs`` tags, and where its trust store is."""

    model: Path
    package: Path
    trust_dir: Path
    inputs: int


def build(root: Path, inputs: int) -> Built:
    """Build and sign the sum model's package under ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    keys = generate_key_pair(root / "keys")
    model = sum_model(root / "sum.onnx", inputs)
    spec = PackageSpec.model_validate(
        {
            "inputs": {"x": {"features": [{"name": f"t{i}", "min": -1e9, "max": 1e9} for i in range(inputs)]}},
            "sample_count": 1,
        }
    )
    key = load_private_key(keys.private_path)
    package = build_package(model, root / "sum.mlpkg", name="sum", version="1.0.0", spec=spec, private_key=key).path
    return Built(model, package, root / "keys", inputs)


class Relay:
    """The floor: tags -> subscription -> onnxruntime (inline) -> a variable per pipeline of its own server."""

    def __init__(
        self,
        source: str,
        node_ids: list[str],
        model: Path,
        interval_ms: int,
        pipelines: int = 1,
        pki_dir: Path | None = None,
    ) -> None:
        self.source = source
        self.pki_dir = pki_dir  # with a folder: the edge node's secure endpoints (a certificate of the test CA)
        self.node_ids = node_ids
        self.interval_ms = interval_ms
        self.url = f"opc.tcp://127.0.0.1:{free_port()}/relay/"
        self.server = Server()
        self.outputs: list[ua.NodeId] = []
        self.predictions = 0
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        self.sessions = [
            ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"]) for _ in range(pipelines)
        ]
        self._values = np.ones((1, len(node_ids)), dtype=np.float32)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> Relay:
        await init_server(self.server)
        self.server.set_endpoint(self.url)
        if self.pki_dir is not None:  # as the edge node: signed and encrypted only, the same policies
            pki = await asyncio.to_thread(tls.seed, self.pki_dir, "urn:bench:relay", "bench relay")
            await self.server.load_certificate(str(pki / "own" / "cert.der"))
            await self.server.load_private_key(str(pki / "own" / "key.pem"))
            self.server.set_security_policy(list(SECURE_POLICIES))
        ns = await self.server.register_namespace("urn:bench:relay")
        for i in range(len(self.sessions)):
            node = await self.server.nodes.objects.add_variable(
                ua.NodeId(f"y{i}", ns), f"{ns}:y{i}", ua.Variant(0.0, ua.VariantType.Double)
            )
            self.outputs.append(node.nodeid)
        await self.server.start()
        ready = asyncio.Event()
        self._task = asyncio.create_task(self._run(ready))
        await asyncio.wait_for(ready.wait(), 30)
        return self

    async def set_interval(self, interval_ms: int) -> None:
        """Subscribe again at another publishing interval."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self.interval_ms = interval_ms
        ready = asyncio.Event()
        self._task = asyncio.create_task(self._run(ready))
        await asyncio.wait_for(ready.wait(), 30)

    async def _run(self, ready: asyncio.Event) -> None:
        async with session(self.source) as client:
            params = ua.CreateSubscriptionParameters(
                RequestedPublishingInterval=float(self.interval_ms),
                RequestedLifetimeCount=300,
                RequestedMaxKeepAliveCount=10,
                PublishingEnabled=True,
            )
            sub = await client.create_subscription(params, queue_maxsize=256, overflow=OverflowPolicy.DROP_OLDEST)
            index = {ua.NodeId.from_string(n).to_string(): i for i, n in enumerate(self.node_ids)}
            await sub.subscribe_data_change(
                [client.get_node(n) for n in self.node_ids],
                queuesize=1,
                sampling_interval=0.0 if self.interval_ms == 0 else 50.0,
            )
            ready.set()
            while True:
                event = await sub.next_event(timeout=1.0)
                if event is None or not hasattr(event, "data"):
                    continue
                value = event.data.monitored_item.Value
                self._values[0, index[event.node.nodeid.to_string()]] = value.Value.Value
                for session_, output in zip(self.sessions, self.outputs, strict=True):
                    y = session_.run(None, {"x": self._values})[0]
                    await self.server.write_attribute_value(
                        output, ua.DataValue(ua.Variant(float(y[0, 0]), ua.VariantType.Double))
                    )
                    self.predictions += 1

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.server.stop()


def edge_settings(root: Path, built: Built, slots: int = 1, plc: str | None = None, seed: bool = True) -> EdgeSettings:
    """An edge node on a free loopback port with ``slots`` pipelines p0, p1, ...; its link to the tag server ``plc``
    unencrypted (the bench tag server offers nothing else). With ``seed`` its PKI folder gets a certificate from
    this process's test CA and trusts that CA (tests/tls.py); a node run in a child process takes ``seed=False``
    and a folder its parent seeded (the child's test CA would be another)."""
    settings = tls.EdgeSettings if seed else EdgeSettings
    return settings(
        endpoint=f"opc.tcp://127.0.0.1:{free_port()}/edge/",
        data_dir=root / "edge",
        trust_dir=built.trust_dir,
        slots=[f"p{i}" for i in range(slots)],
        anonymous_role="Engineer",  # a benchmark on loopback installs without a login
        plc_security={plc: "None"} if plc else {},
    )


def binding(tags: TagServer, inputs: int, interval_ms: int) -> str:
    """Every feature t<i> bound to tag i, any change triggers, at ``interval_ms``."""
    return json.dumps(
        {
            "inputs": {f"t{i}": {"endpoint": tags.url, "node_id": tags.ids[i].to_string()} for i in range(inputs)},
            "trigger": {"mode": "any_change"},
            "publishing_interval_ms": interval_ms,
        }
    )


async def install_everywhere(node: EdgeNode, built: Built, tags: TagServer, interval_ms: int) -> None:
    """Install the package into every slot of ``node`` and bind it to ``tags``."""
    async with session(node.url) as client:
        for slot in node.settings.slots:
            su = await SoftwareUpdateClient.find(client, slot=slot)
            await su.install(await su.transfer(built.package))
            await set_binding(client, slot, binding(tags, built.inputs, interval_ms))


def output_id(slot: str, output: str = "y") -> ua.NodeId:
    """The NodeId of a pipeline's output variable on an edge node."""
    return ua.NodeId.from_string(f"ns=1;s=InferenceServer.Pipelines.{slot}.Outputs.{output}")


class Arrivals:
    """A subscription handler that notes when the first notification after ``clear`` arrived."""

    def __init__(self) -> None:
        self.time = 0.0
        self.event = asyncio.Event()

    def clear(self) -> None:
        self.event.clear()

    def datachange_notification(self, node: Any, value: Any, data: Any) -> None:
        if not self.event.is_set():
            self.time = time.perf_counter()
            self.event.set()


def cpu_seconds(pid: int) -> float:
    """CPU time a process's threads have used so far, in seconds, to the nanosecond (Linux: the first field of each
    thread's /proc/<pid>/task/<tid>/schedstat; /proc/<pid>/stat counts in 10 ms ticks)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, IndexError, ValueError):  # a thread that just ended
            continue
    return total / 1e9
