"""The ModelMonitor object: SubmitFeedback, and the link between device sessions and record collection.

Handlers translate, the service decides (gateway/monitor/service.py): ``bind_method``
refuses calls whose arguments do not match InputArguments (OPC 10000-4 5.11.2), the
handler checks the caller's role (Operator or above, OPC 10000-3 4.9.2 well-known
roles) and maps the service's refusals to Bad_InvalidArgument, Bad_NotFound or
Bad_OutOfRange.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from asyncua import Client, Node, Server, ua

from gateway.monitor.service import Monitor
from gateway.opcua.device_link import DeviceLink, SessionWorker
from gateway.opcua.record_link import OpcUaRecordSource
from nodesets import Namespaces
from nodesets.ids import ModelLine
from sdk.monitor.records import LOG_STREAM
from sdk.opcua.ids import node_id, qname
from sdk.opcua.methods import bind_method
from sdk.opcua.status import status_on_error
from sdk.opcua.users import Role, requires
from sdk.opcua.values import new_instance

_log = logging.getLogger(__name__)

# OPC UA's DateTime has no null but its minimum (OPC 10000-6 5.2.2.5): 1601-01-01, and clients send 0 for "none".
_NO_TIME = datetime(1601, 1, 2, tzinfo=UTC)


class MonitorNodes:
    """Objects/ModelMonitor and its methods."""

    def __init__(self, server: Server, ns: Namespaces, instance_ns: int, monitor: Monitor) -> None:
        self.server = server
        self.ns = ns
        self.instance_ns = instance_ns
        self.monitor = monitor

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

    The streams are the device's pipelines (as the link sees them now) and its log stream."""

    async def collect(link: DeviceLink, client: Client) -> None:
        source = OpcUaRecordSource(client, link.device_id)
        await monitor.collect(link.device_id, source, lambda: [*sorted(link.view.pipelines), LOG_STREAM])

    return collect
