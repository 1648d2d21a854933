"""Options several commands share: JSON output, signing key and passphrase, logins."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from sdk.errors import NotFound, UsageError
from sdk.keys import PASSPHRASE_ENV

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from sdk.certs import SigningIdentity

Subparsers = "argparse._SubParsersAction[argparse.ArgumentParser]"
PASSWORD_ENV = "MODELLINE_PASSWORD"


def add_json(parser: argparse.ArgumentParser) -> None:
    """--json: machine-readable output on stdout."""
    parser.add_argument("--json", action="store_true", help="print the result as JSON (for scripts)")


def add_output_and_spec(parser: argparse.ArgumentParser) -> None:
    """-o/--output for the package to write, and --spec for what the ONNX graph cannot say."""
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="OUT.uadipkg", help="package file to write")
    parser.add_argument(
        "--spec", type=Path, metavar="FILE", help="spec file (TOML) with units, ranges, labels, training CSV"
    )


def add_signing(parser: argparse.ArgumentParser, required: bool = False) -> None:
    """--cert, --key and --passphrase-file."""
    parser.add_argument(
        "--cert",
        type=Path,
        required=required,
        metavar="CERT.pem",
        help="X.509 signing certificate, with its chain (from 'modelline keys generate' or the plant CA)",
    )
    parser.add_argument(
        "--key",
        type=Path,
        required=required,
        metavar="KEY",
        help="the certificate's private key (alone, an Ed25519 key writes a deprecated .mlpkg)",
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


def signing_identity(args: argparse.Namespace) -> SigningIdentity | None:
    """The X.509 identity named by --cert and --key, or None; UsageError if only --cert is given."""
    if args.cert is None:
        return None
    if args.key is None:
        raise UsageError("--cert needs --key (the certificate's private key)")
    from sdk.certs import load_identity

    return load_identity(args.cert, args.key, read_passphrase(args))


def signing_key(args: argparse.Namespace) -> Ed25519PrivateKey | None:
    """The legacy Ed25519 key named by --key without --cert, or None."""
    if args.key is None or getattr(args, "cert", None) is not None:
        return None
    from sdk.errors import KeyFileError
    from sdk.keys import load_private_key

    try:
        return load_private_key(args.key, read_passphrase(args))
    except KeyFileError as exc:
        if str(exc).endswith("is not an Ed25519 key"):
            raise UsageError(f"--key {args.key} is an X.509 signing key: give its certificate with --cert") from None
        raise


def add_users_file(parser: argparse.ArgumentParser) -> None:
    """--users-file for the servers (logins and roles; without it only anonymous clients)."""
    parser.add_argument(
        "--users-file", type=Path, metavar="FILE", help="logins and roles (modelline users add); else anonymous only"
    )


def add_login(parser: argparse.ArgumentParser) -> None:
    """--user and --password-file (changing anything needs the Engineer role)."""
    parser.add_argument("--user", help="log in as this user (changing anything needs the Engineer role)")
    parser.add_argument(
        "--password-file", type=Path, metavar="FILE", help=f"file holding the user's password (or set ${PASSWORD_ENV})"
    )


def password_of(args: argparse.Namespace) -> str | None:
    """The password of --user: from --password-file, else the environment, else asked at the terminal."""
    if args.password_file is not None:
        try:
            return str(args.password_file.read_text(encoding="utf-8")).rstrip("\r\n")
        except FileNotFoundError:
            raise NotFound(f"password file {args.password_file} does not exist") from None
    if not args.user or PASSWORD_ENV in os.environ:
        return os.environ.get(PASSWORD_ENV)
    if not sys.stdin.isatty():
        raise UsageError(f"no password for user {args.user!r}: give --password-file or set {PASSWORD_ENV}")
    return getpass.getpass(f"password for {args.user}: ")
