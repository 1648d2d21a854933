"""`modelline monitor`: how each deployed model does on each device, and its active alarms; `monitor export`:
the stored prediction records with their ground truth as a retraining dataset (CSV or Parquet, optionally to S3).

The table reads the gateway's ``Objects/ModelMonitor/<deployment>/<device>`` objects over OPC UA. Every
variable is found by browse name, so a gateway that lacks a figure (an older release) shows "-" for it,
and one that has no value yet (Bad_WaitingForInitialData) shows "waiting". A refresh is five requests
whatever the plant's size: Browse the ModelMonitor, Browse every deployment, Browse every device,
TranslateBrowsePathsToNodeIds for the conditions' fields, and one Read of every value (OPC 10000-4
5.8.2 Browse, 5.8.4 TranslateBrowsePathsToNodeIds, 5.10.2 Read).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelline.cli.common import add_json, add_login, password_of
from modelline.cli.output import Output
from sdk.errors import ConnectionLost, InvalidState, SourceError, UsageError

if TYPE_CHECKING:  # the OPC UA client and rich load when a command runs, not for --help
    from asyncua import Client, ua
    from rich.console import RenderableType

_EXAMPLES = """Examples:
  modelline monitor --gateway opc.tcp://mm:4840/modelline/
  modelline monitor --gateway opc.tcp://mm:4840/modelline/ --device edge-line3 --watch --interval 5
  modelline monitor export --data-dir /var/lib/modelline/gateway -o pump-health.csv --model pump-health \\
      --since 2026-11-01T00:00:00Z
  modelline monitor export --data-dir /var/lib/modelline/gateway -o pump-health.parquet \\
      --to s3://retraining/pump-health/"""

FIGURES = (
    "InferenceCount",
    "ErrorCount",
    "LatencyP50Ms",
    "LatencyP99Ms",
    "DriftScore",
    "OutputDriftScore",
    "DataQuality",
    "FeedbackCount",
    "Accuracy",
    "F1Score",
    "MeanAbsoluteError",
    "RootMeanSquaredError",
    "LastRecord",
    "MonitorState",
    "DroppedRecords",
    "Features",
    "FeatureDriftScores",
)
CONDITIONS = ("InputDriftAlarm", "OutputDriftAlarm", "QualityAlarm", "DataQualityAlarm", "ErrorRateAlarm")
# A condition's fields read for the alarm list (OPC 10000-9 5.5.2 ConditionType, 5.7.2 AcknowledgeableConditionType).
CONDITION_FIELDS = {
    "active": ("ActiveState", "Id"),
    "acked": ("AckedState", "Id"),
    "severity": ("Severity",),
    "message": ("Message",),
    "source": ("SourceName",),
}
WAITING = "waiting"
MONITOR_DB = "monitor.sqlite3"  # in the gateway's data folder (GatewaySettings.monitor_db_path)
# The usual reading of a population stability index (gateway/monitor/drift.py), the monitor's default thresholds.
DRIFT_WARNING, DRIFT_ALARM = 0.1, 0.25
LEVEL_STYLE = {"Ok": "green", "Warning": "yellow", "Alarm": "bold red"}


def register(commands: argparse._SubParsersAction, formatter: type[argparse.HelpFormatter]) -> None:  # type: ignore[type-arg]
    """Add `monitor` and `monitor export`."""
    monitor = commands.add_parser(
        "monitor",
        help="how deployed models do on each device, and their alarms",
        description="One row per deployment and device: counts, latency, drift, data quality, ground truth "
        "and state, then the active alarms.",
        formatter_class=formatter,
        epilog=_EXAMPLES,
    )
    monitor.add_argument("--gateway", metavar="URL", help="the gateway's opc.tcp:// endpoint")
    add_login(monitor)
    monitor.add_argument("--deployment", metavar="ID", help="only this deployment")
    monitor.add_argument("--device", metavar="ID", help="only this device")
    monitor.add_argument("--watch", action="store_true", help="refresh in place until Ctrl-C")
    monitor.add_argument("--interval", type=float, default=5.0, metavar="S", help="seconds between refreshes (5)")
    add_json(monitor)
    monitor.set_defaults(handler=_show)
    sub = monitor.add_subparsers(dest="monitor_command", metavar="[export]")
    export = sub.add_parser(
        "export",
        help="write the stored prediction records with their ground truth (CSV or Parquet)",
        description="Reads <data-dir>/monitor.sqlite3 read-only (safe while the gateway runs) and writes one row "
        "per prediction record, with the measured result joined to it where one arrived.",
        formatter_class=formatter,
        epilog=_EXAMPLES,
    )
    export.add_argument("--data-dir", type=Path, required=True, metavar="DIR", help="the gateway's data folder")
    export.add_argument("-o", "--output", type=Path, required=True, metavar="FILE", help="file to write")
    export.add_argument("--format", choices=["csv", "parquet"], help="file format (default: from the file name)")
    export.add_argument("--since", metavar="TIME", help="predictions at or after this time (ISO 8601; UTC if no zone)")
    export.add_argument("--until", metavar="TIME", help="predictions before this time (ISO 8601; UTC if no zone)")
    export.add_argument("--device", metavar="ID", help="only this device")
    export.add_argument("--model", metavar="NAME", help="only this model")
    export.add_argument("--version", metavar="V", help="only this model version")
    export.add_argument("--to", metavar="s3://BUCKET/PREFIX", help="also upload the file to S3")
    export.add_argument("--endpoint-url", metavar="URL", help="S3-compatible endpoint (MinIO...); else AWS")
    export.add_argument("--region", metavar="REGION", help="AWS region of the bucket")
    add_json(export)
    export.set_defaults(handler=_export)


# --- reading the gateway ------------------------------------------------------------------------


@dataclass
class _Device:
    deployment: str
    device: str
    node: ua.NodeId
    model: Any = None
    version: Any = None
    figures: dict[str, ua.NodeId] = field(default_factory=dict)
    conditions: dict[str, ua.NodeId] = field(default_factory=dict)


async def _browse(client: Client, nodes: list[ua.NodeId], mask: int) -> list[list[ua.ReferenceDescription]]:
    """The children of each of ``nodes`` (NodeClass ``mask``), in one Browse request: HasChild references only,
    since an alarm area's HasEventSource references (OPC 10000-3 7.17) lead to its sources, not its parts."""
    from asyncua import ua

    from sdk.opcua.ids import node_id

    if not nodes:
        return []
    params = ua.BrowseParameters()
    params.RequestedMaxReferencesPerNode = 0
    for node in nodes:
        desc = ua.BrowseDescription()
        desc.NodeId = node
        desc.BrowseDirection = ua.BrowseDirection.Forward
        desc.ReferenceTypeId = node_id(ua.ObjectIds.HasChild)
        desc.IncludeSubtypes = True
        desc.NodeClassMask = mask
        desc.ResultMask = ua.BrowseResultMask.All
        params.NodesToBrowse.append(desc)
    results = await client.uaclient.browse(params)
    found = []
    for result in results:
        refs = list(result.References or [])
        point = result.ContinuationPoint
        while point:
            more = await client.uaclient.browse_next(ua.BrowseNextParameters(ContinuationPoints=[point]))
            refs += more[0].References or []
            point = more[0].ContinuationPoint
        found.append(refs)
    return found


async def _devices(client: Client, monitor: ua.NodeId, args: argparse.Namespace) -> list[_Device]:
    """Every ModelMonitor/<deployment>/<device> (as filtered) with the NodeIds of its figures and conditions."""
    from asyncua import ua

    objects, variables = ua.NodeClass.Object, ua.NodeClass.Variable
    deployments = [
        r for r in (await _browse(client, [monitor], objects))[0] if args.deployment in (None, r.BrowseName.Name)
    ]
    children = await _browse(client, [r.NodeId for r in deployments], objects | variables)
    devices: list[_Device] = []
    meta: dict[str, dict[str, ua.NodeId]] = {}
    for deployment, refs in zip(deployments, children, strict=True):
        name = str(deployment.BrowseName.Name)
        meta[name] = {str(r.BrowseName.Name): r.NodeId for r in refs if r.NodeClass == variables}
        for r in refs:
            if r.NodeClass == objects and args.device in (None, r.BrowseName.Name):
                devices.append(_Device(name, str(r.BrowseName.Name), r.NodeId))
    for device, refs in zip(
        devices, await _browse(client, [d.node for d in devices], objects | variables), strict=True
    ):
        by_name = {str(r.BrowseName.Name): r.NodeId for r in refs}
        device.figures = {n: by_name[n] for n in FIGURES if n in by_name}
        device.conditions = {n: by_name[n] for n in CONDITIONS if n in by_name}
        device.figures |= {f"_{k}": v for k, v in meta[device.deployment].items() if k in ("Model", "Version")}
    return devices


async def _condition_fields(client: Client, devices: list[_Device]) -> dict[tuple[str, str, str, str], ua.NodeId]:
    """(deployment, device, condition, field) -> NodeId of each condition field, in one translate request."""
    from asyncua import ua

    from sdk.opcua.ids import node_id

    wanted: list[tuple[tuple[str, str, str, str], ua.BrowsePath]] = []
    for d in devices:
        for condition, node in d.conditions.items():
            for key, path in CONDITION_FIELDS.items():
                elements = [
                    ua.RelativePathElement(
                        ReferenceTypeId=node_id(ua.ObjectIds.HasChild),
                        IsInverse=False,  # type: ignore[arg-type]  # asyncua's default is True
                        IncludeSubtypes=True,  # type: ignore[arg-type]
                        TargetName=ua.QualifiedName(name, 0),
                    )
                    for name in path
                ]
                wanted.append(
                    ((d.deployment, d.device, condition, key), ua.BrowsePath(node, ua.RelativePath(elements)))
                )
    if not wanted:
        return {}
    results = await client.uaclient.translate_browsepaths_to_nodeids([p for _, p in wanted])
    return {
        key: result.Targets[0].TargetId
        for (key, _), result in zip(wanted, results, strict=True)
        if result.StatusCode.is_good() and result.Targets
    }


def _plain(value: ua.DataValue) -> Any:
    """A read value as plain data: None when missing, WAITING when the server has none yet."""
    from asyncua import ua

    if value.StatusCode is not None and not value.StatusCode.is_good():
        return WAITING if value.StatusCode.value == ua.StatusCodes.BadWaitingForInitialData else None
    v = value.Value.Value if value.Value is not None else None
    if isinstance(v, ua.LocalizedText):
        return v.Text
    if isinstance(v, datetime):  # OPC UA's "no date" (1601-01-01) means never
        return None if v.year <= 1601 else (v if v.tzinfo else v.replace(tzinfo=UTC)).isoformat()
    if isinstance(v, list):
        return list(v)
    return v


async def snapshot(client: Client, monitor: ua.NodeId, args: argparse.Namespace) -> dict[str, Any]:
    """The devices' figures and the alarms, read with one Read request."""
    try:
        return await _snapshot(client, monitor, args)
    except (ConnectionError, TimeoutError) as exc:
        raise ConnectionLost(f"connection to {args.gateway} lost: {exc or type(exc).__name__}") from None


async def _snapshot(client: Client, monitor: ua.NodeId, args: argparse.Namespace) -> dict[str, Any]:
    devices = await _devices(client, monitor, args)
    fields = await _condition_fields(client, devices)
    keys: list[tuple[Any, ...]] = [(i, name) for i, d in enumerate(devices) for name in d.figures]
    nodes = [devices[i].figures[name] for i, name in keys]
    keys += list(fields)
    nodes += list(fields.values())
    values = {}
    if nodes:
        from asyncua import ua

        read = await client.uaclient.read_attributes(nodes, ua.AttributeIds.Value)
        values = {k: _plain(v) for k, v in zip(keys, read, strict=True)}
    rows = [_row(d, {n: values.get((i, n)) for n in FIGURES + ("_Model", "_Version")}) for i, d in enumerate(devices)]
    alarms = []
    for d in devices:
        for condition in d.conditions:
            got = {k: values.get((d.deployment, d.device, condition, k)) for k in CONDITION_FIELDS}
            if got["active"] is True or got["acked"] is False:  # what an alarm list shows: active, or not acknowledged
                alarms.append({"deployment": d.deployment, "device": d.device, "condition": condition, **got})
    return {"devices": rows, "alarms": alarms}


def _number(value: Any) -> float | int | None:
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def drift_level(score: Any) -> str | None:
    """Ok, Warning or Alarm for a drift score by the usual PSI reading; None without a score."""
    score = _number(score)
    if score is None:
        return None
    return "Alarm" if score >= DRIFT_ALARM else "Warning" if score >= DRIFT_WARNING else "Ok"


def _row(d: _Device, v: dict[str, Any]) -> dict[str, Any]:
    inferences, errors = _number(v["InferenceCount"]), _number(v["ErrorCount"])
    return {
        "deployment": d.deployment,
        "device": d.device,
        "model": v["_Model"],
        "version": v["_Version"],
        "inferences": v["InferenceCount"],
        "errors": v["ErrorCount"],
        "error_rate": errors / inferences if inferences and errors is not None else None,
        "latency_p50_ms": v["LatencyP50Ms"],
        "latency_p99_ms": v["LatencyP99Ms"],
        "drift_score": v["DriftScore"],
        "drift_level": drift_level(v["DriftScore"]),
        "output_drift_score": v["OutputDriftScore"],
        "data_quality": v["DataQuality"],
        "feedback": v["FeedbackCount"],
        "accuracy": v["Accuracy"],
        "f1_score": v["F1Score"],
        "mae": v["MeanAbsoluteError"],
        "rmse": v["RootMeanSquaredError"],
        "last_record": v["LastRecord"],
        "state": v["MonitorState"],
        "dropped_records": v["DroppedRecords"],
        "feature_drift": _feature_drift(v["Features"], v["FeatureDriftScores"]),
    }


def _feature_drift(features: Any, scores: Any) -> dict[str, Any] | None:
    """Each input's drift score by name (FeatureDriftScores is in the order of Features)."""
    if not isinstance(features, list) or not isinstance(scores, list) or len(features) != len(scores):
        return None
    return dict(zip(features, scores, strict=True))


# --- showing it -----------------------------------------------------------------------------------


def _cell(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _age(iso: Any, now: datetime) -> str:
    if not isinstance(iso, str):
        return _cell(iso)
    seconds = max(0.0, (now - datetime.fromisoformat(iso)).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit} ago"
    return f"{seconds:.0f} s ago"


def _quality(row: dict[str, Any]) -> str:
    """Accuracy for classifiers, MAE for regressors, whichever has a value (else the waiting one)."""
    for key, label in (("accuracy", "acc"), ("mae", "MAE")):
        if _number(row[key]) is not None:
            return f"{label} {row[key]:.3f}"
    return WAITING if WAITING in (row["accuracy"], row["mae"]) else "-"


def render(data: dict[str, Any], gateway: str, now: datetime | None = None) -> RenderableType:
    """The devices table and the alarm list."""
    from rich import box
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    now = now or datetime.now(UTC)
    table = Table(title=f"Model Monitor at {gateway}", title_justify="left", box=box.SIMPLE_HEAD)
    columns = ["deployment", "device", "model", "inferences", "errors", "p50/p99 ms"]
    columns += ["drift", "data ok", "feedback", "acc/MAE", "last record", "state"]
    for column in columns:
        longest = max((len(_cell(r["model"])) for r in data["devices"]), default=5) if column == "model" else None
        table.add_column(column, no_wrap=column in ("deployment", "device", "drift"), min_width=longest)
    for r in data["devices"]:
        errors = _cell(r["errors"])
        if r["error_rate"] is not None:
            errors += f" ({100 * r['error_rate']:.1f} %)"
        drift = Text(_cell(r["drift_score"]))
        if r["drift_level"]:
            drift.append(f" {r['drift_level']}", style=LEVEL_STYLE[r["drift_level"]])
        numbers = {k: v for k, v in (r["feature_drift"] or {}).items() if _number(v) is not None}
        if r["drift_level"] in ("Warning", "Alarm") and numbers:  # which input drifts most
            drift.append(f" ({max(numbers, key=numbers.__getitem__)})")
        quality = r["data_quality"]
        state = Text(_cell(r["state"]), style=LEVEL_STYLE.get(str(r["state"]), ""))
        table.add_row(
            Text(r["deployment"]),
            Text(r["device"]),
            Text(f"{_cell(r['model'])} {_cell(r['version'])}"),
            Text(_cell(r["inferences"])),
            Text(errors),
            Text(f"{_cell(r['latency_p50_ms'], 1)} / {_cell(r['latency_p99_ms'], 1)}"),
            drift,
            Text(f"{100 * quality:.1f} %" if _number(quality) is not None else _cell(quality)),
            Text(_cell(r["feedback"])),
            Text(_quality(r)),
            Text(_age(r["last_record"], now)),
            state,
        )
    if not data["devices"]:
        table.caption = "no deployments yet: the monitor shows each deployment's target devices"
    alarms = Table(title="Active alarms", title_justify="left", box=box.SIMPLE_HEAD)
    for column in ("deployment", "device", "condition", "source", "severity", "message", "acked"):
        alarms.add_column(column)
    for a in data["alarms"]:
        active = a["active"] is True
        alarms.add_row(
            Text(a["deployment"]),
            Text(a["device"]),
            Text(a["condition"] + ("" if active else " (cleared)"), style="bold red" if active else ""),
            Text(_cell(a["source"])),
            Text(_cell(a["severity"])),
            Text(_cell(a["message"])),
            Text("yes" if a["acked"] is True else "no" if a["acked"] is False else "-"),
        )
    if not data["alarms"]:
        alarms.caption = "none"
    return Group(table, alarms)


async def _monitor_node(client: Client, gateway: str) -> ua.NodeId:
    from asyncua import ua

    from nodesets.ids import MODELLINE_URI

    try:
        ml = await client.get_namespace_index(MODELLINE_URI)
        node = await client.nodes.objects.get_child(f"{ml}:ModelMonitor")
    except (ValueError, ua.UaStatusCodeError):
        raise SourceError(f"{gateway} is not a ModelLine gateway with a Model Monitor (no ModelMonitor)") from None
    return node.nodeid


async def _show(args: argparse.Namespace, out: Output) -> int:
    from sdk.di_client import connect

    if not args.gateway:
        raise UsageError("give the gateway's endpoint: modelline monitor --gateway opc.tcp://HOST:4840/modelline/")
    if args.interval <= 0:
        raise UsageError("--interval must be more than 0 seconds")
    client = await connect(args.gateway, args.user, password_of(args))
    try:
        monitor = await _monitor_node(client, args.gateway)
        if not args.watch:
            data = await snapshot(client, monitor, args)
            out.result(data, render(data, args.gateway))
            return 0
        await _watch(client, monitor, args, out)
    finally:
        # after Ctrl-C the command ends promptly even if the gateway does not answer the session's close
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(client.disconnect(), _DISCONNECT_S)
    from modelline.cli.main import EXIT_INTERRUPTED

    print("modelline: interrupted", file=sys.stderr)
    return EXIT_INTERRUPTED


async def _watch(client: Client, monitor: ua.NodeId, args: argparse.Namespace, out: Output) -> None:
    """Refresh until Ctrl-C (or SIGTERM); with --json one JSON document per refresh.

    The signal sets a flag that the loop checks between refreshes and while it waits, instead of cancelling
    the command at whatever await it stands (a cancellation that lands in the OPC UA client's own request
    handling could be taken for the request's and leave the loop running)."""
    import json
    import signal

    from rich.live import Live

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for number in signals:
        loop.add_signal_handler(number, stop.set)
    try:
        if out.as_json:
            while not stop.is_set():
                data = await _unless_stopped(stop, snapshot(client, monitor, args))
                if data is None:
                    return
                sys.stdout.write(json.dumps(data, default=str) + "\n")
                sys.stdout.flush()
                await _wait(stop, args.interval)
            return
        with Live(console=out.out, auto_refresh=False) as live:
            while not stop.is_set():
                data = await _unless_stopped(stop, snapshot(client, monitor, args))
                if data is None:
                    return
                live.update(render(data, args.gateway), refresh=True)
                await _wait(stop, args.interval)
    finally:
        for number in signals:
            loop.remove_signal_handler(number)


_DISCONNECT_S = 5.0


async def _unless_stopped(stop: asyncio.Event, refresh: Coroutine[Any, Any, dict[str, Any]]) -> dict[str, Any] | None:
    """The refresh's result, or None (the refresh cancelled) when ``stop`` is set first."""
    task = asyncio.ensure_future(refresh)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
    if task.done():
        result: dict[str, Any] = task.result()
        return result
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
    return None


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


# --- export ---------------------------------------------------------------------------------------


def parse_time(text: str | None, option: str) -> datetime | None:
    """An ISO 8601 time (UTC when it names no zone), or a usage error saying what was wrong."""
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"{option} {text!r} is not an ISO 8601 time like 2026-11-30T08:00:00Z") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


async def _export(args: argparse.Namespace, out: Output) -> int:
    from gateway.monitor.export import ExportFormat, Layout, format_of, write
    from gateway.monitor.store import MonitorStore

    since, until = parse_time(args.since, "--since"), parse_time(args.until, "--until")
    if since and until and until <= since:
        raise UsageError(f"--until {args.until} is not after --since {args.since}")
    fmt = format_of(args.output, ExportFormat(args.format) if args.format else None)
    if args.to is not None and not args.to.startswith("s3://"):
        raise UsageError(f"--to {args.to!r} is not an S3 location like s3://bucket/prefix")
    if not args.output.parent.is_dir():
        raise UsageError(f"{args.output.parent} is not a folder")
    filters = {"device": args.device, "model": args.model, "version": args.version, "since": since, "until": until}
    loop = asyncio.get_running_loop()
    async with MonitorStore.open_readonly(args.data_dir / MONITOR_DB) as store, store.snapshot():
        total = await store.export_count(**filters)
        layout = Layout()
        async for batch in store.export_rows(**filters):  # first pass: the header and column types
            for row in batch:
                layout.observe(row.flat())
        queue: asyncio.Queue[list[Any] | BaseException | None] = asyncio.Queue(maxsize=4)

        def rows() -> Any:  # the writer's thread takes the second pass's batches as they are read
            while (item := asyncio.run_coroutine_threadsafe(queue.get(), loop).result()) is not None:
                if isinstance(item, BaseException):  # reading failed: the writer drops its unfinished file
                    raise item
                yield from item

        with out.counting(f"exporting {total} records", total) as progress:
            writer = asyncio.ensure_future(asyncio.to_thread(write, rows(), args.output, fmt, layout, 5000, progress))
            end: BaseException | None = None
            try:
                async with contextlib.aclosing(store.export_rows(**filters)) as batches:
                    async for batch in batches:
                        put = asyncio.ensure_future(queue.put(batch))
                        await asyncio.wait({put, writer}, return_when=asyncio.FIRST_COMPLETED)
                        if writer.done():  # it failed: stop reading
                            put.cancel()
                            break
            except BaseException as exc:
                end = exc
                raise
            finally:
                if not writer.done():  # the end of the rows, or why they end early; then the writer finishes
                    item = None if end is None else InvalidState(f"reading the records failed: {end}")
                    await asyncio.wait({asyncio.ensure_future(queue.put(item)), writer})
                if end is not None and not writer.cancelled():
                    writer.exception()  # retrieved: the reading error is the one reported
            count = await writer
    uri = await _upload(args) if args.to else None
    message = f"{count} record(s) written to {args.output} ({fmt.value})"
    if count == 0:
        message = f"no records match: {args.output} holds the header only"
    if uri:
        message += f"; uploaded to {uri}"
    out.result({"ok": True, "rows": count, "file": str(args.output), "format": fmt.value, "uri": uri}, message)
    return 0


async def _upload(args: argparse.Namespace) -> str:
    from gateway.monitor.export import upload
    from sdk.sources.aws import AwsOptions

    def put() -> str:
        return upload(args.output, args.to, AwsOptions(args.region, args.endpoint_url).client("s3"))

    return await asyncio.to_thread(put)
