"""`modelline edge` (run an edge node) and `modelline install` (drive the DI update flow as a client)."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from modelline.cli.common import add_json, add_login, add_users_file, password_of
from modelline.cli.output import Output
from nodesets.ids import SoftwareVersionFileType
from sdk.errors import UpdateFailed, UsageError

if TYPE_CHECKING:  # the OPC UA client loads only when a command runs (fast --help and --version)
    from asyncua import Client

    from sdk.di_client import SoftwareUpdateClient

HEALTH_CHECK_S = 15.0
"""Longest wait for a Good prediction before confirming (the gateway's default health_check_s)."""

_EDGE_EXAMPLE = """Examples:
  modelline edge --trust /etc/modelline/trust --data-dir /var/lib/modelline/edge \\
      --users-file /etc/modelline/users.toml --endpoint opc.tcp://0.0.0.0:4841/modelline/edge/ \\
      --device-id pump-station-3 --slot pump1
  modelline edge --config examples/edge.toml

Settings come from the config file (TOML, see examples/edge.toml), then MODELLINE_EDGE_* environment
variables (e.g. MODELLINE_EDGE_DEVICE_ID), then these flags. Clients find the device under
Objects/DeviceSet/<device id> and predictions under Objects/InferenceServer/Pipelines/<slot>/Outputs."""

_INSTALL_EXAMPLE = """Example:
  modelline install pump-health-1.0.0.mlpkg --edge opc.tcp://edge-line3:4841/modelline/edge/ \\
      --binding examples/pump_health/binding.toml --confirm-within 60 --user alice --password-file ~/.modelline-pw

Transfers the package to the slot's PendingVersion (OPC UA DI software update, Cached-Loading), installs
it with its SHA-256, waits for the result and sets the input binding. With --confirm-within N it confirms
the install only after the new model has published a Good prediction (waiting at most 15 s, or 3/4 of N);
otherwise it leaves the install unconfirmed, exits with code 6, and the node reverts by itself within N
seconds. --no-confirm leaves the confirmation to you (call Confirm on the slot's SoftwareUpdate.Confirmation)."""


def register(commands: argparse._SubParsersAction, formatter: type[argparse.HelpFormatter]) -> None:  # type: ignore[type-arg]
    """Add `edge` and `install`."""
    edge = commands.add_parser(
        "edge",
        help="run an edge node (the OPC UA inference server)",
        formatter_class=formatter,
        description="Run the inference server of one edge device until Ctrl-C.",
        epilog=_EDGE_EXAMPLE,
    )
    edge.add_argument("--config", type=Path, metavar="FILE", help="settings file (TOML)")
    edge.add_argument("--device-id", help="name of this device under DeviceSet (default: edge-1)")
    edge.add_argument(
        "--endpoint",
        metavar="URL",
        help="opc.tcp:// URL to listen on (default: opc.tcp://127.0.0.1:4841/modelline/edge/)",
    )
    edge.add_argument("--data-dir", type=Path, metavar="DIR", help="where packages and slot state are kept")
    edge.add_argument(
        "--insecure",
        action="store_true",
        help="also offer the unencrypted endpoint (SecurityPolicy None), read-only (README 'Security')",
    )
    edge.add_argument(
        "--trust",
        type=Path,
        metavar="DIR",
        help="trust store: folder of root certificates (*.pem) and CRLs (*.crl); legacy *.pub keys",
    )
    edge.add_argument(
        "--approval-trust",
        type=Path,
        metavar="DIR",
        help="require an approval signature chaining to these root certificates (package approve)",
    )
    edge.add_argument("--slot", action="append", dest="slots", metavar="NAME", help="a model slot (repeat for more)")
    add_users_file(edge)
    edge.set_defaults(handler=_edge)

    install = commands.add_parser(
        "install",
        help="install a package on an edge node (DI software update client)",
        formatter_class=formatter,
        epilog=_INSTALL_EXAMPLE,
    )
    install.add_argument("package", type=Path, metavar="PKG", help="the .mlpkg file")
    install.add_argument("--edge", required=True, metavar="URL", help="the edge node's opc.tcp:// endpoint")
    install.add_argument("--device", help="device under DeviceSet (when the server has several)")
    install.add_argument("--slot", help="model slot (when the device has several)")
    install.add_argument("--binding", type=Path, metavar="FILE", help="input binding file (TOML or JSON)")
    timing = install.add_mutually_exclusive_group()
    timing.add_argument(
        "--confirm-within",
        type=float,
        default=60.0,
        metavar="S",
        help="revert unless confirmed within S seconds (default 60); confirmed after a Good prediction",
    )
    timing.add_argument(
        "--no-confirm", action="store_true", help="install with ConfirmationTimeout 0 and do not confirm"
    )
    add_login(install)
    install.add_argument("--quiet", action="store_true", help="no progress bar")
    add_json(install)
    install.set_defaults(handler=_install)


async def _edge(args: argparse.Namespace, out: Output) -> int:
    from edge_node.app import EdgeNode  # the server parts load only for this command
    from edge_node.settings import EdgeSettings
    from sdk.settings import load_settings

    logging.getLogger("asyncua.common.xmlimporter").setLevel(logging.ERROR)
    settings = load_settings(
        EdgeSettings,
        args.config,
        device_id=args.device_id,
        endpoint=args.endpoint,
        data_dir=args.data_dir,
        trust_dir=args.trust,
        approval_trust_dir=args.approval_trust,
        slots=args.slots,
        users_file=args.users_file,
        allow_insecure=True if args.insecure else None,
    )
    async with EdgeNode(settings) as node:
        out.note(f"edge node {settings.device_id} serving at {settings.endpoint} (Ctrl-C to stop)")
        for name, slot in node.slots.items():
            current = slot.state.current
            out.note(f"  slot {name}: {f'{current.name} {current.version}' if current else 'no model installed'}")
        await node.serve_until_signalled()
        out.note("stopping")
    return 0


async def _install(args: argparse.Namespace, out: Output) -> int:
    from sdk.binding import Binding
    from sdk.di_client import SoftwareUpdateClient, connect, set_binding
    from sdk.package.verify import read_package

    info = await asyncio.to_thread(read_package, args.package)
    binding_json = None
    if args.binding is not None:
        binding = Binding.load(args.binding)
        problems = binding.problems_with(info.manifest)
        if problems:
            raise UsageError(f"binding {args.binding} does not fit {info.manifest.name}: {'; '.join(problems)}")
        binding_json = binding.to_json()
    client = await connect(args.edge, args.user, password_of(args))
    try:
        su = await SoftwareUpdateClient.find(client, args.device, args.slot)
        confirm_within = 0.0 if args.no_confirm else args.confirm_within
        await su.set_confirmation_timeout(confirm_within)
        with out.transfer(f"transferring {args.package.name}") as progress:
            pending = await su.transfer(args.package, progress)
        if pending.hash and pending.hash != hashlib.sha256(await asyncio.to_thread(args.package.read_bytes)).digest():
            raise UsageError("the device shows another package as Pending")
        out.note(f"transferred and verified: {pending.revision}; installing")
        status = await su.install(pending)
        slot = args.slot or await su.slot_name()
        if binding_json is not None:
            await set_binding(client, slot, binding_json)
        if confirm_within > 0:
            await _confirm_when_healthy(client, su, slot, (info.manifest.name, pending.revision), confirm_within, out)
        current = await su.version(SoftwareVersionFileType.CURRENT)
    finally:
        await client.disconnect()
    out.result(
        {
            "ok": True,
            "model": info.manifest.name,
            "version": current.revision,
            "sha256": current.hash.hex(),
            "confirmed": confirm_within > 0,
            "status": status,
        },
        f"{info.manifest.name} {current.revision} installed on {args.edge}"
        + ("" if args.no_confirm else " and confirmed")
        + f"\n{status}",
    )
    return 0


async def _confirm_when_healthy(
    client: Client,
    su: SoftwareUpdateClient,
    slot: str,
    model: tuple[str, str],
    confirm_within: float,
    out: Output,
) -> None:
    """Confirm only once the new model has published a Good prediction, as the gateway does; else leave the
    install unconfirmed (the node reverts by itself when its ConfirmationTimeout runs out) and say so."""
    from sdk.di_client import pipeline_binding, wait_for_good_prediction

    installed = " ".join(model)
    reverts = f"the edge node reverts by itself within {confirm_within:g} s"
    if not await pipeline_binding(client, slot):
        raise UpdateFailed(
            f"{installed} installed but not confirmed: pipeline {slot} has no binding, so no prediction can show "
            f"that the model works; {reverts} (give --binding, or --no-confirm to install without confirmation)"
        )
    window = min(HEALTH_CHECK_S, 0.75 * confirm_within)
    out.note(f"installed {installed}; waiting up to {window:g} s for a Good prediction before confirming")
    problem = await wait_for_good_prediction(client, slot, window)
    if problem:
        raise UpdateFailed(
            f"{installed} installed but not confirmed: no Good prediction within {window:g} s "
            f"(pipeline {slot}: {problem}); {reverts}"
        )
    await su.confirm()
