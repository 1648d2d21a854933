"""The edge node service: composes the OPC UA server, model slots, pipelines and input hub.

async with EdgeNode(settings) as node:     # server started, saved models serving
    await node.wait_closed()               # until cancelled (Ctrl-C)
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from typing import Any

from asyncua import Node, Server, ua
from asyncua.common.callback import CallbackType, ServerItemCallback

from edge_node.monitor.collector import Collector, LogForwarder
from edge_node.monitor.queue import RecordQueue
from edge_node.opcua.inputs import InputHub
from edge_node.opcua.pipeline_nodes import PipelineNodes, create_inference_server
from edge_node.opcua.records import RecordNodes
from edge_node.opcua.server import application_uri, create_device, create_server
from edge_node.opcua.software_update import SlotNodes
from edge_node.runtime.model import InferenceRuntime
from edge_node.runtime.pipeline import OutputValue, Pipeline, PipelineStatus, Reading
from edge_node.settings import EdgeSettings
from edge_node.slots.slot import ModelSlot
from edge_node.slots.store import SlotStore
from nodesets.ids import MODELLINE_URI, DeviceHealth, PipelineState
from sdk.audit_log import AuditWriter, JsonlAuditLog
from sdk.binding import Binding
from sdk.datadir import lock_data_dir
from sdk.di_client import connect
from sdk.errors import ModelLineError
from sdk.keys import TrustStore
from sdk.monitor.records import LOG_STREAM
from sdk.monitor.statistics import PipelineStatistics
from sdk.opcua.audit_events import AuditEvents
from sdk.opcua.audit_nodes import AuditNodes
from sdk.opcua.audited import scoped_to
from sdk.opcua.connect import ClientIdentity
from sdk.opcua.ids import node_id
from sdk.opcua.renewal import CertificateWatch
from sdk.opcua.service import Service, start_listening
from sdk.opcua.writes import WriteChecks
from sdk.reconnect import reconnecting

_log = logging.getLogger(__name__)


class EdgeNode(Service):
    """One edge device's inference server."""

    def __init__(self, settings: EdgeSettings) -> None:
        super().__init__()
        self.settings = settings
        self.slots: dict[str, ModelSlot] = {}
        self.slot_nodes: dict[str, SlotNodes] = {}
        self._health: Node | None = None
        self._shown_health: DeviceHealth | None = None
        self.server: Server | None = None
        self.pipeline_nodes: dict[str, PipelineNodes] = {}

    async def _open_records(self) -> None:
        """The Model Monitor's queue, its writer task, the collector and the log forwarder."""
        s = self.settings
        queue = RecordQueue(s.data_dir / "monitor" / "records.sqlite3", s.monitor_queue_max_records)
        await queue.open([*s.slots, LOG_STREAM])
        writer = asyncio.create_task(queue.run(), name="record queue writer")
        writer.add_done_callback(self._task_done)  # a failure is reported like any task's

        async def close() -> None:  # after the server stopped: what is buffered is written
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)
            await queue.close()

        self._stack.push_async_callback(close)
        self.records = queue
        self.collector = Collector(queue, s.monitor_sample_every, s.monitor_max_records_per_s)
        self.collector.on_statistics(self._show_statistics)
        forwarder = LogForwarder(queue, asyncio.get_running_loop(), s.monitor_log_records_per_s)
        logging.getLogger().addHandler(forwarder)
        self._stack.callback(logging.getLogger().removeHandler, forwarder)

    async def _show_statistics(self, pipeline: str, statistics: PipelineStatistics) -> None:
        nodes = self.pipeline_nodes.get(pipeline)
        if nodes is not None:
            await nodes.show_statistics(statistics.model_dump_json())

    @property
    def url(self) -> str:
        """The endpoint clients connect to."""
        return self.settings.endpoint

    async def _start(self) -> None:
        s = self.settings
        # One node per data folder: two would both own its slots' state and packages.
        lock = await asyncio.to_thread(lock_data_dir, s.data_dir, "edge.lock", "an edge node", "starting another")
        self._stack.callback(lock.close)
        await self._open_records()
        trust = TrustStore.load_policy(s.trust_dir, s.approval_trust_dir)
        # The audit trail first and closed last: what starting and stopping do is recorded too.
        audit_log = await JsonlAuditLog.open(s.data_dir / "audit", s.audit_max_file_bytes)
        self._stack.push_async_callback(audit_log.close)
        self.audit = await self._stack.enter_async_context(AuditWriter(audit_log, scoped_to(self)))
        server, ns, instance_ns = await create_server(s)
        self.server = server
        name = f"ModelLine Edge {s.device_id}"
        self.certificates = CertificateWatch(server, s.data_dir / "pki", application_uri(s), name)
        events = await AuditEvents(server).start()
        audit_nodes = await AuditNodes.create(server, ns, instance_ns, audit_log)
        self.audit.listeners += [events.raise_events, audit_nodes.written]
        # Its own links (PLC sources, gateway registration) use the server's certificate (sdk.opcua.connect).
        self.identity = ClientIdentity(s.data_dir / "pki", application_uri(s), name, s.plc_security)
        device = await create_device(server, ns, instance_ns, s)
        self._health = await device.get_child(f"{ns.di}:DeviceHealth")
        pipelines_folder = await create_inference_server(server, ns, instance_ns)
        runtime = InferenceRuntime(threads=s.inference_threads)
        self._stack.callback(runtime.close)
        records = await RecordNodes.create(
            server, ns, server.get_node(node_id("InferenceServer", instance_ns)), self.records
        )
        pipelines = []
        writes = WriteChecks.of(server)
        for name in s.slots:
            sink = await PipelineNodes.create(server, ns, pipelines_folder, name, instance_ns)
            self.collector.add_pipeline(name)
            self.pipeline_nodes[name] = sink
            await sink.show_statistics(self.collector.statistics(name).model_dump_json())
            pipeline = Pipeline(name, runtime, _HealthWatch(sink, self._update_health), records=self.collector)
            slot = ModelSlot(name, SlotStore(s.data_dir / "slots" / name), pipeline, runtime, trust)
            slot.reserve_bytes = s.disk_reserve_bytes
            sink.on_set_binding = slot.set_binding
            nodes = SlotNodes(server, ns, slot)
            await nodes.build(device, instance_ns, s.max_byte_string, writes, max_package_bytes=s.max_package_bytes)
            self.slots[name], self.slot_nodes[name] = slot, nodes
            pipelines.append(pipeline)
        hub = InputHub(pipelines, identity=self.identity)
        self.hub = hub
        for slot in self.slots.values():
            slot.listen(_notify(hub))
        server.subscribe_server_callback(CallbackType.PostWrite, self._on_write)

        await start_listening(self._stack, server, s.endpoint)
        for sink in self.pipeline_nodes.values():
            self._stack.push_async_callback(sink.flush)  # the newest counters, before the server stops
        for nodes in self.slot_nodes.values():
            if nodes.transfer is not None:
                self._stack.push_async_callback(nodes.transfer.release)  # before the server stops
        for name, slot in self.slots.items():
            await slot.start()
            if slot.state.binding is None and name in s.bindings:
                await slot.set_binding(Binding.load(s.bindings[name]))
        for pipeline in pipelines:
            self._spawn(pipeline.run(), f"pipeline {pipeline.name}")
        for slot in self.slots.values():
            self._spawn(slot.run(), f"slot {slot.name}")
        self._spawn(hub.run(), "input hub")
        self._spawn(self.collector.run(), "monitor statistics")
        self._spawn(records.run(), "records ready events")
        self._spawn(self.certificates.run(s.certificate_check_s), "certificate check")
        if s.trust_check_s:
            self._spawn(self._watch_trust(), "trust store re-check")
        if s.gateway_url:
            self._spawn(self._register_with_gateway(), "gateway registration")
        _log.info("edge node %s serving at %s (slots: %s)", s.device_id, s.endpoint, ", ".join(s.slots))

    async def _register_with_gateway(self) -> None:
        """RegisterDevice(device id, endpoint) on the configured gateway, retried with backoff until it answers."""
        s = self.settings
        endpoint = s.advertised_endpoint or s.endpoint
        if "0.0.0.0" in endpoint:
            endpoint = endpoint.replace("0.0.0.0", socket.getfqdn())
        password = s.gateway_password_file.read_text(encoding="utf-8").strip() if s.gateway_password_file else None

        async def register(connected: Callable[[], None]) -> None:
            client = await connect(
                s.gateway_url or "",
                s.gateway_user,
                password,
                pki_dir=self.identity.pki_dir,
                application_uri=self.identity.application_uri,
                name=self.identity.name,
                certificate_identity=not s.gateway_user,
            )
            connected()
            try:
                ml = await client.get_namespace_index(MODELLINE_URI)
                manager = await client.nodes.objects.get_child(f"{ml}:ModelManager")
                await manager.call_method(
                    f"{ml}:RegisterDevice",
                    ua.Variant(s.device_id, ua.VariantType.String),
                    ua.Variant(endpoint, ua.VariantType.String),
                )
            finally:
                await client.disconnect()
            _log.info("registered with gateway %s as %s at %s", s.gateway_url, s.device_id, endpoint)

        await reconnecting(f"registering with gateway {s.gateway_url}", register, (1.0, 60.0), logger=_log)

    async def _on_write(self, event: ServerItemCallback, dispatcher: Any) -> None:
        for item, result in zip(event.request_params.NodesToWrite, event.response_params, strict=False):
            if not result.is_good() or item.AttributeId != ua.AttributeIds.Value:
                continue
            for nodes in self.slot_nodes.values():
                if item.NodeId == nodes.confirmation_timeout.nodeid:
                    await nodes.confirmation_timeout_written()

    async def _watch_trust(self) -> None:
        """Read the trust stores again every trust_check_s and check what each slot serves against them."""
        s = self.settings
        while True:
            await asyncio.sleep(s.trust_check_s)
            try:
                trust = await asyncio.to_thread(TrustStore.load_policy, s.trust_dir, s.approval_trust_dir)
            except ModelLineError as exc:  # a half-copied CRL must not stop the node: keep the last good store
                _log.warning("trust store not read again: %s", exc)
                continue
            for slot in self.slots.values():
                await slot.recheck_trust(trust)
            await self._update_health()

    async def _update_health(self) -> None:
        states = [slot.pipeline.status.state for slot in self.slots.values()]
        if PipelineState.FAULTED in states:
            health = DeviceHealth.FAILURE
        elif any(slot.trust_problem for slot in self.slots.values()):
            # DeviceHealthEnumeration (OPC 10000-100): the device works, but a model it serves needs replacing.
            health = DeviceHealth.MAINTENANCE_REQUIRED
        elif PipelineState.DEGRADED in states:
            health = DeviceHealth.OFF_SPEC
        elif PipelineState.UNBOUND in states:
            health = DeviceHealth.CHECK_FUNCTION
        else:
            health = DeviceHealth.NORMAL
        if self._health is not None and health != self._shown_health:  # written on change only
            await self._health.write_value(ua.Variant(health, ua.VariantType.Int32))
            self._shown_health = health


class _HealthWatch:
    """A PipelineSink that passes everything on and re-evaluates DeviceHealth on status changes.

    DeviceHealth follows the pipelines' states (and the slots' trust, re-evaluated where that changes), so a
    prediction re-evaluates it only when it changed the pipeline's state: most predictions leave it as it was, and
    re-evaluating looks at every slot.
    """

    def __init__(self, sink: PipelineNodes, on_status: Any) -> None:
        self._sink = sink
        self._on_status = on_status
        self._state: PipelineState | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sink, name)

    async def status_changed(self, status: PipelineStatus) -> None:
        await self._sink.status_changed(status)
        self._state = status.state
        await self._on_status()

    async def predicted(
        self, outputs: list[OutputValue], status: PipelineStatus, inputs: dict[str, Reading] | None = None
    ) -> None:
        await self._sink.predicted(outputs, status, inputs)
        if status.state != self._state:
            self._state = status.state
            await self._on_status()


def _notify(hub: InputHub) -> Any:
    async def listener(slot: ModelSlot) -> None:
        hub.bindings_changed()

    return listener
