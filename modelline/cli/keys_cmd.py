"""`modelline keys`: create a signing identity (X.509 certificate or CSR)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from modelline.cli.common import add_json, add_passphrase, read_passphrase
from modelline.cli.output import Output
from sdk.certs import KEY_ALGORITHMS, generate_identity
from sdk.errors import UsageError
from sdk.keys import PASSPHRASE_ENV, generate_key_pair

_EXAMPLES = (
    "Examples:\n  modelline keys generate --out keys --organization 'Plant 3'\n"
    "  modelline keys generate --out keys --name line3 --csr --common-name 'Line 3 models'\n"
    "  modelline keys generate --out keys --algorithm rsa-3072 --passphrase-file secret.txt\n\n"
    "Copy the self-signed NAME.pem (or your plant CA's root certificate) into the trust store\n"
    "folder of every gateway and edge node; keep NAME.key secret."
)


def register(commands: argparse._SubParsersAction, formatter: type[argparse.HelpFormatter]) -> None:  # type: ignore[type-arg]
    """Add `keys generate`."""
    keys = commands.add_parser("keys", help="create signing identities", formatter_class=formatter, epilog=_EXAMPLES)
    sub = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    gen = sub.add_parser(
        "generate",
        help="create a signing key with a self-signed X.509 certificate, or a CSR for the plant CA",
        formatter_class=formatter,
        description="Write NAME.key (private, file mode 0600) and either NAME.pem, a self-signed signing\n"
        "certificate for a quick start, or NAME.csr (--csr), a request for the plant's CA to sign.\n"
        "Trust stores hold root certificates: the self-signed NAME.pem, or the CA's root.",
        epilog=_EXAMPLES,
    )
    gen.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder for the files")
    gen.add_argument("--name", default="signing", help="file name stem (default: signing)")
    gen.add_argument("--common-name", metavar="CN", help="certificate subject CN (default: the name)")
    gen.add_argument("--organization", metavar="O", help="certificate subject O (also the package Manufacturer)")
    gen.add_argument("--algorithm", choices=KEY_ALGORITHMS, default="ec-p256", help="key algorithm (default: ec-p256)")
    gen.add_argument("--csr", action="store_true", help="write a certificate signing request instead of a certificate")
    gen.add_argument("--days", type=int, default=825, help="validity of the self-signed certificate (default: 825)")
    gen.add_argument(
        "--ed25519", action="store_true", help="a bare Ed25519 key pair for legacy .mlpkg packages (deprecated)"
    )
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
    if args.ed25519:
        return _legacy(args, out, passphrase)
    files = generate_identity(
        args.out,
        args.name,
        common_name=args.common_name,
        organization=args.organization,
        algorithm=args.algorithm,
        csr=args.csr,
        days=args.days,
        passphrase=passphrase,
    )
    second = (
        f"request     {files.csr_path}  (send to the plant CA; sign with its certificate chain)"
        if files.csr_path
        else f"certificate {files.cert_path}  (self-signed: copy into each trust store folder)"
    )
    out.result(
        {
            "ok": True,
            "subject": files.subject,
            "private_key": str(files.private_path),
            "certificate": str(files.cert_path) if files.cert_path else None,
            "csr": str(files.csr_path) if files.csr_path else None,
            "fingerprint": files.fingerprint or None,
            "algorithm": args.algorithm,
            "encrypted": passphrase is not None,
        },
        f"subject     {files.subject}\n"
        f"private key {files.private_path}  (keep secret{', encrypted' if passphrase else ''})\n{second}",
    )
    return 0


def _legacy(args: argparse.Namespace, out: Output, passphrase: bytes | None) -> int:
    files = generate_key_pair(args.out, args.name, passphrase)
    out.note("note: Ed25519 keys sign only the deprecated .mlpkg format; prefer an X.509 certificate")
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
