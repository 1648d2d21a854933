"""`modelline`: one command, subcommands per task, one-line errors with meaningful exit codes.

Exit codes are listed once, in ``sdk.errors.EXIT_CODES``; the error classes carry them.
Command modules import what a command needs only when it runs (asyncua, onnxruntime, numpy,
boto3, rich, cryptography), so ``--version`` and ``--help`` start at once.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from modelline.cli import (
    demo_cmd,
    edge_cmd,
    gateway_cmd,
    keys_cmd,
    monitor_cmd,
    package_cmd,
    pull_cmd,
    rollout_cmd,
    trust_cmd,
    users_cmd,
)
from modelline.cli.output import Output
from sdk import __version__
from sdk.errors import EXIT_CODES, ModelLineError, PackageRejected

EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130

_log = logging.getLogger("modelline")

QUIET_LIBRARIES = ("asyncua", "apscheduler", "aiosqlite", "botocore", "boto3", "asyncio")
"""Loggers kept to errors unless --log-level DEBUG. asyncio's own warnings come only in its debug mode
(PYTHONASYNCIODEBUG), e.g. that a command imported its libraries inside the event loop before it
started serving: a developer's diagnosis, not a user's message."""


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the worked examples in epilogs as written."""


def build_parser() -> argparse.ArgumentParser:
    """The whole command tree."""
    parser = argparse.ArgumentParser(
        prog="modelline",
        description="Package, sign, deploy and monitor machine-learning models on the factory floor.",
        formatter_class=HelpFormatter,
        epilog="Example:\n  modelline keys generate --out keys\n  modelline package build model.onnx "
        "--name pump-health --version 1.0.0 --key keys/signing.key -o pump-health.mlpkg\n\n"
        "Run 'modelline COMMAND --help' for each command's options and a worked example.\n\n"
        "Exit codes: " + ", ".join(f"{code} {meaning}" for code, meaning in EXIT_CODES.items()) + ".",
    )
    parser.add_argument("--version", action="version", version=f"modelline {__version__}")
    parser.add_argument(
        "--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="log detail on stderr"
    )
    parser.add_argument("--debug", action="store_true", help="show a traceback for internal errors")
    parser.add_argument(
        "--pki-dir",
        type=Path,
        metavar="DIR",
        help="the CLI's own certificate and trust lists (default: $MODELLINE_PKI_DIR or ~/.config/modelline/pki)",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in (
        keys_cmd,
        package_cmd,
        pull_cmd,
        edge_cmd,
        gateway_cmd,
        rollout_cmd,
        monitor_cmd,
        users_cmd,
        trust_cmd,
        demo_cmd,
    ):
        module.register(commands, HelpFormatter)
    return parser


def _report(exc: ModelLineError, out: Output) -> int:
    message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if isinstance(exc, PackageRejected):
        message = f"package rejected: {message}"
    if out.as_json:
        sys.stdout.write(json.dumps({"ok": False, "error": type(exc).__name__, "message": message}) + "\n")
    print(f"modelline: {message}", file=sys.stderr)
    return exc.exit_code


def _is_status_error(exc: Exception) -> bool:
    """An OPC UA Bad status raised by asyncua (loaded only if the command used OPC UA)."""
    if "asyncua" not in sys.modules:
        return False
    from asyncua import ua

    return isinstance(exc, ua.UaStatusCodeError)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns its exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.pki_dir is not None:  # read by sdk.opcua.connect.default_pki_dir
        os.environ["MODELLINE_PKI_DIR"] = str(args.pki_dir)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.log_level != "DEBUG":  # libraries' own warnings are noise for a user; our messages say what matters
        for library in QUIET_LIBRARIES:
            logging.getLogger(library).setLevel(logging.ERROR)
    out = Output(as_json=getattr(args, "json", False), quiet=getattr(args, "quiet", False))
    try:
        result = args.handler(args, out)
        if inspect.iscoroutine(result):
            result = asyncio.run(result)
        return int(result or 0)
    except ModelLineError as exc:
        return _report(exc, out)
    except KeyboardInterrupt:
        print("modelline: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        if _is_status_error(exc):
            print(
                f"modelline: the OPC UA server answered {type(exc).__name__}: {exc.__doc__ or exc}".rstrip(),
                file=sys.stderr,
            )
            return 1
        if args.debug:
            _log.exception("internal error")
        print(
            f"modelline: internal error: {type(exc).__name__}: {exc} (run with --debug for a traceback)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
