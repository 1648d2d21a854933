"""A pipeline as OPC UA nodes: ``InferenceServer/Pipelines/<slot>`` (ModelLine PipelineType).

Outputs are AnalogItemType variables (OPC 10000-8 5.3.2) named after the model's
outputs, with the DataType of the tensor, EngineeringUnits (UNECE codes,
OPC 10000-8 5.6.3) and EURange from the manifest, and every value written with
its StatusCode, the SourceTimestamp of the newest input and the ServerTimestamp
of the prediction. NodeIds are strings derived from the path, so SCADA and PLC
configurations that pin them survive restarts and reinstalls.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from asyncua import Node, Server, ua

from edge_node.runtime.pipeline import OutputValue, PipelineStatus, Reading, output_dims
from nodesets import Namespaces
from nodesets.ids import ModelLine
from sdk.binding import Binding
from sdk.opcua.analog import VariableLayout, add_prediction_variable
from sdk.opcua.audited import audited
from sdk.opcua.batch import write_together
from sdk.opcua.ids import data_value, delete_subtree, node_id, path_id, qname, status_code, text_of
from sdk.opcua.methods import bind_method
from sdk.opcua.status import status_on_error
from sdk.opcua.users import Role, requires
from sdk.opcua.values import new_instance
from sdk.package.manifest import ElementType, Manifest, TensorSpec

_log = logging.getLogger(__name__)

VARIANT_TYPES: dict[ElementType, ua.VariantType] = {
    ElementType.FLOAT32: ua.VariantType.Float,
    ElementType.FLOAT64: ua.VariantType.Double,
    ElementType.INT8: ua.VariantType.SByte,
    ElementType.INT16: ua.VariantType.Int16,
    ElementType.INT32: ua.VariantType.Int32,
    ElementType.INT64: ua.VariantType.Int64,
    ElementType.UINT8: ua.VariantType.Byte,
    ElementType.UINT16: ua.VariantType.UInt16,
    ElementType.UINT32: ua.VariantType.UInt32,
    ElementType.UINT64: ua.VariantType.UInt64,
    ElementType.BOOL: ua.VariantType.Boolean,
    ElementType.STRING: ua.VariantType.String,
}

# Unit symbols used in specs -> UN/CEFACT Recommendation 20 common codes (OPC 10000-8 5.6.3).
UNECE_CODES = {
    "mm/s": "C16",
    "m/s": "MTS",
    "m/s²": "MSK",
    "°C": "CEL",
    "K": "KEL",
    "°F": "FAH",
    "bar": "BAR",
    "mbar": "MBR",
    "Pa": "PAL",
    "kPa": "KPA",
    "MPa": "MPA",
    "m³/h": "MQH",
    "l/min": "L2",
    "l/s": "G51",
    "r/min": "RPM",
    "rpm": "RPM",
    "Hz": "HTZ",
    "h": "HUR",
    "min": "MIN",
    "s": "SEC",
    "ms": "C26",
    "%": "P1",
    "V": "VLT",
    "A": "AMP",
    "W": "WTT",
    "kW": "KWT",
    "kWh": "KWH",
    "N": "NEW",
    "N·m": "NU",
    "Nm": "NU",
    "kg": "KGM",
    "g": "GRM",
    "t": "TNE",
    "m": "MTR",
    "mm": "MMT",
    "µm": "4H",
    "l": "LTR",
    "m³": "MTQ",
}
UNECE_NAMESPACE = "http://www.opcfoundation.org/UA/units/un/cefact"


def eu_information(symbol: str) -> ua.EUInformation:
    """EngineeringUnits for a unit symbol; UnitId -1 when the symbol has no known UNECE code."""
    code = UNECE_CODES.get(symbol)
    unit_id = -1
    if code is not None:
        unit_id = 0
        for char in code:  # the code's characters packed into an Int32, big-endian (OPC 10000-8 5.6.3)
            unit_id = (unit_id << 8) | ord(char)
    return ua.EUInformation(
        NamespaceUri=UNECE_NAMESPACE,
        UnitId=unit_id,
        DisplayName=ua.LocalizedText(symbol),
        Description=ua.LocalizedText(symbol),
    )


STATUS_VARIABLES = (
    ("Model", "model", ua.VariantType.String),
    ("Version", "version", ua.VariantType.String),
    ("State", "state", ua.VariantType.Int32),
    ("StateReason", "reason", ua.VariantType.String),
    ("InferenceCount", "inference_count", ua.VariantType.UInt64),
    ("ErrorCount", "error_count", ua.VariantType.UInt64),
    ("SkippedCount", "skipped_count", ua.VariantType.UInt64),
    ("LastLatencyMs", "last_latency_ms", ua.VariantType.Double),
    ("Configuration", "configuration", ua.VariantType.String),
    ("GoodConfiguration", "good_configuration", ua.VariantType.String),
)
"""The pipeline's status variables: browse name, PipelineStatus field, DataType."""
COUNTERS = ("InferenceCount", "ErrorCount", "SkippedCount", "LastLatencyMs")
"""Status variables that change with every prediction: written at most every COUNTER_PERIOD_S."""
COUNTER_PERIOD_S = 1.0
"""How often the counters are written at most while predictions run; a change waits at most this long, and the
newest counters are written when the node stops (``flush``)."""


class PipelineNodes:
    """PipelineSink over one PipelineType object.

    A server variable is written only when its value or status changed, and the writes of one prediction (its
    outputs, and its state, reason and configurations where they changed) go in one batch (``write_together``), so
    a subscriber sees a prediction whole. The counters (COUNTERS) are the exception: they change with every
    prediction, so they are written at most every COUNTER_PERIOD_S, the first change at once.
    """

    def __init__(self, server: Server, node: Node, clock: Callable[[], float] = time.monotonic) -> None:
        self.server = server
        self.node = node
        self.name = ""
        self.on_set_binding: Callable[[Binding | None], Awaitable[None]] | None = None
        self._outputs: dict[str, tuple[Node, ua.VariantType, list[int]]] = {}
        self._inputs: dict[str, Node] = {}
        self._vars: dict[str, Node] = {}
        self._shown: dict[str, object] = {}  # status values as last written: write only what changed
        self._clock = clock
        self._counters_due = 0.0  # when the counters may be written again
        self._late: PipelineStatus | None = None  # a status whose counters are not written yet
        self._late_flush: asyncio.TimerHandle | None = None
        self._flushing: set[asyncio.Task[None]] = set()

    @classmethod
    async def create(
        cls, server: Server, ns: Namespaces, pipelines_folder: Node, name: str, instance_ns: int
    ) -> PipelineNodes:
        """Instantiate ``Pipelines/<name>`` and bind SetBinding."""
        pipeline_id = node_id(text_of(path_id(pipelines_folder.nodeid, name)), instance_ns)
        node = await new_instance(
            pipelines_folder,
            server.get_node(node_id(ModelLine.PIPELINE_TYPE, ns.modelline)),
            nodeid=pipeline_id,
            bname=qname(name, instance_ns),
        )
        self = cls(server, node)
        self.name = name
        for child in await node.get_children():
            self._vars[str((await child.read_browse_name()).Name)] = child
        await bind_method(server, self._vars["SetBinding"], self._set_binding)
        await self.status_changed(PipelineStatus())
        await self._vars["Binding"].write_value("")
        return self

    def _path(self, *parts: str) -> ua.NodeId:
        return path_id(self.node.nodeid, *parts)

    @status_on_error
    @requires(Role.ENGINEER)
    @audited("binding", lambda self: self.name)
    async def _set_binding(self, parent: ua.NodeId, binding_json: ua.Variant) -> list[ua.Variant]:
        text = binding_json.Value or ""  # an explicit empty String clears the binding
        binding = Binding.parse(text, source="BindingJson") if text.strip() else None
        if self.on_set_binding is not None:
            await self.on_set_binding(binding)
        return []

    # --- PipelineSink ---------------------------------------------------------------------------

    async def model_changed(self, manifest: Manifest | None) -> None:
        """Replace the output variables when the model's outputs differ."""
        wanted = {o.name: o for o in manifest.outputs} if manifest else {}
        for name in list(self._outputs):
            if name not in wanted or self._layout(wanted[name]) != self._outputs[name][1:]:
                node = self._outputs.pop(name)[0]
                await delete_subtree(node)
        for name, spec in wanted.items():
            if name not in self._outputs:
                self._outputs[name] = (await self._add_output(spec), *self._layout(spec))

    def _layout(self, spec: TensorSpec) -> tuple[ua.VariantType, list[int]]:
        return VARIANT_TYPES[spec.element_type], output_dims(spec)

    async def _add_output(self, spec: TensorSpec) -> Node:
        kind, dims = self._layout(spec)
        analog = kind not in (ua.VariantType.Boolean, ua.VariantType.String)
        layout = VariableLayout(
            kind=kind,
            dims=tuple(dims),
            label=spec.label or spec.name,
            units=eu_information(spec.units) if spec.units and analog else None,
            eu_range=ua.Range(
                Low=spec.valid.min if spec.valid.min is not None else -1e38,
                High=spec.valid.max if spec.valid.max is not None else 1e38,
            )
            if analog
            else None,
        )
        output_id = self._path("Outputs", spec.name)
        bname = qname(spec.name, self.node.nodeid.NamespaceIndex)
        node = await add_prediction_variable(self._vars["Outputs"], output_id, bname, layout)
        # Until the first prediction: nothing to trust yet.
        await self._write(node, data_value(layout.zero(), ua.StatusCodes.BadWaitingForInitialData))
        return node

    async def _write(self, node: Node, value: ua.DataValue) -> None:
        await self.server.write_attribute_value(node.nodeid, value)

    def _output_writes(self, outputs: list[OutputValue]) -> list[tuple[ua.NodeId, ua.DataValue]]:
        writes = []
        for out in outputs:
            entry = self._outputs.get(out.name)
            if entry is None:
                continue
            node, kind, _ = entry
            # A Bad status carries no value: OPC 10000-4 5.10.4 has the server set it to null.
            variant = ua.Variant(out.value, kind) if out.value is not None else ua.Variant()
            writes.append(
                (node.nodeid, data_value(variant, out.status, out.source_time or out.server_time, out.server_time))
            )
        return writes

    async def publish(self, outputs: list[OutputValue]) -> None:
        """Write each output with its status and both timestamps, in one batch."""
        await write_together(self.server, self._output_writes(outputs))

    async def predicted(
        self, outputs: list[OutputValue], status: PipelineStatus, inputs: dict[str, Reading] | None = None
    ) -> None:
        """One prediction: its outputs, the status that comes with it and the readings of the inputs that triggered
        it (their mirror), in one batch."""
        writes = self._output_writes(outputs) + self._status_writes(status)
        if inputs:
            now = datetime.now(UTC)
            for feature, reading in inputs.items():
                node = self._inputs.get(feature)
                if node is not None:
                    writes.append((node.nodeid, self._mirrored(reading, now)))
        await write_together(self.server, writes)

    async def binding_changed(self, binding: Binding | None) -> None:
        """Show the binding and mirror its inputs."""
        await self._vars["Binding"].write_value(binding.to_json() if binding else "")
        wanted = set(binding.inputs) if binding else set()
        for name in list(self._inputs):
            if name not in wanted:
                await delete_subtree(self._inputs.pop(name))
        folder = self._vars["Inputs"]
        for name in sorted(wanted - set(self._inputs)):
            tag = binding.inputs[name] if binding else None
            node = await folder.add_variable(
                self._path("Inputs", name),
                qname(name, self.node.nodeid.NamespaceIndex),
                ua.Variant(0.0, ua.VariantType.Double),
                datatype=node_id(ua.ObjectIds.Double),
            )
            if tag is not None:
                await node.write_attribute(
                    ua.AttributeIds.Description,
                    ua.DataValue(ua.Variant(ua.LocalizedText(f"{tag.node_id} on {tag.endpoint}"))),
                )
            await self._write(node, data_value(None, ua.StatusCodes.BadWaitingForInitialData))
            self._inputs[name] = node

    async def input_changed(self, feature: str, reading: Reading) -> None:
        """Mirror the newest reading of a bound input."""
        node = self._inputs.get(feature)
        if node is not None:
            await self._write(node, self._mirrored(reading, datetime.now(UTC)))

    @staticmethod
    def _mirrored(reading: Reading, now: datetime) -> ua.DataValue:
        """The mirror's value of a reading: the number the model is fed, or its status."""
        status = reading.status
        if reading.stale and status == 0:
            status = ua.StatusCodes.UncertainLastUsableValue
        value = reading.value
        if isinstance(value, bool):
            value = float(value)
        if isinstance(value, int | float) and not status_code(status).is_bad():
            variant = ua.Variant(float(value), ua.VariantType.Double)  # the mirror shows what the model is fed
        else:
            variant = ua.Variant()
            if not status_code(status).is_bad():
                status = ua.StatusCodes.BadTypeMismatch
        return data_value(variant, status, reading.source_time, now)

    async def show_statistics(self, statistics_json: str) -> None:
        """The pipeline's running statistics (PipelineStatistics JSON)."""
        await self._write(self._vars["Statistics"], ua.DataValue(ua.Variant(statistics_json, ua.VariantType.String)))

    async def status_changed(self, status: PipelineStatus) -> None:
        """Model, Version, State, StateReason and the configurations where they changed; the counters when due."""
        await write_together(self.server, self._status_writes(status))

    async def flush(self) -> None:
        """Write the newest counters now (when the node stops)."""
        if self._late_flush is not None:
            self._late_flush.cancel()
            self._late_flush = None
        late, self._late = self._late, None
        if late is not None:
            self._counters_due = 0.0
            await write_together(self.server, self._status_writes(late))

    def _flush_later(self) -> None:
        self._late_flush = None
        task = asyncio.get_running_loop().create_task(self.flush(), name="pipeline counters")
        self._flushing.add(task)  # held until done: a flush that fails is logged by the loop, never lost silently
        task.add_done_callback(self._flushing.discard)

    def _status_writes(self, status: PipelineStatus) -> list[tuple[ua.NodeId, ua.DataValue]]:
        now = self._clock()
        counters_due = now >= self._counters_due
        writes = []
        for name, field, kind in STATUS_VARIABLES:
            value = getattr(status, field)
            if name in self._shown and self._shown[name] == value:
                continue
            if name in COUNTERS and not counters_due:
                self._late = status
                if self._late_flush is None:
                    loop = asyncio.get_running_loop()
                    self._late_flush = loop.call_later(self._counters_due - now, self._flush_later)
                continue
            shown = int(value) if kind is ua.VariantType.Int32 else value
            writes.append((self._vars[name].nodeid, ua.DataValue(ua.Variant(shown, kind))))
            self._shown[name] = value
            if name in COUNTERS:
                self._counters_due = now + COUNTER_PERIOD_S
        if counters_due:
            self._late = None
        return writes


async def create_inference_server(server: Server, ns: Namespaces, instance_ns: int) -> Node:
    """``Objects/InferenceServer`` with its ``Pipelines`` folder; returns the folder."""
    node = await new_instance(
        server.nodes.objects,
        server.get_node(node_id(ModelLine.INFERENCE_SERVER_TYPE, ns.modelline)),
        nodeid=node_id("InferenceServer", instance_ns),
        bname=qname("InferenceServer", ns.modelline),
    )
    return await node.get_child(f"{ns.modelline}:Pipelines")
