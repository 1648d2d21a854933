"""A pipeline: the latest value of every bound input tag in, one inference per trigger, outputs out.

There is no queue between tags and inference. Each reading replaces the last one
of its feature and raises a trigger; the worker takes all triggers raised since
its last run at once and runs the model on the newest values, so inference never
falls behind and ``skipped_count`` tells how many triggers were folded into a
later run. Inputs that cannot be trusted give every output a StatusCode saying
why (see ``quality``), never an exception.

Evidence of health is exact: every change of model or binding gets a new
``configuration`` (model, version, binding digest and a change number), shown
before the first prediction it makes, and ``good_configuration`` names the
configuration that made the newest Good prediction. An inference whose model or
binding changed while it ran is not published (it runs again), so a Good output
is never credited to a configuration that did not make it. An update client
confirms an install only when ``good_configuration`` equals the configuration
it read after its own SetBinding: Good outputs of the new model with the old
binding, or of the old model, cannot count.
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Protocol

import numpy as np

from edge_node.runtime import quality
from edge_node.runtime.model import InferenceRuntime, LoadedModel
from nodesets.ids import PipelineState
from sdk.binding import Binding, TriggerMode
from sdk.cancel import honour_cancel
from sdk.package.manifest import ElementType, Feature, Manifest, TensorSpec
from sdk.package.onnx_model import NUMPY_DTYPES, one_sample_shape

_log = logging.getLogger(__name__)


def utc_now() -> datetime:
    """Now, in UTC."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class Reading:
    """One value of an input tag as the source reported it."""

    value: Any
    status: int = quality.GOOD
    source_time: datetime | None = None
    stale: bool = False  # the connection to its source is lost: this is the last usable value


@dataclass(frozen=True)
class OutputValue:
    """One output of one inference, ready to publish."""

    name: str
    value: Any  # a number, a list of numbers, or None (with a Bad status: OPC UA then publishes no value)
    status: int
    source_time: datetime | None
    server_time: datetime


@dataclass(frozen=True)
class PipelineStatus:
    """What the pipeline node shows besides its outputs."""

    model: str = ""
    version: str = ""
    state: PipelineState = PipelineState.NO_MODEL
    reason: str = "no model installed"
    inference_count: int = 0
    error_count: int = 0
    skipped_count: int = 0
    last_latency_ms: float = 0.0
    configuration: str = ""  # model, version, binding digest and change number of what serves now
    good_configuration: str = ""  # the configuration that made the newest Good prediction


@dataclass(frozen=True)
class Inference:
    """One trigger's outcome as the Model Monitor records it: what the model saw and what came of it."""

    pipeline: str
    manifest: Manifest
    configuration: str
    readings: dict[str, Reading | None]  # every input feature of the model -> its reading when assembled
    outputs: list[OutputValue]
    status: int  # of the outputs
    latency_ms: float  # 0 when no inference ran (Bad inputs, failed run)
    skipped: int  # triggers folded into this one
    part_key: Reading | None  # the binding's part key tag when the inputs were assembled
    time: datetime
    values: np.ndarray | None = None
    """Every input feature's value (``Manifest.input_features`` order, float64) when all readings were Good, current
    numbers within their valid ranges (the statistics then need no look at ``readings``); None otherwise."""


class RecordSink(Protocol):
    """Where a pipeline reports every inference and every feedback value (the Model Monitor's collector).

    Both are called on the event loop right after the outputs are published and must not wait.
    """

    def inferred(self, inference: Inference) -> None:
        """One trigger was served (Good, Uncertain or Bad)."""

    def feedback(self, pipeline: str, reading: Reading, part_key: Reading | None) -> None:
        """The binding's feedback tag reported a measured result."""


class PipelineSink(Protocol):
    """Where a pipeline shows itself (the OPC UA binding implements this)."""

    async def model_changed(self, manifest: Manifest | None) -> None:
        """The serving model changed; output nodes may need to change with its interface."""

    async def binding_changed(self, binding: Binding | None) -> None:
        """The binding changed; the input mirror follows it."""

    async def input_changed(self, feature: str, reading: Reading) -> None:
        """A bound input has a new reading."""

    async def publish(self, outputs: list[OutputValue]) -> None:
        """New output values (or statuses)."""

    async def predicted(
        self, outputs: list[OutputValue], status: PipelineStatus, inputs: dict[str, Reading] | None = None
    ) -> None:
        """One prediction's outputs and the status that comes with it (counters, state, reason), shown together;
        in place of ``publish`` and ``status_changed`` for that prediction; with ``inputs``, the newest readings
        of the inputs that triggered it, in place of ``input_changed`` for each."""

    async def status_changed(self, status: PipelineStatus) -> None:
        """Counters, state or reason changed."""


def is_batched(shape: list[Any]) -> bool:
    """Whether the first dimension is the batch (symbolic, unknown or 1)."""
    return bool(shape) and (not isinstance(shape[0], int) or shape[0] == 1)


def output_dims(spec: TensorSpec) -> list[int]:
    """The shape of one output value as published: [] for a scalar."""
    dims = one_sample_shape(spec.shape[1:] if is_batched(spec.shape) else spec.shape)
    return [] if math.prod(dims) == 1 else dims


def _input_features(tensor: TensorSpec) -> list[Feature]:
    return list(tensor.features) or [Feature(name=tensor.name, valid=tensor.valid)]


@dataclass(frozen=True)
class _TensorPlan:
    """One input tensor as assembled: its features' names, valid ranges, dtype and shape, and where its features
    are in the model's feature vector (``start``..``stop``)."""

    name: str
    names: list[str]
    low: np.ndarray  # -inf where no minimum
    high: np.ndarray  # +inf where no maximum
    dtype: Any
    shape: list[int]
    start: int
    stop: int


_EXACT_INT = 2**53
"""Integers beyond this are not exact as float64: such a reading takes the feature-by-feature way."""


@dataclass(frozen=True)
class _Plan:
    """What assembling a model's inputs needs, worked out once per model."""

    manifest: Manifest
    features: list[str]
    tensors: list[_TensorPlan]
    index: dict[str, int]  # feature -> its place in the feature vector
    names: frozenset[str]
    low: np.ndarray
    high: np.ndarray
    vector: bool  # whether the feature vector may feed the model (distinct names, floating point tensors only)

    @classmethod
    def of(cls, manifest: Manifest) -> _Plan:
        tensors = []
        start = 0
        for tensor in manifest.inputs:
            features = _input_features(tensor)
            tensors.append(
                _TensorPlan(
                    tensor.name,
                    [f.name for f in features],
                    np.array([-math.inf if f.valid.min is None else f.valid.min for f in features], dtype=np.float64),
                    np.array([math.inf if f.valid.max is None else f.valid.max for f in features], dtype=np.float64),
                    NUMPY_DTYPES[tensor.element_type],
                    one_sample_shape(tensor.shape, len(tensor.features) if tensor.features else None),
                    start,
                    start + len(features),
                )
            )
            start += len(features)
        names = [f.name for f in manifest.input_features()]
        index = {name: i for i, name in enumerate(names)}
        vector = len(index) == len(names) == start and all(
            np.dtype(t.dtype).kind == "f" and math.prod(t.shape) == t.stop - t.start for t in tensors
        )
        return cls(
            manifest,
            names,
            tensors,
            index,
            frozenset(names),
            np.concatenate([t.low for t in tensors]) if tensors else np.empty(0),
            np.concatenate([t.high for t in tensors]) if tensors else np.empty(0),
            vector,
        )


_Assembled = tuple[dict[str, np.ndarray], int, str, datetime | None, np.ndarray | None]
"""Input tensors, status, reason, newest source time, feature vector (when all is Good)."""


def _plain_number(reading: Reading) -> bool:
    """A Good, current reading whose value is a number float64 holds exactly (the common case)."""
    if reading.status or reading.stale:
        return False
    value = reading.value
    return isinstance(value, float) or (isinstance(value, int) and -_EXACT_INT <= value <= _EXACT_INT)


class Pipeline:
    """One model slot at work."""

    def __init__(
        self,
        name: str,
        runtime: InferenceRuntime,
        sink: PipelineSink,
        clock: Callable[[], datetime] = utc_now,
        records: RecordSink | None = None,
    ) -> None:
        self.name = name
        self.records = records
        self._part_key: Reading | None = None
        self._last_feedback: tuple[Any, datetime | None] | None = None
        self._skipped_now = 0
        self._runtime = runtime
        self._sink = sink
        self._clock = clock
        self._model: LoadedModel | None = None
        self._binding: Binding | None = None
        self._values: dict[str, Reading] = {}
        self._status = PipelineStatus()
        self._triggers = 0
        self._wake = asyncio.Event()
        self._running = False
        self._published_unbound = False
        self._changes = 0
        self._start = secrets.token_hex(3)  # change numbers of an earlier run of the node never match
        self._problem: tuple[LoadedModel | None, Binding | None, str | None] | None = None
        self._planned: _Plan | None = None
        # The readings as the model's feature vector, kept up to date as readings arrive (``_note``), so a
        # prediction in the common case needs no pass over every feature in Python. Rebuilt from ``_values``
        # when ``_vector_plan`` is not the serving model's plan.
        self._vector_plan: _Plan | None = None
        self._vector = np.empty(0)
        self._unusual: set[str] = set()  # features of the vector missing or not plain numbers (_plain_number)
        self._newest: datetime | None = None  # the newest source time of the vector's readings
        self._newest_due = False  # the reading with the newest source time was replaced by an older one
        self._mirror: dict[str, Reading] = {}  # triggering readings the input mirror shows with the next prediction

    def _next_configuration(self) -> str:
        """A new configuration for the model and binding that serve from now on."""
        self._changes += 1
        if self._model is None:
            return ""
        m = self._model.manifest
        binding = self._binding.digest() if self._binding else "none"
        return f"{m.name} {m.version} binding {binding} #{self._start}-{self._changes}"

    @property
    def model(self) -> LoadedModel | None:
        """The serving model."""
        return self._model

    @property
    def binding(self) -> Binding | None:
        """The current binding."""
        return self._binding

    @property
    def idle(self) -> bool:
        """No inference running and no trigger waiting."""
        return not self._running and not self._wake.is_set()

    @property
    def status(self) -> PipelineStatus:
        """State, reason and counters."""
        return self._status

    def bound_features(self) -> dict[str, Any]:
        """Feature name -> TagRef of the current binding."""
        return dict(self._binding.inputs) if self._binding else {}

    async def set_model(self, model: LoadedModel | None) -> None:
        """Serve another model from the next trigger on (the swap is one assignment)."""
        previous, self._model = self._model, model
        changed_interface = (
            previous is None
            or model is None
            or (
                (previous.manifest.inputs, previous.manifest.outputs) != (model.manifest.inputs, model.manifest.outputs)
            )
        )
        if changed_interface:
            await self._sink.model_changed(model.manifest if model else None)
        self._published_unbound = False
        m = model.manifest if model else None
        await self._set_status(
            model=m.name if m else "", version=m.version if m else "", configuration=self._next_configuration()
        )
        await self._evaluate_configuration()
        self._trigger()

    async def set_binding(self, binding: Binding | None) -> None:
        """Take a new binding at once (the input hub re-subscribes to follow it)."""
        previous, self._binding = self._binding, binding
        # A reading belongs to its tag: keep it only where the feature still reads the same tag.
        unchanged = {
            feature
            for feature, tag in (binding.inputs.items() if binding else [])
            if previous is not None and previous.inputs.get(feature) == tag
        }
        self._values = {k: v for k, v in self._values.items() if k in unchanged}
        self._vector_plan = None
        self._mirror = {}  # the new mirror shows what is kept, below
        if previous is None or binding is None or previous.part_key != binding.part_key:
            self._part_key = None
        if previous is None or binding is None or previous.feedback != binding.feedback:
            self._last_feedback = None
        self._published_unbound = False
        await self._set_status(configuration=self._next_configuration())  # before any prediction with it
        await self._sink.binding_changed(binding)
        for feature, reading in self._values.items():  # the mirror shows what is kept
            await self._sink.input_changed(feature, reading)
        await self._evaluate_configuration()
        self._trigger()

    async def offer(self, feature: str, reading: Reading) -> None:
        """A new reading of a bound input (from the input hub)."""
        if self._binding is None or feature not in self._binding.inputs:
            return
        previous = self._values.get(feature)
        if previous == reading:
            # The same sample again (value, status and source timestamp, and not stale), as a subscription sends
            # its current values after a reconnect: not a change, so no trigger and no second prediction.
            return
        self._values[feature] = reading
        if self._vector_plan is not None:
            self._note(self._vector_plan, feature, reading, previous)
        trigger = self._binding.trigger
        if trigger.mode is TriggerMode.ANY_CHANGE or (trigger.mode is TriggerMode.TAG and trigger.tag == feature):
            # The mirror shows it with the prediction it triggers, in the same batch (``_show``); readings folded
            # into one run show their newest. Whatever no prediction showed is mirrored after the run (``run``).
            self._mirror[feature] = reading
            self._trigger()
        else:
            await self._sink.input_changed(feature, reading)

    def offer_part_key(self, reading: Reading) -> None:
        """A new value of the binding's part key tag: captured with the following predictions."""
        self._part_key = reading

    def offer_feedback(self, reading: Reading) -> None:
        """A new value of the binding's feedback tag: the plant's measured result (never a trigger)."""
        # A subscription sends the current value again after each reconnect: that is not a new result.
        if (reading.value, reading.source_time) == self._last_feedback:
            return
        self._last_feedback = (reading.value, reading.source_time)
        if self.records is not None:
            self.records.feedback(self.name, reading, self._part_key)

    async def mark_stale(self, features: set[str], stale: bool) -> None:
        """The connection to these features' source was lost (True) or is back (False)."""
        changed = False
        for feature in features:
            reading = self._values.get(feature)
            if reading is not None and reading.stale != stale:
                self._values[feature] = replace(reading, stale=stale)
                self._vector_plan = None
                self._mirror.pop(feature, None)  # shown now, with its new quality
                await self._sink.input_changed(feature, self._values[feature])
                changed = True
        if changed:
            self._trigger()  # outputs show the change of quality even if no value changes

    def _trigger(self) -> None:
        self._triggers += 1
        self._wake.set()

    async def run(self) -> None:
        """The worker: one inference per batch of triggers, forever."""
        while True:
            binding = self._binding
            period = (
                binding.trigger.interval_ms / 1000.0
                if binding and binding.trigger.interval_ms and (binding.trigger.mode is TriggerMode.PERIODIC)
                else None
            )
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=period)
            except TimeoutError:
                self._triggers += 1
            honour_cancel()
            self._wake.clear()
            taken, self._triggers = self._triggers, 0
            if taken == 0:
                continue
            self._running = True
            try:
                self._skipped_now = taken - 1
                if taken > 1:
                    await self._set_status(skipped_count=self._status.skipped_count + taken - 1)
                await self._infer_once()
            except Exception:  # a pipeline never dies: it reports and waits for the next trigger
                _log.exception("pipeline %s: unexpected failure", self.name)
                await self._set_status(
                    state=PipelineState.FAULTED,
                    reason="internal error, see the edge node log",
                    error_count=self._status.error_count + 1,
                )
            finally:
                self._running = False
                if self._mirror:  # no prediction showed them (no model, a configuration problem, a retry)
                    await self._mirror_now()

    async def _mirror_now(self) -> None:
        mirror, self._mirror = self._mirror, {}
        for feature, reading in mirror.items():
            await self._sink.input_changed(feature, reading)

    async def _set_status(self, **changes: Any) -> None:
        status = replace(self._status, **changes)
        if status != self._status:
            self._status = status
            await self._sink.status_changed(status)

    def _configuration_problem(self) -> str | None:
        # Asked before every inference; the answer changes only with the model or the binding.
        model, binding = self._model, self._binding
        cached = self._problem
        if cached is not None and cached[0] is model and cached[1] is binding:
            return cached[2]
        problem = self._find_configuration_problem()
        self._problem = (model, binding, problem)
        return problem

    def _find_configuration_problem(self) -> str | None:
        if self._model is None:
            return "no model installed"
        if self._binding is None:
            return "inputs are not bound to tags (set a binding)"
        problems = self._binding.problems_with(self._model.manifest)
        for tensor in self._model.manifest.inputs:
            size = math.prod(one_sample_shape(tensor.shape, len(tensor.features) if tensor.features else None))
            if size != len(_input_features(tensor)):
                problems.append(f"input {tensor.name!r} takes {size} values per sample, more than tags can feed")
            if tensor.element_type is ElementType.STRING:
                problems.append(f"input {tensor.name!r} takes text, which tags do not feed")
        return "binding does not fit the model: " + "; ".join(problems) if problems else None

    async def _evaluate_configuration(self) -> None:
        problem = self._configuration_problem()
        if self._model is None:
            await self._set_status(state=PipelineState.NO_MODEL, reason=problem or "")
        elif problem:
            await self._set_status(state=PipelineState.UNBOUND, reason=problem)
            if not self._published_unbound:
                await self._publish_status_only(quality.BAD_CONFIGURATION_ERROR)
                self._published_unbound = True

    async def _publish_status_only(self, status: int, source_time: datetime | None = None) -> list[OutputValue]:
        outputs = self._status_only(status, source_time)
        await self._sink.publish(outputs)
        return outputs

    def _status_only(self, status: int, source_time: datetime | None = None) -> list[OutputValue]:
        if self._model is None:
            return []
        now = self._clock()
        return [OutputValue(o.name, None, status, source_time or now, now) for o in self._model.manifest.outputs]

    def _record(
        self,
        manifest: Manifest,
        configuration: str,
        seen: dict[str, Reading | None],
        outputs: list[OutputValue],
        status: int,
        latency_ms: float,
        part_key: Reading | None,
        values: np.ndarray | None = None,
    ) -> None:
        if self.records is None:
            return
        inference = Inference(
            self.name,
            manifest,
            configuration,
            seen,
            outputs,
            status,
            latency_ms,
            self._skipped_now,
            part_key,
            outputs[0].server_time if outputs else self._clock(),
            values,
        )
        self._skipped_now = 0
        try:
            self.records.inferred(inference)
        except Exception:  # recording never stops a prediction
            _log.exception("pipeline %s: recording failed", self.name)

    def _plan(self, manifest: Manifest) -> _Plan:
        plan = self._planned
        if plan is None or plan.manifest is not manifest:
            plan = self._planned = _Plan.of(manifest)
        return plan

    def _note(self, plan: _Plan, feature: str, reading: Reading, previous: Reading | None) -> None:
        """Take a new reading into the feature vector."""
        i = plan.index.get(feature)
        if i is None:
            return
        if _plain_number(reading):
            self._vector[i] = reading.value
            self._unusual.discard(feature)
        else:
            self._unusual.add(feature)
        t, newest = reading.source_time, self._newest
        if t is not None and (newest is None or t > newest):
            self._newest = t
        elif previous is not None and newest is not None and previous.source_time == newest and t != newest:
            self._newest_due = True

    def _follow(self, plan: _Plan) -> None:
        """Build the feature vector of ``plan`` from the readings."""
        self._vector = np.zeros(len(plan.features), dtype=np.float64)
        self._unusual = set(plan.features)
        self._newest, self._newest_due = None, False
        for feature in plan.features:
            reading = self._values.get(feature)
            if reading is not None:
                self._note(plan, feature, reading, None)
        self._vector_plan = plan

    def _newest_time(self, plan: _Plan) -> datetime | None:
        if self._newest_due:
            times = [r.source_time for n in plan.features if (r := self._values.get(n)) and r.source_time]
            self._newest, self._newest_due = max(times, default=None), False
        return self._newest

    def _assemble(self, manifest: Manifest) -> _Assembled:
        """Input tensors from the latest readings; with the worst quality found and why, the newest source time,
        and the feature vector when every reading was a Good, current, finite number within its valid range.

        That common case is checked with numpy over the feature vector, kept up to date as readings arrive;
        anything else takes the feature-by-feature way, which names the problem.
        """
        plan = self._plan(manifest)
        if not plan.vector:
            return (*self._assemble_one_by_one(manifest), None)
        if self._vector_plan is not plan:
            self._follow(plan)
        vector = self._vector
        if self._unusual or not (
            np.isfinite(vector).all() and (vector >= plan.low).all() and (vector <= plan.high).all()
        ):
            return (*self._assemble_one_by_one(manifest), None)
        feeds = {t.name: vector[t.start : t.stop].astype(t.dtype).reshape(t.shape) for t in plan.tensors}
        return feeds, quality.GOOD, "", self._newest_time(plan), vector.copy()

    def _assemble_one_by_one(self, manifest: Manifest) -> tuple[dict[str, np.ndarray], int, str, datetime | None]:
        feeds: dict[str, np.ndarray] = {}
        status, reason = quality.GOOD, ""
        newest: datetime | None = None
        for tensor in manifest.inputs:
            values = []
            for feature in _input_features(tensor):
                reading = self._values.get(feature.name)
                if reading is None:
                    return {}, quality.BAD_WAITING_FOR_INITIAL_DATA, f"input {feature.name!r} has no value yet", None
                if quality.is_bad(reading.status):
                    return {}, reading.status, f"input {feature.name!r} is Bad at its source", reading.source_time
                value = reading.value
                if isinstance(value, bool):
                    value = float(value)
                if not isinstance(value, int | float):
                    why = f"input {feature.name!r} is {type(value).__name__}, not a number"
                    return {}, quality.BAD_TYPE_MISMATCH, why, reading.source_time
                if not math.isfinite(value):
                    return {}, quality.BAD_OUT_OF_RANGE, f"input {feature.name!r} is {value}", reading.source_time
                low, high = feature.valid.min, feature.valid.max
                if (low is not None and value < low) or (high is not None and value > high):
                    span = f"{'' if low is None else f'{low:g}'}..{'' if high is None else f'{high:g}'}"
                    why = f"input {feature.name!r} = {value:g} is outside its valid range {span}"
                    return {}, quality.BAD_OUT_OF_RANGE, why, reading.source_time
                if reading.stale and not quality.is_uncertain(status):
                    status, reason = quality.UNCERTAIN_LAST_USABLE_VALUE, f"input {feature.name!r}: source disconnected"
                elif quality.is_uncertain(reading.status) and status == quality.GOOD:
                    status, reason = reading.status, f"input {feature.name!r} is Uncertain at its source"
                if reading.source_time is not None and (newest is None or reading.source_time > newest):
                    newest = reading.source_time
                values.append(value)
            shape = one_sample_shape(tensor.shape, len(tensor.features) if tensor.features else None)
            feeds[tensor.name] = np.asarray(values, dtype=NUMPY_DTYPES[tensor.element_type]).reshape(shape)
        return feeds, status, reason, newest

    async def _infer_once(self) -> None:
        model = self._model
        if model is None or self._configuration_problem():
            await self._evaluate_configuration()
            return
        configuration = self._status.configuration
        plan, values = self._plan(model.manifest), self._values
        # Every feature's reading (None where there is none): a copy of the readings when they are exactly those.
        seen: dict[str, Reading | None] = (
            dict(values) if values.keys() == plan.names else {name: values.get(name) for name in plan.features}
        )
        part_key = self._part_key
        feeds, status, reason, source_time, vector = self._assemble(model.manifest)
        if quality.is_bad(status):
            shown = self._status_only(status, source_time)
            errors = self._status.error_count + 1
            await self._show(shown, state=PipelineState.DEGRADED, reason=reason, error_count=errors)
            self._record(model.manifest, configuration, seen, shown, status, 0.0, part_key)
            return
        try:
            outputs, latency = await self._runtime.run(model, feeds)
        except Exception as exc:
            _log.warning("pipeline %s: inference failed: %s", self.name, exc)
            shown = self._status_only(quality.BAD_INTERNAL_ERROR, source_time)
            await self._show(
                shown,
                state=PipelineState.FAULTED,
                reason=f"inference failed: {str(exc).splitlines()[0]}",
                error_count=self._status.error_count + 1,
            )
            self._record(model.manifest, configuration, seen, shown, quality.BAD_INTERNAL_ERROR, 0.0, part_key)
            return
        if self._model is not model or self._status.configuration != configuration:
            self._trigger()  # model or binding changed while it ran: serve the new configuration's answer instead
            return
        now = self._clock()
        published = []
        for spec in model.manifest.outputs:
            array = np.asarray(outputs[spec.name])
            one = array[0] if array.ndim >= 1 and is_batched(spec.shape) else array
            value = one.item() if one.size == 1 else one.reshape(-1).tolist()
            published.append(OutputValue(spec.name, value, status, source_time, now))
        await self._show(
            published,
            state=PipelineState.RUNNING if status == quality.GOOD else PipelineState.DEGRADED,
            reason=reason,
            inference_count=self._status.inference_count + 1,
            last_latency_ms=latency,
            good_configuration=configuration if status == quality.GOOD else self._status.good_configuration,
        )
        self._record(model.manifest, configuration, seen, published, status, latency, part_key, vector)

    async def _show(self, outputs: list[OutputValue], **changes: Any) -> None:
        """Publish one prediction's outputs with its new status, in one go."""
        self._status = replace(self._status, **changes)
        mirror, self._mirror = self._mirror, {}
        await self._sink.predicted(outputs, self._status, mirror or None)
