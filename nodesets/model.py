"""ModelLine's OPC UA types, declared once; ``generate.py`` writes them as ModelLine.NodeSet2.xml.

What OPC 10000-100 (DI) already defines is used from the DI NodeSet and not
repeated here: devices (DeviceType), model slots (SoftwareType) and software
update (SoftwareUpdateType with CachedLoading). This file adds only what DI does
not have: the inference server and its pipelines (edge node), and the Model
Manager with its models, devices and deployments (gateway).
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
FILE_TYPE, TEMPORARY_FILE_TRANSFER_TYPE = "i=11575", "i=15744"
FOLDER_TYPE, BASE_OBJECT_TYPE, BASE_DATA_VARIABLE_TYPE = "i=61", "i=58", "i=63"
UINT32, BASE_EVENT_TYPE = "i=7", "i=2041"


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
DEVICE_STATE = Enum(
    3002,
    "DeviceState",
    "How the Model Manager sees an edge device.",
    [
        ("Online", "Connected; every pipeline Running or without a model."),
        ("Offline", "Not reachable; deployments to it wait until it returns."),
        ("Degraded", "Connected, but a pipeline is Unbound, Degraded or Faulted, or the device reports a fault."),
    ],
)

DEPLOYMENT_STATE = Enum(
    3003,
    "DeploymentState",
    "Where a deployment of one model version to its target devices stands.",
    [
        ("Pending", "Accepted; waiting for its start time or for its targets to be reachable."),
        ("Transferring", "Sending the package to the targets' PendingVersion."),
        ("Installing", "The targets are installing and checking the model."),
        ("Confirming", "Installed; watching health and first predictions before confirming."),
        ("Active", "Confirmed on every target."),
        ("Failed", "Stopped on a failure; see LastError. Targets not yet reached are untouched."),
        ("RolledBack", "Replaced by a rollback to an earlier version."),
    ],
)

ENUMS = [PIPELINE_STATE, DEVICE_STATE, DEPLOYMENT_STATE]

PIPELINE_STATE_NODE = f"ns=1;i={PIPELINE_STATE.number}"

# What ModelLine uses of the DI model (OPC 10000-100): Python name -> browse path in Opc.Ua.Di.NodeSet2.xml.
# generate.py looks each up in that file and writes its NodeId into ids.py, so no DI number is typed by hand.
DI_NODES = {
    "DEVICE_SET": "DeviceSet",
    "DEVICE_TYPE": "DeviceType",
    "SOFTWARE_TYPE": "SoftwareType",
    "SOFTWARE_UPDATE_TYPE": "SoftwareUpdateType",
    "CACHED_LOADING_TYPE": "CachedLoadingType",
    "SOFTWARE_VERSION_TYPE": "SoftwareVersionType",
    "INSTALLATION_STATE_MACHINE_TYPE": "InstallationStateMachineType",
    "INSTALL_SOFTWARE_PACKAGE": "InstallationStateMachineType/InstallSoftwarePackage",
    "CONFIRMATION_STATE_MACHINE_TYPE": "ConfirmationStateMachineType",
    "DEVICE_HEALTH_ENUMERATION": "DeviceHealthEnumeration",
}
# DI enumeration DataTypes, generated as Python enums: Python name -> DataType browse name.
DI_ENUMS = {"DeviceHealth": "DeviceHealthEnumeration", "SoftwareVersionFileType": "SoftwareVersionFileType"}
# DI state machine types whose states are generated as Python enums (StateNumber, name, state NodeId).
DI_STATE_MACHINES = {
    "InstallationState": "InstallationStateMachineType",
    "ConfirmationState": "ConfirmationStateMachineType",
}

INFERENCE_SERVER_TYPE = ObjectType(
    1001,
    "InferenceServerType",
    "The ModelLine inference runtime of an edge device: one pipeline per model slot.",
    [
        Obj("Pipelines", FOLDER_TYPE, "One PipelineType object per model slot, named like the slot."),
        Obj(
            "Records",
            "ns=1;i=1020",
            "The Model Monitor's record queue: prediction, feedback and log records for a collector to fetch.",
        ),
    ],
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
            inputs=[
                Arg(
                    "BindingJson",
                    STRING,
                    "The binding as JSON (see the ModelLine README); an explicit empty String clears it.",
                )
            ],
        ),
        Var(
            "Configuration",
            STRING,
            "What serves now, as '<model> <version> binding <digest> #<change>': a new value for every change "
            "of model or binding, written before the first prediction it makes; empty without a model.",
        ),
        Var(
            "GoodConfiguration",
            STRING,
            "The Configuration that made the newest Good prediction: evidence that this model version with "
            "this binding predicts well (an update client confirms only on its own Configuration).",
        ),
        Var(
            "Statistics",
            STRING,
            "Running statistics of the model version serving (JSON of sdk.monitor.statistics.PipelineStatistics): "
            "inferences, Bad outputs by StatusCode, skipped triggers, latency histogram, input counts on the "
            "reference bins; updated at most once a second, kept across restarts.",
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

MODEL_MANAGER_TYPE = ObjectType(
    1010,
    "ModelManagerType",
    "The Model Manager: the models, edge devices and deployments of a plant.",
    [
        Obj("Models", FOLDER_TYPE, "One ModelType object per model name, holding its versions."),
        Obj("Devices", FOLDER_TYPE, "One EdgeDeviceType object per registered edge device."),
        Obj("Deployments", FOLDER_TYPE, "One DeploymentType object per deployment."),
        Obj(
            "Upload",
            TEMPORARY_FILE_TRANSFER_TYPE,
            "Upload a signed package: GenerateFileForWrite, Write, CloseAndCommit. Verified before it is stored.",
        ),
        Method(
            "Deploy",
            "Roll a stored model version out to edge devices.",
            inputs=[
                Arg("Model", STRING, "Model name, as under Models."),
                Arg("Version", STRING, "Model version, as under Models/<model>."),
                Arg("Targets", STRING, "Device ids, as under Devices.", value_rank=1),
                Arg(
                    "OptionsJson",
                    STRING,
                    "Binding, trigger, confirmation timeout, start time, waves (JSON; may be empty).",
                ),
            ],
            outputs=[Arg("DeploymentId", STRING, "The new deployment, as under Deployments.")],
        ),
        Method(
            "Undeploy",
            "Stop a deployment that has not finished; devices already updated keep their model.",
            inputs=[Arg("DeploymentId", STRING, "The deployment to stop.")],
        ),
        Method(
            "Rollback",
            "Return a device, or every target of a deployment, to its fallback or to a named earlier version.",
            inputs=[
                Arg("Target", STRING, "A device id or a deployment id."),
                Arg("Version", STRING, "Version to return to; empty for each device's fallback version."),
            ],
            outputs=[Arg("DeploymentId", STRING, "The deployment that carries out the rollback.")],
        ),
        Method(
            "RegisterDevice",
            "Add an edge device (or change its endpoint); the manager connects to it and keeps it in view.",
            inputs=[
                Arg("DeviceId", STRING, "The device's id under its own DeviceSet."),
                Arg("EndpointUrl", STRING, "The edge node's opc.tcp:// endpoint."),
            ],
        ),
        Var(
            "UploadError",
            STRING,
            "Why the last package uploaded through Upload was refused, in one line (as 'package verify' says it); "
            "empty after a package was stored.",
        ),
    ],
)

MODEL_TYPE = ObjectType(
    1011,
    "ModelType",
    "A model by name; its versions are ModelVersionType objects named by version.",
    [Var("Description", STRING, "What the model predicts, from its newest version.")],
)

MODEL_VERSION_TYPE = ObjectType(
    1012,
    "ModelVersionType",
    "One stored, verified package of a model.",
    [
        Var("Version", STRING, "Semantic version."),
        Var("Sha256", STRING, "SHA-256 of the package file, in hex (the DI Hash when installed)."),
        Var("Signer", STRING, "Key id of the trusted key that signed the package."),
        Var("CreatedAt", DATETIME, "When the package was built."),
        Var("Inputs", STRING, "The model inputs: name, element type, units and valid range.", value_rank=1),
        Var("Outputs", STRING, "The model outputs: name, element type, units and valid range.", value_rank=1),
        Obj("Package", FILE_TYPE, "The package file, for download (Open with Read, Read until empty, Close)."),
    ],
)

EDGE_DEVICE_TYPE = ObjectType(
    1013,
    "EdgeDeviceType",
    "An edge device as the Model Manager sees it.",
    [
        Var("State", f"ns=1;i={DEVICE_STATE.number}", "Online, Offline or Degraded."),
        Var("LastSeen", DATETIME, "When the manager last heard from the device."),
        Var("Endpoint", STRING, "The edge node's opc.tcp:// endpoint."),
        Var("ActiveModel", STRING, "Model serving on the device (its first slot)."),
        Var("ActiveVersion", STRING, "Version serving on the device."),
        Var("DesiredModel", STRING, "Model the latest deployment to this device asks for."),
        Var("DesiredVersion", STRING, "Version the latest deployment to this device asks for."),
        Obj("Predictions", FOLDER_TYPE, "The device's prediction outputs, mirrored: Predictions/<pipeline>/<output>."),
    ],
)

DEPLOYMENT_TYPE = ObjectType(
    1014,
    "DeploymentType",
    "A model version rolled out to devices, and how far it got.",
    [
        Var("Model", STRING, "Model name."),
        Var("Version", STRING, "Model version."),
        Var("Targets", STRING, "Device ids.", value_rank=1),
        Var(
            "State",
            f"ns=1;i={DEPLOYMENT_STATE.number}",
            "Pending, Transferring, Installing, Confirming, Active, Failed or RolledBack.",
        ),
        Var("Progress", DOUBLE, "Percent of targets done (0 to 100)."),
        Var("LastError", STRING, "Why the deployment failed, in one line; empty otherwise."),
        # Per target, in the order of Targets: arrays of the same length, written together.
        Var(
            "TargetStates",
            f"ns=1;i={DEPLOYMENT_STATE.number}",
            "Each target's own state, in the order of Targets: Pending until the rollout reaches it, then "
            "Transferring, Installing, Confirming, and Active or Failed.",
            value_rank=1,
        ),
        Var(
            "ServingVersions",
            STRING,
            "The version each target device serves now (as Devices/<id>/ActiveVersion shows it), in the order of "
            "Targets; empty while the device serves no model or the gateway has not heard from it yet.",
            value_rank=1,
        ),
        Var(
            "TargetErrors",
            STRING,
            "Why each target failed, in one line, in the order of Targets; empty for a target that did not fail.",
            value_rank=1,
        ),
    ],
)

# After OPC 40001-101 (result management) and DI's FetchTransferResultData (OPC 10000-100 8.4.6); the contract is
# written down in sdk/monitor/records.py.
RECORD_SOURCE_TYPE = ObjectType(
    1020,
    "RecordSourceType",
    'A durable queue of records by stream (one per pipeline, and "" for the node\'s warnings and errors), '
    "numbered 1, 2, 3... per stream; a collector fetches after the sequence it stored and acknowledges what it "
    "committed. Raises RecordsReadyEventType when records wait.",
    [
        Var("Streams", STRING, 'The stream names: one per pipeline, and "" for log records.', value_rank=1),
        Var("QueueId", STRING, "Names this queue's life; a new QueueId starts again at sequence 1."),
        Var("RecordCount", UINT64, "Records waiting to be acknowledged, in all streams."),
        Var("DroppedRecords", UINT64, "Records dropped because the queue was full (the oldest of their stream)."),
        Method(
            "FetchRecords",
            "Records of a stream after a sequence number, oldest first (Observer may call it: it changes nothing).",
            inputs=[
                Arg("Stream", STRING, 'A pipeline name, or "" for log records.'),
                Arg("AfterSequence", UINT64, "The newest sequence the caller has stored (0: from the oldest)."),
                Arg("MaxRecords", UINT32, "The most records to return; 0 for the server's limit (1000)."),
            ],
            outputs=[
                Arg("QueueId", STRING, "This queue's life; give it back with AcknowledgeRecords."),
                Arg("Records", STRING, "One RecordEnvelope JSON per record, by sequence.", value_rank=1),
                Arg("LastSequence", UINT64, "The newest sequence committed in the stream (0: none yet)."),
                Arg("MoreWaiting", BOOLEAN, "More records after the last one returned wait."),
            ],
        ),
        Method(
            "AcknowledgeRecords",
            "Delete a stream's records up to a sequence the caller has committed (needs the Operator role).",
            inputs=[
                Arg("Stream", STRING, 'A pipeline name, or "" for log records.'),
                Arg("QueueId", STRING, "The QueueId FetchRecords returned; another is refused (Bad_InvalidState)."),
                Arg("UpToSequence", UINT64, "Records with this sequence or lower are deleted."),
            ],
            outputs=[Arg("Removed", UINT64, "How many records were deleted.")],
        ),
    ],
)

RECORDS_READY_EVENT_TYPE = ObjectType(
    1021,
    "RecordsReadyEventType",
    "Records wait in a stream of a RecordSourceType (the ResultReady of OPC 40001-101); raised at most once a "
    "second per stream. A collector still polls now and then: an event can be lost with a connection.",
    [
        Var("Stream", STRING, "The stream whose records wait.", property=True),
        Var("LastSequence", UINT64, "The newest sequence committed in the stream.", property=True),
    ],
    supertype=BASE_EVENT_TYPE,
)

OBJECT_TYPES = [
    INFERENCE_SERVER_TYPE,
    PIPELINE_TYPE,
    INFERENCE_DEVICE_TYPE,
    MODEL_MANAGER_TYPE,
    MODEL_TYPE,
    MODEL_VERSION_TYPE,
    EDGE_DEVICE_TYPE,
    DEPLOYMENT_TYPE,
    RECORD_SOURCE_TYPE,
    RECORDS_READY_EVENT_TYPE,
]

MODEL_MONITOR_TYPE = ObjectType(
    1030,
    "ModelMonitorType",
    "The Model Monitor: how the deployed models do on the line, per deployment and device "
    "(ModelMonitor/<deployment>/<device>), and their ground truth.",
    [
        Method(
            "SubmitFeedback",
            "Report the measured result (ground truth) for one prediction; a retry with the same SampleId counts "
            "once, the same SampleId with other content is refused with Bad_InvalidArgument.",
            inputs=[
                Arg("Device", STRING, "The device id, as under ModelManager/Devices."),
                Arg("Pipeline", STRING, "The pipeline (model slot) that made the prediction."),
                Arg("Sequence", UINT64, "The prediction record's sequence number in its pipeline; 0: not given."),
                Arg(
                    "SourceTime",
                    DATETIME,
                    "Matches the newest prediction at or before this time, when no Sequence or PartKey is given; "
                    "null: not given.",
                ),
                Arg(
                    "PartKey",
                    STRING,
                    "The part key (serial, batch, carrier id) captured with the prediction, when no Sequence is "
                    "given; empty: not given.",
                ),
                Arg("Value", DOUBLE, "The measured result: the class index or the measured quantity."),
                Arg("SampleId", STRING, "The caller's id of this result, unique per result: a retry repeats it."),
            ],
            outputs=[
                Arg(
                    "Matched",
                    BOOLEAN,
                    "Whether the prediction is stored already; when not, the result joins it when its record arrives.",
                )
            ],
        ),
    ],
)

MONITORED_DEPLOYMENT_TYPE = ObjectType(
    1031,
    "MonitoredDeploymentType",
    "One deployment as the Model Monitor sees it: one MonitoredDeviceType object per target device.",
    [
        Var("Model", STRING, "Model name."),
        Var("Version", STRING, "Model version."),
    ],
)

MONITORED_DEVICE_TYPE = ObjectType(
    1032,
    "MonitoredDeviceType",
    "How one deployment's model does on one device, from the prediction records and feedback collected.",
    [
        Var("InferenceCount", UINT64, "Prediction records stored."),
        Var("ErrorCount", UINT64, "Prediction records with a Bad status."),
        Var("LatencyP50Ms", DOUBLE, "Median inference latency in milliseconds."),
        Var("LatencyP99Ms", DOUBLE, "99th percentile of the inference latency in milliseconds."),
        Var("DriftScore", DOUBLE, "Input drift against the package's training reference (population stability index)."),
        Var("FeedbackCount", UINT64, "Measured results (ground truth) received."),
        Var("Accuracy", DOUBLE, "Share of correct predictions among those with feedback (classifiers).", rule="O"),
        Var("MeanAbsoluteError", DOUBLE, "Mean absolute error of predictions with feedback (regressors).", rule="O"),
        Var("OutputDriftScore", DOUBLE, "Output drift against the first window after deployment (PSI)."),
        Var(
            "DataQuality",
            DOUBLE,
            "Share of the window's records whose inputs were all present, Good and in range (0..1).",
        ),
        Var("Features", STRING, "The model's input features, in the order of FeatureDriftScores.", value_rank=1),
        Var("FeatureDriftScores", DOUBLE, "Input drift per feature (PSI), in the order of Features.", value_rank=1),
        Var("RootMeanSquaredError", DOUBLE, "Root mean squared error over the window (regressors).", rule="O"),
        Var("F1Score", DOUBLE, "F1 score over the window (classifiers; macro average for several classes).", rule="O"),
        Var("LastRecord", DATETIME, "Time of the newest prediction record collected."),
        Var("MonitorState", STRING, 'The worst level of the figures: "Ok", "Warning" or "Alarm".'),
        Var("DroppedRecords", UINT64, "Records the edge node's queue dropped (sequence gaps seen)."),
    ],
)

OBJECT_TYPES += [MODEL_MONITOR_TYPE, MONITORED_DEPLOYMENT_TYPE, MONITORED_DEVICE_TYPE]

# The audit trail of a server (OPC 10000-2 4.11 "auditing", 10000-4 6.5): the append-only log of security-relevant
# actions; each record is also raised as an AuditEventType subtype on the Server object (OPC 10000-5 6.4.3ff).
AUDIT_LOG_TYPE = ObjectType(
    1040,
    "AuditLogType",
    "The server's audit trail: who did what, when, from which address and how it ended, numbered 1, 2, 3... "
    "Records are never deleted by reading or collecting them. Reading needs the Engineer role.",
    [
        Var("LastSequence", UINT64, "The sequence of the newest record written (0: none yet)."),
        Method(
            "FetchAuditRecords",
            "Records after a sequence number, oldest first. On the gateway, Device selects the records it collected "
            'from that edge device ("" the gateway\'s own); an edge node knows only "".',
            inputs=[
                Arg("Device", STRING, 'A device id whose collected records to read, or "" for this server\'s own.'),
                Arg("AfterSequence", UINT64, "The newest sequence the caller has (0: from the oldest)."),
                Arg("MaxRecords", UINT32, "The most records to return; 0 for the server's limit (1000)."),
            ],
            outputs=[
                Arg("Records", STRING, "One AuditRecord JSON per record (sdk/audit.py), by sequence.", value_rank=1),
                Arg("LastSequence", UINT64, "The sequence of the last record returned (AfterSequence when none)."),
            ],
        ),
    ],
)

OBJECT_TYPES += [AUDIT_LOG_TYPE]
