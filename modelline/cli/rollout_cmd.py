"""`modelline devices`, `deploy`, `rollback`, `status`: drive the gateway's Model Manager as an OPC UA client."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelline.cli.common import add_json, add_login, password_of
from modelline.cli.output import Output
from nodesets.ids import DeploymentState, DeviceState
from sdk.errors import NotFound, SourceError, UsageError

if TYPE_CHECKING:  # the OPC UA client and rich load when a command runs, not for --help
    from asyncua import Client, Node, ua
    from rich.table import Table


def _s(value: str | list[str]) -> ua.Variant:
    """A String (or String array) argument."""
    from asyncua import ua

    return ua.Variant(value, ua.VariantType.String)


_EXAMPLES = """Examples:
  modelline devices add edge-line3 opc.tcp://edge-line3:4841/modelline/edge/ --gateway opc.tcp://mm:4840/modelline/
  modelline devices list --gateway opc.tcp://mm:4840/modelline/
  modelline deploy pump-health 1.2.0 --to edge-line3,edge-line4 --binding binding.toml --waves 1 \\
      --gateway opc.tcp://mm:4840/modelline/ --user alice
  modelline rollback deploy-0007 --gateway opc.tcp://mm:4840/modelline/ --user alice
  modelline status --gateway opc.tcp://mm:4840/modelline/ --json"""


def _gateway_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gateway", required=True, metavar="URL", help="the gateway's opc.tcp:// endpoint")
    add_login(parser)
    add_json(parser)


def register(commands: argparse._SubParsersAction, formatter: type[argparse.HelpFormatter]) -> None:  # type: ignore[type-arg]
    """Add `devices add|list`, `deploy`, `rollback`, `status`."""
    devices = commands.add_parser(
        "devices", help="register and list edge devices", formatter_class=formatter, epilog=_EXAMPLES
    )
    sub = devices.add_subparsers(dest="devices_command", metavar="ACTION", required=True)
    add = sub.add_parser(
        "add", help="register an edge device with the gateway", formatter_class=formatter, epilog=_EXAMPLES
    )
    add.add_argument("device_id", help="the device's id (its name under the edge node's DeviceSet)")
    add.add_argument("endpoint", help="the edge node's opc.tcp:// endpoint")
    _gateway_args(add)
    add.set_defaults(handler=_devices_add)
    listing = sub.add_parser("list", help="list registered devices", formatter_class=formatter, epilog=_EXAMPLES)
    _gateway_args(listing)
    listing.set_defaults(handler=_devices_list)

    deploy = commands.add_parser(
        "deploy", help="roll a stored model version out to devices", formatter_class=formatter, epilog=_EXAMPLES
    )
    deploy.add_argument("model", help="model name, as pushed")
    deploy.add_argument("version", help="model version, as pushed")
    deploy.add_argument("--to", required=True, metavar="DEV[,DEV]", help="target device ids, comma-separated")
    deploy.add_argument("--binding", type=Path, metavar="FILE", help="input binding file (TOML or JSON)")
    deploy.add_argument("--waves", type=int, metavar="N", help="devices per wave (stop at the first failure)")
    deploy.add_argument("--confirm-within", type=float, metavar="S", help="device reverts unless confirmed in S s")
    deploy.add_argument("--start-at", metavar="TIME", help="maintenance window start, ISO 8601 with zone")
    _gateway_args(deploy)
    deploy.set_defaults(handler=_deploy)

    rollback = commands.add_parser(
        "rollback",
        help="return a deployment's devices, or one device, to earlier versions",
        formatter_class=formatter,
        epilog=_EXAMPLES,
    )
    rollback.add_argument("target", help="a deployment id or a device id")
    rollback.add_argument("--version", default="", help="version to return to (default: each device's fallback)")
    _gateway_args(rollback)
    rollback.set_defaults(handler=_rollback)

    status = commands.add_parser(
        "status", help="devices and deployments at a glance", formatter_class=formatter, epilog=_EXAMPLES
    )
    _gateway_args(status)
    status.set_defaults(handler=_status)


async def _manager(args: argparse.Namespace) -> tuple[Client, Node, int]:
    from asyncua import ua

    from nodesets.ids import MODELLINE_URI
    from sdk.di_client import connect

    client = await connect(args.gateway, args.user, password_of(args))
    try:
        ml = await client.get_namespace_index(MODELLINE_URI)
        manager = await client.nodes.objects.get_child(f"{ml}:ModelManager")
    except (ValueError, ua.UaStatusCodeError):
        await client.disconnect()
        raise SourceError(f"{args.gateway} is not a ModelLine gateway (no ModelManager)") from None
    return client, manager, ml


async def _call(manager: Node, ml: int, method: str, *args: ua.Variant) -> Any:
    from asyncua import ua

    try:
        return await manager.call_method(f"{ml}:{method}", *args)
    except ua.UaStatusCodeError as exc:
        name = type(exc).__name__
        hints = {
            "BadUserAccessDenied": "log in as a user with the Engineer role (--user)",
            "BadNotFound": "check the names (modelline status lists devices; the model must be pushed first)",
            "BadInvalidArgument": "check the arguments and options",
            "BadInvalidState": "the deployment is finished already",
        }
        error = NotFound if name == "BadNotFound" else UsageError
        raise error(f"the gateway refused {method} ({name}): {hints.get(name, str(exc))}") from None


async def _read_children(
    parent: Node, ml: int, names: list[str], optional: tuple[str, ...] = ()
) -> list[dict[str, Any]]:
    """One row per child object: its id and the values of ``names``; ``optional`` ones that a gateway
    from before them lacks read as None."""
    from asyncua import ua

    rows = []
    for child in await parent.get_children(nodeclassmask=ua.NodeClass.Object):
        row: dict[str, Any] = {"id": str((await child.read_browse_name()).Name)}
        for name in names:
            try:
                node = await child.get_child(f"{ml}:{name}")
            except ua.UaStatusCodeError:
                if name not in optional:
                    raise
                row[name] = None
                continue
            value = await node.read_value()
            if hasattr(value, "isoformat"):  # OPC UA's "no date" (1601-01-01) means never: say so
                value = None if value.year <= 1601 else value.isoformat()
            row[name] = value
        rows.append(row)
    return rows


async def _devices(manager: Node, ml: int) -> list[dict[str, Any]]:
    rows = await _read_children(
        await manager.get_child(f"{ml}:Devices"), ml, ["State", "Endpoint", "ActiveModel", "ActiveVersion", "LastSeen"]
    )
    for row in rows:
        row["State"] = DeviceState(row["State"]).label if row["State"] in set(DeviceState) else row["State"]
    return rows


_PER_TARGET = ("TargetStates", "ServingVersions", "TargetErrors")  # arrays in the order of Targets


def _state_label(value: Any) -> Any:
    return DeploymentState(value).label if value in set(DeploymentState) else value


async def _deployments(manager: Node, ml: int) -> list[dict[str, Any]]:
    rows = await _read_children(
        await manager.get_child(f"{ml}:Deployments"),
        ml,
        ["Model", "Version", "Targets", "State", "Progress", "LastError", *_PER_TARGET],
        optional=_PER_TARGET,
    )
    for row in rows:
        row["State"] = _state_label(row["State"])
        row["TargetStates"] = [_state_label(v) for v in row["TargetStates"] or []]
        row["ServingVersions"] = list(row["ServingVersions"] or [])
        row["TargetErrors"] = list(row["TargetErrors"] or [])
    return rows


def _blank(column: str) -> str:
    return "never" if column == "LastSeen" else ""


def _target_lines(deployment: dict[str, Any], device_states: dict[str, str]) -> str:
    """One line per target: "<device>: <state> — serving <version>", and "(offline)" when it is."""
    lines = []
    for i, device in enumerate(deployment["Targets"] or []):
        state = deployment["TargetStates"][i] if i < len(deployment["TargetStates"]) else "?"
        serving = deployment["ServingVersions"][i] if i < len(deployment["ServingVersions"]) else ""
        offline = " (offline)" if device_states.get(device) == DeviceState.OFFLINE.label else ""
        lines.append(f"{device}: {state} — serving {serving or 'nothing'}{offline}")
    return "\n".join(lines)


def _table(title: str, rows: list[dict[str, Any]], columns: list[str], unwrapped: tuple[str, ...] = ()) -> Table:
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title, title_justify="left")
    for column in ["id", *columns]:
        table.add_column(column, no_wrap=column in unwrapped)
    for row in rows:
        cells = [
            row["id"],
            *(", ".join(v) if isinstance(v := row[c], list) else (_blank(c) if v is None else str(v)) for c in columns),
        ]
        table.add_row(*(Text(c) for c in cells))
    return table


async def _devices_add(args: argparse.Namespace, out: Output) -> int:
    client, manager, ml = await _manager(args)
    try:
        await _call(manager, ml, "RegisterDevice", _s(args.device_id), _s(args.endpoint))
    finally:
        await client.disconnect()
    out.result(
        {"ok": True, "device": args.device_id, "endpoint": args.endpoint},
        f"{args.device_id} registered at {args.endpoint}",
    )
    return 0


async def _devices_list(args: argparse.Namespace, out: Output) -> int:
    client, manager, ml = await _manager(args)
    try:
        rows = await _devices(manager, ml)
    finally:
        await client.disconnect()
    out.result(
        {"devices": rows}, _table("Devices", rows, ["State", "ActiveModel", "ActiveVersion", "Endpoint", "LastSeen"])
    )
    return 0


async def _deploy(args: argparse.Namespace, out: Output) -> int:
    from sdk.binding import Binding

    options: dict[str, Any] = {}
    if args.binding is not None:
        options["binding"] = json.loads(Binding.load(args.binding).to_json())
    if args.waves is not None:
        options["waves"] = args.waves
    if args.confirm_within is not None:
        options["confirmation_timeout_s"] = args.confirm_within
    if args.start_at is not None:
        options["start_at"] = args.start_at
    targets = [t.strip() for t in args.to.split(",") if t.strip()]
    client, manager, ml = await _manager(args)
    try:
        deployment = await _call(
            manager,
            ml,
            "Deploy",
            _s(args.model),
            _s(args.version),
            _s(targets),
            _s(json.dumps(options)),
        )
    finally:
        await client.disconnect()
    out.result(
        {"ok": True, "deployment": deployment},
        f"{deployment}: {args.model} {args.version} to {', '.join(targets)} "
        f"(follow it with: modelline status --gateway {args.gateway})",
    )
    return 0


async def _rollback(args: argparse.Namespace, out: Output) -> int:
    client, manager, ml = await _manager(args)
    try:
        deployment = await _call(manager, ml, "Rollback", _s(args.target), _s(args.version))
    finally:
        await client.disconnect()
    out.result(
        {"ok": True, "deployment": deployment},
        f"{deployment}: rolling {args.target} back to {args.version or 'the fallback version'}",
    )
    return 0


async def _status(args: argparse.Namespace, out: Output) -> int:
    from rich.console import Group

    client, manager, ml = await _manager(args)
    try:
        devices, deployments = await _devices(manager, ml), await _deployments(manager, ml)
    finally:
        await client.disconnect()
    device_states = {d["id"]: d["State"] for d in devices}
    shown = [{**d, "Targets": _target_lines(d, device_states)} for d in deployments]
    out.result(
        {"devices": devices, "deployments": deployments},
        Group(
            _table("Devices", devices, ["State", "ActiveModel", "ActiveVersion", "Endpoint", "LastSeen"]),
            _table(
                "Deployments",
                shown,
                ["Model", "Version", "State", "Progress", "Targets", "LastError"],
                unwrapped=("Targets",),  # one line per target, whole: LastError wraps instead
            ),
        ),
    )
    return 0
