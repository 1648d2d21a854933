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
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Literal

from asyncua import Client, Node, Server, ua

from gateway.monitor.base import Figures
from gateway.monitor.live import ALARMS, LiveFigures, Snapshot
from gateway.monitor.prometheus import MetricsEndpoint, Sample
from gateway.monitor.service import Monitor
from gateway.monitor.thresholds import Level
from gateway.opcua.device_link import DeviceLink, SessionWorker
from gateway.opcua.record_link import OpcUaRecordSource, watch_ready
from gateway.store.base import DeploymentRecord, TargetRecord
from nodesets import Namespaces
from nodesets.ids import ModelLine
from sdk.monitor.records import LOG_STREAM
from sdk.opcua.alarms import AlarmBook
from sdk.opcua.history import History
from sdk.opcua.ids import data_value, delete_subtree, node_id, path_id, qname
from sdk.opcua.methods import bind_method
from sdk.opcua.status import status_on_error
from sdk.opcua.templates import children_by_name
from sdk.opcua.users import Role, requires
from sdk.opcua.values import new_instance

_log = logging.getLogger(__name__)

# OPC UA's DateTime has no null but its minimum (OPC 10000-6 5.2.2.5): 1601-01-01, and clients send 0 for "none".
_NO_TIME = datetime(1601, 1, 2, tzinfo=UTC)
S = ua.VariantType.String
_WAITING = ua.StatusCodes.BadWaitingForInitialData
_SEVERITY = {Level.WARNING: 500, Level.ALARM: 800}
# Historized figures of every MonitoredDevice (OPC 10000-11: trends of these are read with ReadRawModifiedDetails).
HISTORIZED = (
    "DriftScore",
    "OutputDriftScore",
    "DataQuality",
    "Accuracy",
    "MeanAbsoluteError",
    "InferenceCount",
    "ErrorCount",
    "LatencyP50Ms",
    "LatencyP99Ms",
)


def _double(value: float | None) -> ua.DataValue:
    """A Double figure; without data yet, 0 with Bad_WaitingForInitialData."""
    if value is None:
        return data_value(ua.Variant(0.0, ua.VariantType.Double), _WAITING)
    return data_value(ua.Variant(value, ua.VariantType.Double))


class MonitorNodes:
    """Objects/ModelMonitor and its methods."""

    def __init__(
        self,
        server: Server,
        ns: Namespaces,
        instance_ns: int,
        monitor: Monitor,
        *,
        alarms: AlarmBook | None = None,
        history: History | None = None,
        metrics: MetricsEndpoint | None = None,
    ) -> None:
        self.server = server
        self.ns = ns
        self.instance_ns = instance_ns
        self.monitor = monitor
        self.alarms = alarms
        self.history = history
        self.metrics = metrics
        self._deployments: dict[str, Node] = {}
        self._figures: dict[tuple[str, str], dict[str, Node]] = {}  # (deployment, device) -> its variables
        self._written: dict[ua.NodeId, tuple[object, int]] = {}  # last value and status written to a figure node
        self._samples: dict[tuple[str, str], list[Sample]] = {}
        self._retired: set[tuple[str, str]] = set()  # superseded (deployment, device) taken out of the space

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
        if self.history is not None:  # alarm history on the area and on the Server object (OPC 10000-11 6.4.2)
            await self.history.historize_events(self.node)
            await self.history.historize_events(self.server.nodes.server)
        return self

    async def deployment_changed(self, record: DeploymentRecord, targets: list[TargetRecord]) -> None:
        """Show ModelMonitor/<deployment>/<device> for each target of a deployment (a DeploymentService listener)."""
        new = [d for d in record.targets if (record.id, d) not in self._figures and (record.id, d) not in self._retired]
        if not new:
            return
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
        for device in new:
            node = await new_instance(
                deployment,
                self.server.get_node(node_id(ModelLine.MONITORED_DEVICE_TYPE, self.ns.modelline)),
                nodeid=path_id(deployment.nodeid, device),
                bname=qname(device, self.instance_ns),
            )
            children = await children_by_name(node)
            for name in _WAITING_FIRST:  # no value until there is enough evidence, and why
                await children[name].write_value(_double(None))
            if self.history is not None:
                await self.history.historize([children[n] for n in HISTORIZED])
            if self.alarms is not None:
                for name in ALARMS:  # OPC 10000-9 5.8.2 AlarmConditionType, in the Model Monitor's area
                    await self.alarms.add(f"{record.id}/{device}/{name}", node, name, area=self.node)
            self._figures[(record.id, device)] = children

    async def refresh(self) -> None:
        """Write the figures of every (deployment, device), raise and clear their alarms, publish the metrics
        (a periodic job; a node is written only when its value changed)."""
        now = datetime.now(UTC)
        for (deployment_id, device), nodes in list(self._figures.items()):
            counts = await self.monitor.store.figures(deployment_id, device)
            values: dict[str, ua.DataValue] = {
                "InferenceCount": _uint(counts.inferences),
                "ErrorCount": _uint(counts.errors),
                "FeedbackCount": _uint(counts.feedback),
                "LatencyP50Ms": _double(counts.latency_p50_ms),
                "LatencyP99Ms": _double(counts.latency_p99_ms),
                "DroppedRecords": _uint(await self.monitor.store.gaps(device)),
            }
            live = self.monitor.live.get((deployment_id, device))
            snapshot = None
            if live is not None:
                await self.monitor.join_feedback(live, counts.feedback)
                snapshot = live.evaluate(now)
                values |= _figure_values(live, snapshot)
            for name, value in values.items():
                if name in nodes:
                    await self._write(nodes[name], value)
            await self._judge(deployment_id, device, snapshot)
            if self._done_with(deployment_id, device):
                await self._retire(deployment_id, device)
                continue
            self._samples[(deployment_id, device)] = _samples(deployment_id, device, counts, snapshot, self._active)
        if self.metrics is not None:
            self.metrics.publish([s for samples in self._samples.values() for s in samples])

    def _done_with(self, deployment_id: str, device: str) -> bool:
        """A deployment superseded on a device whose conditions there no longer matter to anyone (OPC 10000-9
        5.5.2: none retained: inactive, acknowledged and confirmed). Its figures stop changing (no record reaches
        it any more) and its history and records stay in the stores."""
        if (deployment_id, device) not in self.monitor.superseded:
            return False
        return self.alarms is None or not any(
            self.alarms.state(f"{deployment_id}/{device}/{name}").retain for name in ALARMS
        )

    async def _retire(self, deployment_id: str, device: str) -> None:
        """Take ModelMonitor/<deployment>/<device> out of the address space (and the deployment's object with its
        last device): without this every deployment would add its targets' figures and conditions for good,
        a gateway's memory and each refresh growing with every rollout it ever made."""
        nodes = self._figures.pop((deployment_id, device))
        self._samples.pop((deployment_id, device), None)
        self._retired.add((deployment_id, device))
        for node in nodes.values():
            self._written.pop(node.nodeid, None)
        if self.alarms is not None:
            await self.alarms.remove(*(f"{deployment_id}/{device}/{name}" for name in ALARMS))
        if self.history is not None:
            await self.history.forget([nodes[n] for n in HISTORIZED if n in nodes])
        deployment = self._deployments[deployment_id]
        await delete_subtree(self.server.get_node(path_id(deployment.nodeid, device)))
        if not any(d == deployment_id for d, _ in self._figures):
            del self._deployments[deployment_id]
            await delete_subtree(deployment)
        _log.info("monitor: %s on %s was superseded, its alarms are settled: figures taken down", deployment_id, device)

    def _active(self, deployment_id: str, device: str, name: str) -> bool:
        key = f"{deployment_id}/{device}/{name}"
        return self.alarms is not None and self.alarms.state(key).active

    async def _write(self, node: Node, value: ua.DataValue) -> None:
        status = value.StatusCode.value if value.StatusCode is not None else 0
        seen = (value.Value.Value if value.Value is not None else None, status)
        if self._written.get(node.nodeid) == seen:
            return
        self._written[node.nodeid] = seen
        await self.server.write_attribute_value(node.nodeid, value)

    async def _judge(self, deployment_id: str, device: str, snapshot: Snapshot | None) -> None:
        """Raise or clear the alarms of one (deployment, device) from its figures' levels.

        A verdict None (no evidence) leaves the condition as it is; a superseded deployment's active
        conditions are cleared (they stay listed until acknowledged and confirmed)."""
        if self.alarms is None:
            return
        newer = self.monitor.superseded.get((deployment_id, device))
        for name in ALARMS:
            key = f"{deployment_id}/{device}/{name}"
            state = self.alarms.state(key)
            if newer is not None:
                if state.active:
                    await self.alarms.clear(key, f"{deployment_id} on {device} was superseded by {newer}")
                continue
            verdict = snapshot.verdicts.get(name) if snapshot is not None else None
            if verdict is None:
                continue
            if verdict.level == Level.OK:
                if state.active:
                    await self.alarms.clear(key, verdict.message)
            elif not state.active or state.severity != _SEVERITY[verdict.level]:
                await self.alarms.raise_(key, _SEVERITY[verdict.level], verdict.message)

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


_WAITING_FIRST = (
    "DriftScore",
    "Accuracy",
    "MeanAbsoluteError",
    "OutputDriftScore",
    "DataQuality",
    "RootMeanSquaredError",
    "F1Score",
)


def _uint(count: int) -> ua.DataValue:
    return data_value(ua.Variant(count, ua.VariantType.UInt64))


def _figure_values(live: LiveFigures, snapshot: Snapshot) -> dict[str, ua.DataValue]:
    f = snapshot.figures
    names = live.monitor.names
    values = {
        "DriftScore": _double(f.input_drift),
        "OutputDriftScore": _double(f.output_drift),
        "DataQuality": _double(snapshot.data_quality),
        "Accuracy": _double(f.quality.accuracy),
        "F1Score": _double(f.quality.f1),
        "MeanAbsoluteError": _double(f.quality.mae),
        "RootMeanSquaredError": _double(f.quality.rmse),
        "Features": data_value(ua.Variant(names, S)),
        "MonitorState": data_value(ua.Variant(snapshot.state.value, S)),
    }
    scores = [f.feature_drift.get(n) for n in names]
    if all(v is not None for v in scores):
        values["FeatureDriftScores"] = data_value(ua.Variant([float(v or 0) for v in scores], ua.VariantType.Double))
    else:
        values["FeatureDriftScores"] = data_value(
            ua.Variant([float(v or 0) for v in scores], ua.VariantType.Double), _WAITING
        )
    if snapshot.last_record is not None:
        values["LastRecord"] = data_value(ua.Variant(snapshot.last_record, ua.VariantType.DateTime))
    return values


def _samples(
    deployment_id: str,
    device: str,
    counts: Figures,
    snapshot: Snapshot | None,
    active: Callable[[str, str, str], bool],
) -> list[Sample]:
    """The Prometheus samples of one (deployment, device); a figure without a value is left out."""
    labels = (("device", device), ("deployment", deployment_id))

    def sample(name: str, kind: Literal["counter", "gauge"], text: str, value: float | None) -> list[Sample]:
        return [] if value is None else [Sample(name, text, kind, labels, float(value))]

    out = [
        *sample("inferences_total", "counter", "Prediction records stored.", counts.inferences),
        *sample("errors_total", "counter", "Prediction records with a Bad status.", counts.errors),
        *sample("feedback_total", "counter", "Measured results joined to predictions.", counts.feedback),
        *sample(
            "latency_p50_seconds",
            "gauge",
            "Median inference latency.",
            None if counts.latency_p50_ms is None else counts.latency_p50_ms / 1000,
        ),
        *sample(
            "latency_p99_seconds",
            "gauge",
            "99th percentile inference latency.",
            None if counts.latency_p99_ms is None else counts.latency_p99_ms / 1000,
        ),
    ]
    if snapshot is not None:
        f = snapshot.figures
        out += [
            *sample("drift_score", "gauge", "Input drift (PSI, worst feature).", f.input_drift),
            *sample("output_drift_score", "gauge", "Output drift (PSI, worst output).", f.output_drift),
            *sample("data_quality", "gauge", "Share of records with clean inputs.", snapshot.data_quality),
            *sample("accuracy", "gauge", "Accuracy over the window.", f.quality.accuracy),
            *sample("f1_score", "gauge", "F1 score over the window.", f.quality.f1),
            *sample("mae", "gauge", "Mean absolute error over the window.", f.quality.mae),
            *sample("rmse", "gauge", "Root mean squared error over the window.", f.quality.rmse),
        ]
    for name in ALARMS:
        out.append(
            Sample(
                "alarm_active",
                "Whether the alarm condition is active.",
                "gauge",
                (*labels, ("alarm", name)),
                float(active(deployment_id, device, name)),
            )
        )
    return out


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
            await monitor.collect(
                link.device_id, source, lambda: [*sorted(link.view.pipelines), LOG_STREAM], events=events is not None
            )
        finally:
            if events is not None:
                with contextlib.suppress(Exception):  # the session may be gone already
                    await asyncio.wait_for(events.delete(), 2.0)

    return collect
