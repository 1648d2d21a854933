"""The live demo: a simulated line, a gateway and two edge nodes on loopback, driven over OPC UA.

Everything goes through the same interfaces a plant uses: the package is
uploaded to the gateway by OPC UA file transfer, devices are registered and the
model deployed with the ModelManager's methods, and the gateway installs it on
each edge node with the DI software update. Embedded defaults only: SQLite,
folders under the data folder, free loopback ports, no cloud account.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import shutil
import threading
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from asyncua import ua

from edge_node.app import EdgeNode
from edge_node.settings import EdgeSettings
from gateway.app import Gateway
from gateway.identity import GATEWAY_NAME, INSTANCE_URI
from gateway.monitor.thresholds import FigureThresholds, InputReference, MonitorThresholds
from gateway.settings import GatewaySettings
from modelline.demo.line import LINE_NAME, LINE_URI, ON_PURPOSE, LineSimulator
from modelline.demo.monitor_view import DeviceMonitor, MonitorView
from modelline.demo.watch import Continuity, PredictionWatch
from nodesets.ids import MODELLINE_URI, DeploymentState
from sdk.certs import generate_identity, load_identity
from sdk.examples import example_dir
from sdk.file_client import upload
from sdk.opcua import pki
from sdk.opcua.connect import CLIENT_URI, own_certificate, secure_client
from sdk.opcua.ids import node_id
from sdk.opcua.ports import free_port
from sdk.opcua.shelf import cache_dir, is_cached
from sdk.package.build import build_package
from sdk.package.spec import PackageSpec

_log = logging.getLogger(__name__)

DEVICES = {"edge-1": "Pump1", "edge-2": "Pump2"}
DEMO_CLIENT = "ModelLine demo"
S = ua.VariantType.String
T = TypeVar("T")
TICK_S = 5.0
"""How often a set-up step that takes long says that it still runs."""
DEMO_MONITOR = MonitorThresholds(
    input_reference=InputReference.DEPLOYMENT,
    window_records=150,
    baseline_records=150,
    output_bins=5,
    input_drift=FigureThresholds(warning=0.8, alarm=1.4, deadband=0.1),
    output_drift=FigureThresholds(warning=1.0, alarm=2.0, deadband=0.1),
)
"""The demo gateway's Model Monitor: a demo lasts a minute or two, not a shift.

Input drift is measured against the first 15 s after deployment (150 predictions at 10 a second), not the
training data: the training data spans whole pump lives, so against it both pumps drift from the first
window. Windows of 15 s in 5 quantile bins score a steady pump's noise up to about 0.5 (input) and 0.7
(output) PSI over a quarter of an hour, well above the usual 0.1/0.25 thresholds that suit 1000-record
windows, so the demo's thresholds are higher; Pump2's wear scores 1.6 to 3.6 from the first full window
on, so its drift alarm comes 30 s after its deployment, with the next figures refresh
(tests/unit/modelline/test_demo_monitor.py)."""
DEMO_FIGURES_S = 2.0
"""How often the demo gateway refreshes ModelMonitor/<deployment>/<device> (the default is 10 s)."""


Stop = Callable[[], Awaitable[Any]]


async def _started(stops: list[Stop], server: AbstractAsyncContextManager[T]) -> T:
    """Enter a server's context; ``_stop_together`` leaves it."""
    entered = await server.__aenter__()
    stops.append(functools.partial(server.__aexit__, None, None, None))
    return entered


async def _stop_together(stops: list[Stop]) -> None:
    """Stop the gateway and the edge nodes at the same time: each asyncua server takes up to 1 s to stop
    (its clock task sleeps a second), so one after the other would take seconds."""
    results = await asyncio.gather(*(stop() for stop in stops), return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            _log.warning("a demo server did not stop cleanly: %s", result)


@dataclass
class Snapshot:
    """What the dashboard shows."""

    elapsed_s: float
    tags: dict[str, dict[str, float]]
    nodes: dict[str, dict[str, Any]]
    deployments: list[dict[str, Any]]
    events: list[str]
    endpoints: dict[str, str] = field(default_factory=dict)
    monitor: dict[str, DeviceMonitor] = field(default_factory=dict)  # device -> its Model Monitor figures


@dataclass
class DemoReport:
    """What the demo did, for the summary."""

    endpoints: dict[str, str] = field(default_factory=dict)
    predictions: dict[str, int] = field(default_factory=dict)
    events: list[str] = field(default_factory=list)
    upgraded: bool = False
    rolled_back: bool = False
    continuity: Continuity | None = None  # edge-1, upgrade start to rollback end
    fault_probability: dict[str, float | None] = field(default_factory=dict)  # the latest, per device
    monitor: dict[str, DeviceMonitor] = field(default_factory=dict)  # the panel at the end, per device
    monitor_gateway_counts: dict[str, int | None] = field(default_factory=dict)  # the gateway's own InferenceCount
    drift_alarm_s: dict[str, float] = field(default_factory=dict)  # device -> when its InputDriftAlarm first fired
    drift_alarm_offered: bool = False  # the gateway shows InputDriftAlarm conditions


class Demo:
    """Sets the line up, runs it, and reports."""

    def __init__(
        self,
        data_dir: Path,
        scripted: bool = True,
        note: Callable[[str], None] = print,
        progress: Callable[[str], None] | None = None,
        started: float | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.scripted = scripted
        self.note = note
        self.progress = progress or note
        self.report = DemoReport()
        self._start = time.monotonic() if started is None else started  # time.monotonic() at the start
        self._step: tuple[str, float] | None = None  # what set-up does now, since when (read by the ticker thread)
        self._set_up = threading.Event()
        self.line: LineSimulator
        self.watch: PredictionWatch
        self.monitor_view: MonitorView | None = None

    def step(self, text: str) -> None:
        """Say which set-up step runs now (a ticker repeats it while it takes long)."""
        self._step = (text, time.monotonic())
        self.progress(text)

    def _ticker(self) -> None:
        """A thread, not a task: building the address space on a first start blocks the event loop."""
        while not self._set_up.wait(TICK_S):
            if self._step is not None:
                text, since = self._step
                if (took := time.monotonic() - since) >= TICK_S:
                    self.progress(f"{text} (still working, {took:.0f} s)")

    def event(self, text: str) -> None:
        """Record and show a step of the demo."""
        stamp = f"{time.monotonic() - self._start:5.1f}s"
        self.report.events.append(f"{stamp} {text}")
        self.note(f"[{stamp}] {text}")

    def _packages(self) -> tuple[Path, Path]:
        keys = self.data_dir / "keys"
        if not (keys / "author.pem").exists():  # a data folder of an earlier release holds Ed25519 signing.*
            generate_identity(keys, "author", common_name="demo model author", organization="ModelLine demo")
        trust = self.data_dir / "trust"
        trust.mkdir(exist_ok=True)
        shutil.copy(keys / "author.pem", trust / "author.pem")  # self-signed: its own root
        example = example_dir()
        identity = load_identity(keys / "author.pem", keys / "author.key")
        spec = PackageSpec.load(example / "spec.toml")
        out = []
        for version, text in (("1.0.0", None), ("1.1.0", "Retrained on the latest month of line data.")):
            out.append(
                build_package(
                    example / "model.onnx",
                    self.data_dir / "packages" / f"pump-health-{version}.uadipkg",
                    name="pump-health",
                    version=version,
                    spec=spec,
                    identity=identity,
                    description=text,
                ).path
            )
        return out[0], out[1]

    async def run(self, duration_s: float | None, show: Callable[[Snapshot], None] | None = None) -> DemoReport:
        """Run until ``duration_s`` after the demo was created (forever when None, until cancelled).

        The duration counts from the start, set-up included, so that the whole run takes about that long.
        """
        ticker = threading.Thread(target=self._ticker, name="set-up ticker", daemon=True)
        ticker.start()
        try:
            return await self._run(duration_s, show)
        finally:
            self._set_up.set()

    async def _run(self, duration_s: float | None, show: Callable[[Snapshot], None] | None) -> DemoReport:
        self.step("building and signing pump-health 1.0.0 and 1.1.0")
        v1, v2 = await asyncio.to_thread(self._packages)
        trust = self.data_dir / "trust"
        line = self.line = LineSimulator(f"opc.tcp://127.0.0.1:{free_port()}/line/", pki_dir=self.data_dir / "line")
        client_pki = await self._introduce()
        for pump, why in ON_PURPOSE.items():
            self.note(f"note: {pump} {why}")
        if not is_cached():
            self.step(
                f"first start: building the standard OPC UA address space once and keeping it in {cache_dir()} "
                "(up to half a minute; later starts take a second)"
            )
        else:
            self.step("starting the simulated line")
        servers: list[Stop] = []
        async with AsyncExitStack() as stack:
            await line.start()
            stack.push_async_callback(line.stop)  # the line goes last: edge nodes would report its loss
            line_task = asyncio.create_task(line.run(), name="line")
            stack.callback(line_task.cancel)
            stack.push_async_callback(_stop_together, servers)  # all at once, for a quick exit
            self.step("starting the gateway")
            gateway = await _started(
                servers,
                Gateway(
                    GatewaySettings(
                        endpoint=f"opc.tcp://127.0.0.1:{free_port()}/modelline/",
                        data_dir=self.data_dir / "gateway",
                        trust_dir=trust,
                        anonymous_role="Engineer",  # the demo serves on loopback only
                        allow_insecure=True,  # read-only, for a generic OPC UA client to look around
                        monitor=DEMO_MONITOR,
                        monitor_figures_s=DEMO_FIGURES_S,
                    )
                ),
            )
            edges = {}
            for device in DEVICES:
                self.step(f"starting edge node {device}")
                edges[device] = await _started(
                    servers,
                    EdgeNode(
                        EdgeSettings(
                            device_id=device,
                            endpoint=f"opc.tcp://127.0.0.1:{free_port()}/modelline/edge/",
                            data_dir=self.data_dir / device,
                            trust_dir=trust,
                            anonymous_role="Engineer",
                            allow_insecure=True,
                        )
                    ),
                )
            self.report.endpoints = {
                "line (simulated PLC)": line.endpoint,
                "gateway": gateway.url,
                **{d: e.url for d, e in edges.items()},
            }
            for name, url in self.report.endpoints.items():
                self.note(f"{name:<22} {url}")
            self.note(
                "security: the gateway and edge nodes also offer SecurityPolicy None for reading (allow_insecure, "
                "demo only); the demo's own links use Aes256_Sha256_RsaPss SignAndEncrypt"
            )
            client = await stack.enter_async_context(await secure_client(gateway.url, client_pki, name=DEMO_CLIENT))
            self.monitor_view = MonitorView(client, DEMO_MONITOR)
            ml = await client.get_namespace_index(MODELLINE_URI)
            manager = await client.nodes.objects.get_child(f"{ml}:ModelManager")
            for device, edge in edges.items():
                await manager.call_method(f"{ml}:RegisterDevice", ua.Variant(device, S), ua.Variant(edge.url, S))
            self.step("pushing the packages and deploying pump-health 1.0.0 to both edge nodes")
            for package in (v1, v2):
                await upload(client, await manager.get_child(f"{ml}:Upload"), package.read_bytes(), ua.Variant())
            self.event("pushed pump-health 1.0.0 and 1.1.0 to the gateway")
            first = [await self._deploy(manager, ml, "1.0.0", device) for device in DEVICES]
            for deployment in first:
                await self._settled(gateway, deployment)
            self.event("pump-health 1.0.0 active on edge-1 (Pump1) and edge-2 (Pump2)")
            self._set_up.set()
            watched = await stack.enter_async_context(
                await secure_client(edges["edge-1"].url, client_pki, name=DEMO_CLIENT)
            )
            output = node_id("InferenceServer.Pipelines.main.Outputs.anomaly_score", 1)
            self.watch = await PredictionWatch(watched, output).start()  # as an HMI sees edge-1's prediction
            stack.push_async_callback(self.watch.stop)
            script = asyncio.create_task(self._script(gateway, manager, ml)) if self.scripted else None
            stack.callback(lambda: script.cancel() if script else None)
            end = None if duration_s is None else self._start + duration_s
            try:
                while end is None or time.monotonic() < end:
                    snapshot = await self._snapshot(line, edges, gateway)
                    self.report.fault_probability = {
                        d: n["outputs"]["anomaly_score"][0] for d, n in snapshot.nodes.items()
                    }
                    self._note_alarms(snapshot)
                    if show is not None:
                        show(snapshot)
                    await asyncio.sleep(0.5 if end is None else max(0.0, min(0.5, end - time.monotonic())))
                await self._final_monitor(gateway, edges)
            finally:  # also when stopped with Ctrl-C: the summary counts what ran
                self.report.predictions = {d: e.slots["main"].pipeline.status.inference_count for d, e in edges.items()}
        return self.report

    async def _introduce(self) -> Path:
        """Trust between the demo's parts, set up before they start, as an administrator would with
        'modelline trust approve' (trust goes both ways: a client checks its server's certificate too):
        the gateway trusts the edge nodes and the demo's own client; each edge node trusts the gateway,
        the client and the simulated line it reads; the client trusts the gateway and the edge nodes.
        Returns that client's PKI folder."""
        gateway_pki, client_pki, line_pki = (
            self.data_dir / "gateway" / "pki",
            self.data_dir / "client" / "pki",
            self.data_dir / "line",
        )
        parts = {gateway_pki: (INSTANCE_URI, GATEWAY_NAME), client_pki: (CLIENT_URI, DEMO_CLIENT)}
        parts[line_pki] = (LINE_URI, LINE_NAME)
        edge_pkis = [self.data_dir / device / "pki" for device in DEVICES]
        for device, folder in zip(DEVICES, edge_pkis, strict=True):
            parts[folder] = (f"urn:modelline:edge:{device}", f"ModelLine Edge {device}")
        certs = {folder: (await own_certificate(folder, uri, name))[0] for folder, (uri, name) in parts.items()}
        trusts = {
            gateway_pki: [client_pki, *edge_pkis],
            client_pki: [gateway_pki, *edge_pkis],
            **{edge: [gateway_pki, client_pki, line_pki] for edge in edge_pkis},
        }
        for folder, peers in trusts.items():
            for peer in peers:
                await asyncio.to_thread(pki.approve, folder, str(certs[peer]))
        return client_pki

    def _note_alarms(self, snapshot: Snapshot) -> None:
        """Remember when each device's drift alarm first fired."""
        for device, row in snapshot.monitor.items():
            self.report.drift_alarm_offered |= row.offers_drift_alarm
            if "InputDriftAlarm" in row.alarms and device not in self.report.drift_alarm_s:
                self.report.drift_alarm_s[device] = snapshot.elapsed_s
                self.event(f"Model Monitor: drift alarm on {device} ({DEVICES[device]})")

    async def _final_monitor(self, gateway: Gateway, edges: dict[str, EdgeNode]) -> None:
        """The panel at the end, next to what the gateway itself shows (figures refreshed, refreshes paused)."""
        gateway.scheduler.pause()  # no periodic refresh between the panel's read and the gateway's
        try:
            await gateway.monitor_nodes.refresh()
            for device, edge in edges.items():
                deployment = await self._monitored(gateway, device, edge.slots["main"].pipeline.status.version)
                if deployment is None or self.monitor_view is None:
                    continue
                self.report.monitor[device] = await self.monitor_view.read(deployment, device)
                self.report.monitor_gateway_counts[device] = await _gateway_count(gateway, deployment, device)
        finally:
            gateway.scheduler.resume()

    async def _monitored(self, gateway: Gateway, device: str, version: str) -> str | None:
        """The deployment the gateway credits the device's current predictions to (else its newest one)."""
        found = gateway.monitor.deployment_of(device, "pump-health", version)
        if found is not None:
            return found
        mine = [r.id for r in await gateway.store.deployments() if device in r.targets]
        return mine[-1] if mine else None

    async def _deploy(self, manager: Any, ml: int, version: str, device: str) -> str:
        options = {"binding": self.line.binding(DEVICES[device]), "confirmation_timeout_s": 30, "health_check_s": 20}
        return str(
            await manager.call_method(
                f"{ml}:Deploy",
                ua.Variant("pump-health", S),
                ua.Variant(version, S),
                ua.Variant([device], S),
                ua.Variant(json.dumps(options), S),
            )
        )

    async def _settled(self, gateway: Gateway, deployment: str, within_s: float = 90) -> DeploymentState | None:
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            record = next(r for r in await gateway.store.deployments() if r.id == deployment)
            if record.state in (DeploymentState.ACTIVE, DeploymentState.FAILED):
                if record.state is DeploymentState.FAILED:
                    self.event(f"{deployment} failed: {record.last_error}")
                return record.state
            await asyncio.sleep(0.2)
        self.event(f"{deployment} did not finish within {within_s:g} s")
        return None

    async def _script(self, gateway: Gateway, manager: Any, ml: int) -> None:
        await asyncio.sleep(8)
        self.watch.window()
        self.event("upgrading edge-1 to pump-health 1.1.0 (edge-2 keeps 1.0.0)")
        upgrade = await self._deploy(manager, ml, "1.1.0", "edge-1")
        if await self._settled(gateway, upgrade) is DeploymentState.ACTIVE:
            self.report.upgraded = True
            self.event("edge-1 serves 1.1.0")
        await asyncio.sleep(6)
        self.event("rolling edge-1 back to its fallback version")
        back = str(await manager.call_method(f"{ml}:Rollback", ua.Variant(upgrade, S), ua.Variant("", S)))
        if await self._settled(gateway, back) is DeploymentState.ACTIVE:
            self.report.rolled_back = True
            self.event("edge-1 serves 1.0.0 again")
        self.report.continuity = continuity = self.watch.result()
        if continuity is not None:
            self.event(f"edge-1 during upgrade and rollback: {continuity.describe()}")

    @staticmethod
    def _served(record: Any, nodes: dict[str, dict[str, Any]]) -> str:
        """The version a deployment serves: a rollback to the fallback shows the version its targets returned to."""
        if not record.options.fallback:
            return str(record.version)
        served = sorted({nodes[t]["version"] for t in record.targets if t in nodes})
        return f"{', '.join(served)} (fallback)" if record.state is DeploymentState.ACTIVE and served else "fallback"

    async def _snapshot(self, line: LineSimulator, edges: dict[str, EdgeNode], gateway: Gateway) -> Snapshot:
        tags = {p.name: dict(p.values) for p in line.pumps}
        nodes = {}
        for device, edge in edges.items():
            pipeline = edge.slots["main"].pipeline
            status = pipeline.status
            outputs = {}
            for name in ("anomaly_score", "remaining_life"):
                dv = (
                    edge.server.read_attribute_value(node_id(f"InferenceServer.Pipelines.main.Outputs.{name}", 1))
                    if edge.server
                    else None
                )
                status_name = dv.StatusCode.name if dv is not None and dv.StatusCode is not None else ""
                outputs[name] = (dv.Value.Value if dv is not None and dv.Value else None, status_name)
            nodes[device] = {
                "pump": DEVICES[device],
                "version": status.version,
                "state": status.state.name,
                "inferences": status.inference_count,
                "latency_ms": status.last_latency_ms,
                "outputs": outputs,
            }
        deployments = [
            {"id": r.id, "version": self._served(r, nodes), "targets": r.targets, "state": r.state.label}
            for r in await gateway.store.deployments()
        ]
        monitor = {}
        if self.monitor_view is not None:
            for device, n in nodes.items():
                deployment = await self._monitored(gateway, device, str(n["version"]))
                if deployment is not None:
                    monitor[device] = await self.monitor_view.read(deployment, device)
        return Snapshot(
            time.monotonic() - self._start,
            tags,
            nodes,
            deployments,
            list(self.report.events[-6:]),
            dict(self.report.endpoints),
            monitor,
        )


async def _gateway_count(gateway: Gateway, deployment: str, device: str) -> int | None:
    """InferenceCount of ModelMonitor/<deployment>/<device> as the gateway's own address space holds it."""
    server = gateway.server
    if server is None:
        return None
    ml = await server.get_namespace_index(MODELLINE_URI)
    instance = await server.get_namespace_index(INSTANCE_URI)
    try:
        node = await server.nodes.objects.get_child(
            [f"{ml}:ModelMonitor", f"{instance}:{deployment}", f"{instance}:{device}", f"{ml}:InferenceCount"]
        )
        dv = await node.read_data_value()
    except ua.UaStatusCodeError:
        return None
    good = dv.Value is not None and dv.StatusCode is not None and dv.StatusCode.is_good()
    return int(dv.Value.Value) if good and dv.Value is not None else None
