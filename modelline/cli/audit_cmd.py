"""`modelline audit`: the audit trail of a gateway or an edge node (Objects/Audit, FetchAuditRecords).

Reading it needs the Engineer role (SecurityAdmin has it too). With --gateway and --device, the
records the gateway collected from that edge device.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from modelline.cli.common import add_json, add_login, password_of
from modelline.cli.output import Output
from sdk.errors import AccessDenied, NotFound, UsageError

if TYPE_CHECKING:
    from asyncua import Client

    from sdk.audit import AuditRecord

_EXAMPLES = """Examples:
  modelline audit --edge opc.tcp://127.0.0.1:4841/modelline/edge/ --user alice --password-file pw
  modelline audit --gateway opc.tcp://127.0.0.1:4840/modelline/ --user alice --since 2026-11-30T08:00
  modelline audit --gateway opc.tcp://127.0.0.1:4840/modelline/ --device edge-1 --json
"""
PAGE = 1000


def register(commands: argparse._SubParsersAction, formatter: type[argparse.HelpFormatter]) -> None:  # type: ignore[type-arg]
    """Add `audit`."""
    audit = commands.add_parser(
        "audit",
        help="who did what, when, from where: the audit trail of a gateway or an edge node",
        description="Lists the audit records (logins, uploads, installs, confirms, reverts, deploys, rollbacks, "
        "bindings, refused calls...) oldest first. Needs the Engineer role.",
        formatter_class=formatter,
        epilog=_EXAMPLES,
    )
    where = audit.add_mutually_exclusive_group(required=True)
    where.add_argument("--gateway", metavar="URL", help="a gateway's opc.tcp:// endpoint")
    where.add_argument("--edge", metavar="URL", help="an edge node's opc.tcp:// endpoint")
    audit.add_argument("--device", metavar="ID", help="with --gateway: the records collected from this edge device")
    audit.add_argument("--since", metavar="TIME", help="records at or after this time (ISO 8601; UTC if no zone)")
    audit.add_argument("--after", type=int, default=0, metavar="SEQ", help="records after this sequence number")
    add_login(audit)
    add_json(audit)
    audit.set_defaults(handler=_show)


def _since(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"--since {text!r} is not an ISO 8601 time (2026-11-30T08:00)") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


async def fetch_all(client: Client, device: str, after: int) -> list[AuditRecord]:
    """Every audit record after ``after``, page by page."""
    from asyncua import ua

    from nodesets.ids import MODELLINE_URI
    from sdk.audit import AuditRecord

    ml = await client.get_namespace_index(MODELLINE_URI)
    try:
        trail = await client.nodes.objects.get_child(f"{ml}:Audit")
    except ua.UaStatusCodeError:
        raise NotFound("the server keeps no audit trail (Objects/Audit): an older ModelLine?") from None
    records: list[AuditRecord] = []
    while True:
        try:
            texts, last = await trail.call_method(
                f"{ml}:FetchAuditRecords",
                ua.Variant(device, ua.VariantType.String),
                ua.Variant(after, ua.VariantType.UInt64),
                ua.Variant(PAGE, ua.VariantType.UInt32),
            )
        except ua.uaerrors.BadUserAccessDenied:
            raise AccessDenied("reading the audit trail needs the Engineer role: give --user") from None
        page = [AuditRecord.model_validate_json(t) for t in texts or []]
        records += page
        if len(page) < PAGE:
            return records
        after = int(last)


def render(records: list[AuditRecord]) -> Any:
    """The records as a table."""
    from rich.table import Table

    table = Table(box=None, header_style="bold")
    for column in ("#", "time (UTC)", "action", "outcome", "who", "from", "target", "detail"):
        table.add_column(column, overflow="fold")
    colours = {"ok": "green", "refused": "red", "failed": "yellow"}
    for r in records:
        table.add_row(
            str(r.seq),
            r.at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"),
            r.action,
            f"[{colours[r.outcome]}]{r.outcome}[/]",
            r.who or "(server)",
            r.address,
            r.target,
            r.detail,
        )
    return table if records else "no audit records"


async def _show(args: argparse.Namespace, out: Output) -> int:
    from sdk.di_client import connect

    if args.device and not args.gateway:
        raise UsageError("--device reads what a gateway collected: give --gateway")
    since = _since(args.since)
    url = args.gateway or args.edge
    client = await connect(url, args.user, password_of(args))
    try:
        records = await fetch_all(client, args.device or "", max(0, args.after))
    finally:
        await client.disconnect()
    if since is not None:
        records = [r for r in records if r.at >= since]
    out.result({"records": [r.model_dump(mode="json") for r in records]}, render(records))
    return 0
