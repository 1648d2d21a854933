"""Which tag feeds each model input, and what makes the model run: a pipeline's binding.

A binding is JSON on the wire (the pipeline's SetBinding method, the gateway's
Deploy options) and JSON or TOML on disk (``modelline install --binding``, the
edge node's config). Example (TOML)::

    [trigger]
    mode = "any_change"          # or "tag" (with tag = "<feature>"), or "periodic" (with interval_ms)

    [inputs]
    vibration_rms = { endpoint = "opc.tcp://plc-line3:4840", node_id = "ns=2;s=Pump1.VibrationRms" }
    speed         = { endpoint = "opc.tcp://plc-line3:4840", node_id = "ns=2;s=Pump1.Speed" }

Optionally, for the Model Monitor, the plant's measured result and the id of the part
it belongs to (neither is a model input nor a trigger)::

    feedback = { endpoint = "opc.tcp://plc-line3:4840", node_id = "ns=2;s=Pump1.MeasuredLife" }
    part_key = { endpoint = "opc.tcp://plc-line3:4840", node_id = "ns=2;s=Pump1.SerialNumber" }

(in TOML, put these two lines before the [trigger] table).
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from enum import StrEnum
from pathlib import Path
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from sdk.errors import NotFound, UsageError
from sdk.names import EndpointUrl, Name, first_problem
from sdk.package.manifest import Manifest

PERIODIC_PUBLISHING_INTERVAL_MS = 50
"""The input subscriptions' publishing interval of a periodic pipeline whose binding names none."""
MIN_PUBLISHING_INTERVAL_MS = 10
"""The smallest cyclic publishing interval a binding may ask for; 0 (publish on change) is allowed too: a cycle of a
few milliseconds would wake the PLC's publisher hundreds of times a second for nothing."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TagRef(_Model):
    """An OPC UA variable on a source server (usually a PLC)."""

    endpoint: EndpointUrl = Field(description="opc.tcp:// URL of the source server")
    node_id: str = Field(max_length=4096, description="NodeId of the variable, e.g. ns=2;s=Pump1.Speed")

    @field_validator("node_id")
    @classmethod
    def _node_id(cls, value: str) -> str:
        from asyncua import ua  # the boundary type, used only to check the text form

        try:
            ua.NodeId.from_string(value)
        except Exception:
            raise ValueError(f"node_id {value!r} is not an OPC UA NodeId like ns=2;s=Pump1.Speed") from None
        return value


class TriggerMode(StrEnum):
    """What makes the pipeline run the model."""

    ANY_CHANGE = "any_change"
    TAG = "tag"
    PERIODIC = "periodic"


class Trigger(_Model):
    """When to run: on any input change, on a change of one input, or every interval_ms."""

    mode: TriggerMode = TriggerMode.ANY_CHANGE
    tag: str | None = Field(None, description="with mode 'tag': the input feature whose change triggers")
    interval_ms: int | None = Field(None, ge=10, description="with mode 'periodic': the period")

    @model_validator(mode="after")
    def _complete(self) -> Self:
        if self.mode is TriggerMode.TAG and not self.tag:
            raise ValueError("trigger mode 'tag' needs tag = '<input feature>'")
        if self.mode is TriggerMode.PERIODIC and self.interval_ms is None:
            raise ValueError("trigger mode 'periodic' needs interval_ms")
        return self


class Binding(_Model):
    """Input feature name -> source tag, plus the trigger and subscription settings."""

    inputs: dict[Name, TagRef] = Field(max_length=1024)
    trigger: Trigger = Trigger()
    publishing_interval_ms: int = Field(
        0,
        ge=0,
        le=60_000,
        description="Publishing interval of the input subscriptions, in milliseconds: 0 (publish as soon as a value "
        "changes; the default for tag-triggered pipelines, trigger any_change or tag) or 10 and more (the default "
        f"for periodic triggers is {PERIODIC_PUBLISHING_INTERVAL_MS}).",
    )
    feedback: TagRef | None = Field(
        None,
        description="The plant's measured result for this pipeline's prediction (ground truth, e.g. from a quality "
        "station); each change is recorded for the Model Monitor. Not a model input: it never triggers inference.",
    )
    part_key: TagRef | None = Field(
        None,
        description="A serial, batch or carrier id captured with each prediction and each feedback value, so a "
        "result measured later is matched to its prediction. Not a model input: it never triggers inference.",
    )

    @model_validator(mode="before")
    @classmethod
    def _default_publishing_interval(cls, data: Any) -> Any:
        """No publishing interval given: 0 (the field's default) for a tag-triggered pipeline, where every change of
        a tag is a trigger and waiting for the next publishing cycle is pure latency; a periodic trigger reads the
        newest values on its own schedule, so a cycle of PERIODIC_PUBLISHING_INTERVAL_MS costs it nothing and saves
        the PLC work."""
        if isinstance(data, dict) and data.get("publishing_interval_ms") is None:
            trigger = data.get("trigger")
            mode = trigger.get("mode") if isinstance(trigger, dict) else getattr(trigger, "mode", None)
            if mode in (TriggerMode.PERIODIC, TriggerMode.PERIODIC.value):
                data = {**data, "publishing_interval_ms": PERIODIC_PUBLISHING_INTERVAL_MS}
        return data

    @field_validator("publishing_interval_ms")
    @classmethod
    def _publishing_interval(cls, value: int) -> int:
        if 0 < value < MIN_PUBLISHING_INTERVAL_MS:
            raise ValueError(
                f"publishing_interval_ms must be 0 (publish on change) or at least {MIN_PUBLISHING_INTERVAL_MS}"
            )
        return value

    @model_validator(mode="after")
    def _trigger_tag_bound(self) -> Self:
        if self.trigger.mode is TriggerMode.TAG and self.trigger.tag not in self.inputs:
            raise ValueError(f"trigger tag {self.trigger.tag!r} is not one of the bound inputs")
        return self

    def problems_with(self, manifest: Manifest) -> list[str]:
        """What keeps this binding from feeding the model (empty when it fits)."""
        wanted = [f.name for f in manifest.input_features()]
        problems = [f"input {name!r} is not bound" for name in wanted if name not in self.inputs]
        problems += [f"{name!r} is not an input of {manifest.name}" for name in self.inputs if name not in wanted]
        return problems

    def to_json(self) -> str:
        """Compact JSON, as the Binding variable shows it."""
        return self.model_dump_json(exclude_none=True)

    def digest(self) -> str:
        """A short fingerprint of the binding (12 hex digits of SHA-256 of ``to_json``), the same on every node."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:12]

    @classmethod
    def parse(cls, text: str, source: str = "binding") -> Binding:
        """From JSON text; UsageError naming the first problem."""
        try:
            return cls.model_validate_json(text)
        except ValidationError as exc:
            raise UsageError(f"{source}: {first_problem(exc)}") from None

    @classmethod
    def load(cls, path: Path) -> Binding:
        """From a .json or .toml file."""
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise NotFound(f"binding file {path} does not exist") from None
        if path.suffix.lower() == ".toml":
            try:
                data = tomllib.loads(text)
            except tomllib.TOMLDecodeError as exc:
                raise UsageError(f"binding file {path} is not valid TOML: {exc}") from None
            text = json.dumps(data)
        return cls.parse(text, source=f"binding file {path}")
