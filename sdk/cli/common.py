"""Options several commands share: JSON output, signing key and passphrase."""

from __future__ import annotations

import argparse
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sdk.errors import NotFound
from sdk.keys import PASSPHRASE_ENV, load_private_key

Subparsers = "argparse._SubParsersAction[argparse.ArgumentParser]"


def add_json(parser: argparse.ArgumentParser) -> None:
    """--json: machine-readable output on stdout."""
    parser.add_argument("--json", action="store_true", help="print the result as JSON (for scripts)")


def add_output_and_spec(parser: argparse.ArgumentParser) -> None:
    """-o/--output for the package to write, and --spec for what the ONNX graph cannot say."""
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="OUT.mlpkg", help="package file to write")
    parser.add_argument(
        "--spec", type=Path, metavar="FILE", help="spec file (TOML) with units, ranges, labels, training CSV"
    )


def add_signing(parser: argparse.ArgumentParser, required: bool = False) -> None:
    """--key and --passphrase-file."""
    parser.add_argument(
        "--key",
        type=Path,
        required=required,
        metavar="KEY",
        help="Ed25519 private key file (from 'modelline keys generate') to sign the package with",
    )
    add_passphrase(parser)


def add_passphrase(parser: argparse.ArgumentParser) -> None:
    """--passphrase-file, with the environment variable as fallback."""
    parser.add_argument(
        "--passphrase-file",
        type=Path,
        metavar="FILE",
        help=f"file holding the key's passphrase (or set ${PASSPHRASE_ENV})",
    )


def read_passphrase(args: argparse.Namespace) -> bytes | None:
    """The passphrase from --passphrase-file, or None (the key loader then tries the environment)."""
    path: Path | None = args.passphrase_file
    if path is None:
        return None
    try:
        return path.read_bytes().rstrip(b"\r\n")
    except FileNotFoundError:
        raise NotFound(f"passphrase file {path} does not exist") from None


def signing_key(args: argparse.Namespace) -> Ed25519PrivateKey | None:
    """The private key named by --key, or None."""
    if args.key is None:
        return None
    return load_private_key(args.key, read_passphrase(args))
