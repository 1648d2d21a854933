"""The ModelMonitor object: SubmitFeedback, ModelMonitor/<deployment>/<device> figures, and record collection.

Handlers translate, the service decides (gateway/monitor/service.py): ``bind_method``
refuses calls whose arguments do not match InputArguments (OPC 10000-4 5.11.2), the
handler checks the caller's role (Operator or above, OPC 10000-3 4.9.2 well-known
roles) and maps the service's refusals to Bad_InvalidArgument, Bad_NotFound or
Bad_OutOfRange.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime

from asyncua import Client, Node, Server, ua

from gateway.monitor.service import Monitor
from gateway.opcua.device_link import DeviceLink, SessionWorker
from gateway.opcua.record_link import OpcUaRecordSource, watch_ready
from gateway.store.base import DeploymentRecord, TargetRecord
from nodesets import Namespaces
from nodesets.ids import ModelLine
from sdk.monitor.records import LOG_STREAM
from sdk.opcua.ids import data_value, node_id, path_id, qname
from sdk.opcua.methods import bind_method
from sdk.opcua.status import status_on_error
from sdk.opcua.users import Role, requires
from sdk.opcua.values import new_instance

_log = logging.getLogger(__name__)

# OPC UA's DateTime has no null but its minimum (OPC 10000-6 5.2.2.5): 1601-01-01, and clients send 0 for "none".
_NO_TIME = datetime(1601, 1, 2, tzinfo=UTC)
S = ua.VariantType.String
_WAITING = ua.StatusCodes.BadWaitingForInitialData
_NOT_YET = ("DriftScore", "Accuracy", "MeanAbsoluteError")


def _double(value: float | None) -> ua.DataValue:
    """A Double figure; without data yet, 0 with Bad_WaitingForInitialData."""
    if value is None:
        return data_value(ua.Variant(0.0, ua.VariantType.Double), _WAITING)
    return data_value(ua.Variant(value, ua.VariantType.Double))


class MonitorNodes:
    """Objects/ModelMonitor and its methods."""

    def __init__(self, server: Server, ns: Namespaces, instance_ns: int, monitor: Monitor) -> None:
        self.server = server
        self.ns = ns
        self.instance_ns = instance_ns
        self.monitor = monitor
        self._deployments: dict[str, Node] = {}
        self._figures: dict[tuple[str, str], dict[str, Node]] = {}  # (deployment, device) -> its variables

    async def bind(self) -> MonitorNodes:
        """Make Objects/ModelMonitor and link SubmitFeedback."""
        self.node: Node = await new_instance(
            self.server.nodes.objects,
            self.server.get_node(node_id(ModelLine.MODEL_MONITOR_TYPE, self.ns.modelline)),
            nodeid=node_id("ModelMonitor", self.instance_ns),
            bname=qname("ModelMonitor", self.ns.modelline),
        )
        method = await self.node.get_child(f"{self.ns.modelline}:SubmitFeedback")
        await bind_method(self.server, method, self._submit_feedback)
        return self

    async def deployment_changed(self, record: DeploymentRecord, targets: list[TargetRecord]) -> None:
        """Show ModelMonitor/<deployment>/<device> for each target of a deployment (a DeploymentService listener)."""
        deployment = self._deployments.get(record.id)
        if deployment is None:
            deployment = await new_instance(
                self.node,
                self.server.get_node(node_id(ModelLine.MONITORED_DEPLOYMENT_TYPE, self.ns.modelline)),
                nodeid=path_id(self.node.nodeid, record.id),
                bname=qname(record.id, self.instance_ns),
            )
            ml = self.ns.modelline
            await (await deployment.get_child(f"{ml}:Model")).write_value(ua.Variant(record.model, S))
            await (await deployment.get_child(f"{ml}:Version")).write_value(ua.Variant(record.version, S))
            self._deployments[record.id] = deployment
        for device in record.targets:
            if (record.id, device) in self._figures:
                continue
            node = await new_instance(
                deployment,
                self.server.get_node(node_id(ModelLine.MONITORED_DEVICE_TYPE, self.ns.modelline)),
                nodeid=path_id(deployment.nodeid, device),
                bname=qname(device, self.instance_ns),
            )
            children = {str((await c.read_browse_name()).Name): c for c in await node.get_children()}
            for name in _NOT_YET:  # computed by later parts of the monitor; until then no value, and why
                await children[name].write_value(_double(None))
            self._figures[(record.id, device)] = children

    async def refresh(self) -> None:
        """Write the figures of every (deployment, device) from the store (a periodic job)."""
        for (deployment_id, device), nodes in list(self._figures.items()):
            figures = await self.monitor.store.figures(deployment_id, device)
            counts = {
                "InferenceCount": figures.inferences,
                "ErrorCount": figures.errors,
                "FeedbackCount": figures.feedback,
            }
            for name, count in counts.items():
                await nodes[name].write_value(data_value(ua.Variant(count, ua.VariantType.UInt64)))
            for name, ms in (("LatencyP50Ms", figures.latency_p50_ms), ("LatencyP99Ms", figures.latency_p99_ms)):
                await nodes[name].write_value(_double(ms))

    @status_on_error
    @requires(Role.OPERATOR)
    async def _submit_feedback(
        self,
        parent: ua.NodeId,
        device: ua.Variant,
        pipeline: ua.Variant,
        sequence: ua.Variant,
        source_time: ua.Variant,
        part_key: ua.Variant,
        value: ua.Variant,
        sample_id: ua.Variant,
    ) -> list[ua.Variant]:
        time = source_time.Value if isinstance(source_time.Value, datetime) else None
        if time is not None and time.tzinfo is None:
            time = time.replace(tzinfo=UTC)
        matched = await self.monitor.submit_feedback(
            str(device.Value or ""),
            str(pipeline.Value or ""),
            int(sequence.Value or 0),
            time if time is not None and time > _NO_TIME else None,
            str(part_key.Value or ""),
            float(value.Value),
            str(sample_id.Value or ""),
        )
        return [ua.Variant(matched, ua.VariantType.Boolean)]


def record_collector(monitor: Monitor) -> SessionWorker:
    """A device link's session worker that collects the device's records over the link's session.

    The streams are the device's pipelines (as the link sees them now) and its log stream; a RecordsReady
    event of the device wakes the collection before its next poll."""

    async def collect(link: DeviceLink, client: Client) -> None:
        source = OpcUaRecordSource(client, link.device_id)
        try:
            events = await watch_ready(client, link.device_id, lambda: monitor.wake(link.device_id))
        except (ua.UaError, ConnectionError, TimeoutError) as exc:  # polling still collects everything
            _log.warning("device %s: no RecordsReady subscription: %s", link.device_id, exc)
            events = None
        try:
            await monitor.collect(link.device_id, source, lambda: [*sorted(link.view.pipelines), LOG_STREAM])
        finally:
            if events is not None:
                with contextlib.suppress(Exception):  # the session may be gone already
                    await asyncio.wait_for(events.delete(), 2.0)

    return collect
