"""`modelline gateway` (run the Model Manager) and `modelline push` (upload a package to it)."""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from modelline.cli import gateway_db_cmd
from modelline.cli.common import add_json, add_login, add_users_file, password_of
from modelline.cli.output import Output
from sdk.errors import PackageRejected, UsageError

if TYPE_CHECKING:  # the OPC UA client loads only when a command runs
    from asyncua import Node

_GATEWAY_EXAMPLE = """Examples:
  modelline gateway --trust /etc/modelline/trust --data-dir /var/lib/modelline/gateway \\
      --users-file /etc/modelline/users.toml --endpoint opc.tcp://0.0.0.0:4840/modelline/
  modelline gateway --config examples/gateway.toml
  modelline gateway backup --data-dir /var/lib/modelline/gateway            # while it runs
  modelline gateway restore --data-dir /var/lib/modelline/gateway --from BACKUP   # gateway stopped
  modelline gateway recover --data-dir /var/lib/modelline/gateway --trust /etc/modelline/trust

Settings come from the config file (TOML), then MODELLINE_GATEWAY_* environment variables, then these
flags. Clients find models under Objects/ModelManager/Models/<name>/<version>."""

_PUSH_EXAMPLE = """Example:
  modelline push pump-health-1.0.0.mlpkg --gateway opc.tcp://model-manager:4840/modelline/ --user alice

The gateway verifies the package against its own trust store before storing it; a refused package
leaves nothing behind and the command says why in one line, as 'modelline package verify' would (the
gateway shows it in Objects/ModelManager/UploadError and logs it)."""


def register(commands: argparse._SubParsersAction, formatter: type[argparse.HelpFormatter]) -> None:  # type: ignore[type-arg]
    """Add `gateway` and `push`."""
    gateway = commands.add_parser(
        "gateway",
        help="run the Model Manager (the gateway's OPC UA server)",
        formatter_class=formatter,
        description="Run the Model Manager until Ctrl-C.",
        epilog=_GATEWAY_EXAMPLE,
    )
    gateway.add_argument("--config", type=Path, metavar="FILE", help="settings file (TOML)")
    gateway.add_argument("--endpoint", metavar="URL", help="opc.tcp:// URL to listen on")
    gateway.add_argument("--data-dir", type=Path, metavar="DIR", help="database and package store")
    gateway.add_argument(
        "--insecure",
        action="store_true",
        help="also offer the unencrypted endpoint (SecurityPolicy None), read-only (README 'Security')",
    )
    gateway.add_argument(
        "--trust",
        type=Path,
        metavar="DIR",
        help="trust store: folder of root certificates (*.pem) and CRLs (*.crl); legacy *.pub keys",
    )
    gateway.add_argument(
        "--approval-trust",
        type=Path,
        metavar="DIR",
        help="require an approval signature chaining to these root certificates (package approve)",
    )
    add_users_file(gateway)
    gateway.set_defaults(handler=_gateway)
    gateway_db_cmd.register(gateway, formatter)

    push = commands.add_parser(
        "push", help="upload a package to the gateway", formatter_class=formatter, epilog=_PUSH_EXAMPLE
    )
    push.add_argument("package", type=Path, metavar="PKG", help="the .mlpkg file")
    push.add_argument("--gateway", required=True, metavar="URL", help="the gateway's opc.tcp:// endpoint")
    add_login(push)
    push.add_argument("--quiet", action="store_true", help="no progress bar")
    add_json(push)
    push.set_defaults(handler=_push)


async def _gateway(args: argparse.Namespace, out: Output) -> int:
    from gateway.app import Gateway
    from gateway.settings import GatewaySettings
    from sdk.settings import load_settings

    logging.getLogger("asyncua.common.xmlimporter").setLevel(logging.ERROR)
    settings = load_settings(
        GatewaySettings,
        args.config,
        endpoint=args.endpoint,
        data_dir=args.data_dir,
        trust_dir=args.trust,
        approval_trust_dir=args.approval_trust,
        users_file=args.users_file,
        allow_insecure=True if args.insecure else None,
    )
    async with Gateway(settings) as gateway:
        versions = gateway.models.count  # those it shows, not read from the store again
        out.note(f"gateway serving at {settings.endpoint} with {versions} model version(s) (Ctrl-C to stop)")
        await gateway.serve_until_signalled()
        out.note("stopping")
    return 0


async def _push(args: argparse.Namespace, out: Output) -> int:
    from asyncua import ua

    from nodesets.ids import MODELLINE_URI
    from sdk.di_client import connect
    from sdk.file_client import upload
    from sdk.package.verify import read_package

    info = await asyncio.to_thread(read_package, args.package)
    client = await connect(args.gateway, args.user, password_of(args))
    try:
        ml = await client.get_namespace_index(MODELLINE_URI)
        manager = await client.nodes.objects.get_child(f"{ml}:ModelManager")
        with out.transfer(f"pushing {args.package.name}") as progress:
            try:
                # Streamed from the file, a chunk at a time: a large package is never held in memory whole.
                await upload(client, await manager.get_child(f"{ml}:Upload"), args.package, ua.Variant(), progress)
            except ua.UaStatusCodeError as exc:
                name = type(exc).__name__
                if name == "BadUserAccessDenied":
                    raise UsageError(
                        "the gateway refused the upload: log in as a user with the Engineer role"
                    ) from None
                if name == "BadInvalidState":
                    raise UsageError(
                        f"the gateway already has {info.manifest.name} {info.manifest.version} with other content; "
                        "versions cannot change"
                    ) from None
                reason = await _upload_error(manager, ml) or f"the gateway refused the package ({name})"
                raise PackageRejected(reason) from None
    finally:
        await client.disconnect()
    m = info.manifest
    out.result(
        {"ok": True, "name": m.name, "version": m.version, "sha256": info.sha256},
        f"{m.name} {m.version} stored on {args.gateway} (sha256 {info.sha256})",
    )
    return 0


async def _upload_error(manager: Node, ml: int) -> str:
    """Why the gateway refused the upload (ModelManager/UploadError), or "" from a gateway without it."""
    from asyncua import ua

    try:
        return str(await (await manager.get_child(f"{ml}:UploadError")).read_value() or "")
    except ua.UaStatusCodeError:
        return ""
