"""ModelLine's OPC UA types, declared once; ``generate.py`` writes them as ModelLine.NodeSet2.xml.

What OPC 10000-100 (DI) already defines is used from the DI NodeSet and not
repeated here: devices (DeviceType), model slots (SoftwareType) and software
update (SoftwareUpdateType with CachedLoading). This file adds only what DI does
not have: the inference server, its pipelines and their state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

MODELLINE_URI = "http://modelline.io/UA/"
DI_URI = "http://opcfoundation.org/UA/DI/"
VERSION = "1.0.0"
PUBLICATION_DATE = "2026-11-25"

# Standard NodeIds used in declarations (OPC 10000-6 Annex A / NodeIds.csv).
STRING, BOOLEAN, UINT64, DOUBLE, DATETIME = "i=12", "i=1", "i=9", "i=11", "i=13"
FOLDER_TYPE, BASE_OBJECT_TYPE, BASE_DATA_VARIABLE_TYPE = "i=61", "i=58", "i=63"


@dataclass(frozen=True)
class Arg:
    """A method argument."""

    name: str
    datatype: str
    description: str
    value_rank: int = -1


@dataclass(frozen=True)
class Var:
    """A variable (or, with property=True, a property) of an object type."""

    name: str
    datatype: str
    description: str
    rule: Literal["M", "O"] = "M"
    property: bool = False
    writable: bool = False
    value_rank: int = -1
    type_definition: str = BASE_DATA_VARIABLE_TYPE


@dataclass(frozen=True)
class Obj:
    """A child object of an object type."""

    name: str
    type_definition: str
    description: str
    rule: Literal["M", "O"] = "M"


@dataclass(frozen=True)
class Method:
    """A method of an object type."""

    name: str
    description: str
    inputs: list[Arg] = field(default_factory=list)
    outputs: list[Arg] = field(default_factory=list)
    rule: Literal["M", "O"] = "M"


@dataclass(frozen=True)
class ObjectType:
    """An object type; its NodeId is ns=1;i=<number>, its children's ns=1;i=<number * 100 + position>."""

    number: int
    name: str
    description: str
    children: list[Var | Obj | Method]
    supertype: str = BASE_OBJECT_TYPE
    abstract: bool = False


@dataclass(frozen=True)
class Enum:
    """An enumeration DataType with values 0, 1, 2... in declaration order."""

    number: int
    name: str
    description: str
    values: list[tuple[str, str]]


PIPELINE_STATE = Enum(
    3001,
    "PipelineState",
    "What a pipeline is doing: whether its outputs can be trusted.",
    [
        ("NoModel", "No model is installed in this slot; outputs are Bad_ConfigurationError."),
        ("Unbound", "A model is installed but its inputs are not bound to tags; outputs are Bad_ConfigurationError."),
        ("Running", "Inputs are arriving and every output is updated on each trigger."),
        (
            "Degraded",
            "Running, but some inputs are bad, stale or out of range; affected outputs carry a Bad or "
            "Uncertain status.",
        ),
        ("Faulted", "Inference fails; see StateReason. The previous outputs keep a Bad status."),
    ],
)
ENUMS = [PIPELINE_STATE]

PIPELINE_STATE_NODE = f"ns=1;i={PIPELINE_STATE.number}"

INFERENCE_SERVER_TYPE = ObjectType(
    1001,
    "InferenceServerType",
    "The ModelLine inference runtime of an edge device: one pipeline per model slot.",
    [Obj("Pipelines", FOLDER_TYPE, "One PipelineType object per model slot, named like the slot.")],
)

PIPELINE_TYPE = ObjectType(
    1002,
    "PipelineType",
    "A model slot at work: reads the bound input tags, runs the current model, publishes its outputs.",
    [
        Var("Model", STRING, "Name of the model serving in this pipeline; empty when none is installed."),
        Var("Version", STRING, "Version of the model serving in this pipeline."),
        Var("State", PIPELINE_STATE_NODE, "NoModel, Unbound, Running, Degraded or Faulted."),
        Var("StateReason", STRING, "Why the pipeline is in its state, in one line; empty when Running."),
        Var("InferenceCount", UINT64, "Inferences run since the node started."),
        Var("ErrorCount", UINT64, "Triggers that produced Bad outputs (bad inputs or failed inference)."),
        Var("SkippedCount", UINT64, "Triggers dropped because inputs arrived faster than inference ran."),
        Var("LastLatencyMs", DOUBLE, "Duration of the last inference in milliseconds."),
        Var("Binding", STRING, "The input binding as JSON: which tag feeds each model input, and the trigger."),
        Obj("Inputs", FOLDER_TYPE, "The latest value of each bound input tag, with its status and timestamps."),
        Obj("Outputs", FOLDER_TYPE, "One variable per model output, with units, status and timestamps."),
        Method(
            "SetBinding",
            "Bind the model inputs to tags and choose the trigger; takes effect at once, no reinstall.",
            inputs=[Arg("BindingJson", STRING, "The binding as JSON (see the ModelLine README); empty clears it.")],
        ),
    ],
)

# DI's DeviceType is abstract (OPC 10000-100 5.5.2): an edge device is this concrete subtype.
INFERENCE_DEVICE_TYPE = ObjectType(
    1003,
    "InferenceDeviceType",
    "An edge device running the ModelLine inference server; one DI SoftwareType component per model slot.",
    [],
    supertype="ns=2;i=1002",  # DI DeviceType: index 2 is DI in this NodeSet's NamespaceUris
)

OBJECT_TYPES = [INFERENCE_SERVER_TYPE, PIPELINE_TYPE, INFERENCE_DEVICE_TYPE]
