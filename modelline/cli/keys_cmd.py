"""`modelline keys`: create a signing key pair."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from modelline.cli.common import add_json, add_passphrase, read_passphrase
from modelline.cli.output import Output
from sdk.errors import UsageError
from sdk.keys import PASSPHRASE_ENV, generate_key_pair


def register(commands: argparse._SubParsersAction, formatter: type[argparse.HelpFormatter]) -> None:  # type: ignore[type-arg]
    """Add `keys generate`."""
    keys = commands.add_parser(
        "keys",
        help="create signing keys",
        formatter_class=formatter,
        epilog="Examples:\n  modelline keys generate --out keys\n"
        "  modelline keys generate --out keys --name line3 --passphrase-file secret.txt\n\n"
        "Copy the .pub file into the trust store folder of every gateway and edge node; keep the .key secret.",
    )
    sub = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    gen = sub.add_parser(
        "generate",
        help="create an Ed25519 signing key pair",
        formatter_class=formatter,
        description="Write NAME.key (private, file mode 0600) and NAME.pub (public) into a folder.\n"
        "Keep the .key file secret; copy the .pub file into the trust store folder of every\n"
        "gateway and edge node that must accept packages signed with it.",
        epilog="Examples:\n  modelline keys generate --out keys\n"
        "  modelline keys generate --out keys --name line3 --passphrase-file secret.txt\n"
        f"  {PASSPHRASE_ENV}=... modelline keys generate --out keys --encrypt",
    )
    gen.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder for the key files")
    gen.add_argument("--name", default="signing", help="file name stem (default: signing)")
    gen.add_argument(
        "--encrypt",
        action="store_true",
        help=f"encrypt the private key with the passphrase from ${PASSPHRASE_ENV}",
    )
    add_passphrase(gen)
    add_json(gen)
    gen.set_defaults(handler=_generate)


def _generate(args: argparse.Namespace, out: Output) -> int:
    passphrase = read_passphrase(args)
    if passphrase is None and args.encrypt:
        env = os.environ.get(PASSPHRASE_ENV)
        if not env:
            raise UsageError(f"--encrypt needs a passphrase: set ${PASSPHRASE_ENV} or give --passphrase-file")
        passphrase = env.encode()
    files = generate_key_pair(args.out, args.name, passphrase)
    out.result(
        {
            "ok": True,
            "key_id": files.key_id,
            "private_key": str(files.private_path),
            "public_key": str(files.public_path),
            "encrypted": passphrase is not None,
        },
        f"key id      {files.key_id}\n"
        f"private key {files.private_path}  (keep secret{', encrypted' if passphrase else ''})\n"
        f"public key  {files.public_path}  (copy into each trust store folder)",
    )
    return 0
