"""`modelline`: one command, subcommands per task, one-line errors with meaningful exit codes.

Exit codes are listed once, in ``sdk.errors.EXIT_CODES``; the error classes carry them.
Command modules import what a command needs only when it runs (asyncua, onnxruntime, numpy,
boto3, rich, cryptography), so ``--version`` and ``--help`` start at once.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from modelline.cli.output import Output
from sdk.errors import EXIT_CODES, ModelLineError, PackageRejected

EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130

_log = logging.getLogger("modelline")

QUIET_LIBRARIES = ("asyncua", "apscheduler", "aiosqlite", "botocore", "boto3", "asyncio")
"""Loggers kept to errors unless --log-level DEBUG. asyncio's own warnings come only in its debug mode
(PYTHONASYNCIODEBUG), e.g. that a command imported its libraries inside the event loop before it
started serving: a developer's diagnosis, not a user's message."""


COMMANDS: dict[str, tuple[str, str]] = {
    "keys": ("keys_cmd", "create signing identities"),
    "package": ("package_cmd", "build, inspect, verify, approve and convert model packages"),
    "pull": ("pull_cmd", "package a model from SageMaker Model Registry or S3"),
    "edge": ("edge_cmd", "run an edge node (the OPC UA inference server)"),
    "install": ("edge_cmd", "install a package on an edge node (DI software update client)"),
    "gateway": ("gateway_cmd", "run the Model Manager (the gateway's OPC UA server)"),
    "push": ("gateway_cmd", "upload a package to the gateway"),
    "devices": ("rollout_cmd", "register and list edge devices"),
    "deploy": ("rollout_cmd", "roll a stored model version out to devices"),
    "rollback": ("rollout_cmd", "return a deployment's devices, or one device, to earlier versions"),
    "status": ("rollout_cmd", "devices and deployments at a glance"),
    "monitor": ("monitor_cmd", "how deployed models do on each device, and their alarms"),
    "audit": ("audit_cmd", "who did what, when, from where: the audit trail of a gateway or an edge node"),
    "users": ("users_cmd", "manage logins and roles"),
    "trust": ("trust_cmd", "manage trusted certificates (OPC UA PKI)"),
    "demo": ("demo_cmd", "run a live production line with a gateway and two edge nodes"),
}
"""Every command, in help order: the module under modelline/cli that registers it, and its help line (the same
as the module's own: tests/unit/test_cli_startup.py compares them). The top-level ``--help`` and ``--version``
import no command module; a command imports only its own."""

_EVERY = "*"


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the worked examples in epilogs as written."""


class _Version(argparse.Action):
    """--version, reading the installed version only when asked."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> None:
        from sdk import __version__  # noqa: PLC0415 - importlib.metadata costs start-up time

        print(f"modelline {__version__}")
        parser.exit()


def _command_of(argv: Sequence[str]) -> str | None:
    """The command named in ``argv`` (the first word that is neither an option nor an option's value)."""
    words = iter(argv)
    for word in words:
        if word in ("--log-level", "--pki-dir"):  # options that take a value
            next(words, None)
        elif not word.startswith("-"):
            return word
    return None


def build_parser(command: str | None = _EVERY) -> argparse.ArgumentParser:
    """The command tree: every command in full (the default), or ``command`` in full and the others by name and
    help line only, without importing their modules (None: no command in full)."""
    parser = argparse.ArgumentParser(
        prog="modelline",
        description="Package, sign, deploy and monitor machine-learning models on the factory floor.",
        formatter_class=HelpFormatter,
        epilog="Example:\n  modelline keys generate --out keys\n  modelline package build model.onnx "
        "--name pump-health --version 1.0.0 --cert keys/signing.pem --key keys/signing.key -o pump-health.uadipkg\n\n"
        "Run 'modelline COMMAND --help' for each command's options and a worked example.\n\n"
        "Exit codes: " + ", ".join(f"{code} {meaning}" for code, meaning in EXIT_CODES.items()) + ".",
    )
    parser.add_argument("--version", action=_Version, help="show the version and exit")
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
    wanted = COMMANDS[command][0] if command in COMMANDS else None
    registered: set[str] = set()
    for name, (module, help_line) in COMMANDS.items():
        if command == _EVERY or module == wanted:
            if module not in registered:  # a module registers all of its commands at once
                importlib.import_module(f"modelline.cli.{module}").register(commands, HelpFormatter)
                registered.add(module)
        else:
            commands.add_parser(name, help=help_line)
    return parser


def _report(exc: ModelLineError, out: Output) -> int:
    message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if isinstance(exc, PackageRejected):
        message = f"package rejected: {message}"
    if out.as_json:
        import json  # noqa: PLC0415 - start-up time

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
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(_command_of(argv))
    args = parser.parse_args(argv)
    if args.pki_dir is not None:  # read by sdk.opcua.connect.default_pki_dir
        os.environ["MODELLINE_PKI_DIR"] = str(args.pki_dir)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.log_level != "DEBUG":  # libraries' own warnings are noise for a user; our messages say what matters
        for library in QUIET_LIBRARIES:
            logging.getLogger(library).setLevel(logging.ERROR)
    import inspect  # noqa: PLC0415 - start-up time

    out = Output(as_json=getattr(args, "json", False), quiet=getattr(args, "quiet", False))
    try:
        result = args.handler(args, out)
        if inspect.iscoroutine(result):
            import asyncio  # noqa: PLC0415 - only the commands that need it pay for it

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
