"""`modelline trust`: the certificate trust lists of an edge node, a gateway or the CLI itself.

Works on the PKI folder (``<data dir>/pki``, or ``--pki-dir``) on the machine where it runs; a running
server reads the lists again at each connection, so a change needs no restart."""

from __future__ import annotations

import argparse
from pathlib import Path

from modelline.cli.common import add_json
from modelline.cli.output import Output
from sdk.errors import UsageError

_EXAMPLE = """Examples:
  modelline trust list --data-dir var/edge                    # trusted, issuers and rejected certificates
  modelline trust approve --data-dir var/edge 2E5BA48F        # a rejected certificate, by thumbprint (prefix)
  modelline trust approve --data-dir var/edge scada.der       # a certificate file (a CA trusts what it issued)
  modelline trust show --data-dir var/gateway own             # this server's own certificate
  modelline trust remove --data-dir var/edge 2E5BA48F
  modelline trust crl --data-dir var/edge plant-ca.crl        # a revocation list of a trusted CA
  modelline trust show own                                    # the CLI's own certificate (made if missing)

An unknown client is refused (Bad_CertificateUntrusted) and its certificate kept in rejected/; approve
it there. Give the CLI's own certificate (~/.config/modelline/pki/own/cert.der) to each server's
'trust approve' once."""


def register(commands: argparse._SubParsersAction, formatter: type[argparse.HelpFormatter]) -> None:  # type: ignore[type-arg]
    """Add `trust list | approve | remove | show | crl`."""
    trust = commands.add_parser(
        "trust", help="manage trusted certificates (OPC UA PKI)", formatter_class=formatter, epilog=_EXAMPLE
    )
    sub = trust.add_subparsers(dest="trust_command", metavar="ACTION", required=True)

    def action(name: str, help_text: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = sub.add_parser(
            name, help=help_text, formatter_class=formatter, epilog=_EXAMPLE
        )
        where = parser.add_mutually_exclusive_group()
        where.add_argument("--data-dir", type=Path, metavar="DIR", help="data folder of an edge node or gateway")
        where.add_argument(  # its own dest: a sub-command's default must not hide `modelline --pki-dir DIR trust ...`
            "--pki-dir",
            dest="trust_pki_dir",
            type=Path,
            metavar="DIR",
            help="a PKI folder itself (default: the CLI's own, see --help)",
        )
        add_json(parser)
        return parser

    listing = action("list", "list the certificates of the trust lists")
    listing.add_argument("--list", choices=["trusted", "issuers", "rejected"], help="only this list")
    listing.set_defaults(handler=_list)
    approve = action("approve", "trust a rejected certificate, or a certificate file")
    approve.add_argument("certificate", metavar="THUMBPRINT|FILE", help="thumbprint (or a prefix) or file")
    approve.set_defaults(handler=_approve)
    remove = action("remove", "delete a certificate from its list")
    remove.add_argument("certificate", metavar="THUMBPRINT|FILE", help="thumbprint (or a prefix) or file name")
    remove.set_defaults(handler=_remove)
    show = action("show", "show one certificate ('own': this application's)")
    show.add_argument("certificate", metavar="THUMBPRINT|own", help="thumbprint (or a prefix), file name, or own")
    show.set_defaults(handler=_show)
    crl = action("crl", "add a certificate revocation list")
    crl.add_argument("file", type=Path, metavar="FILE", help="the CRL (DER or PEM)")
    crl.add_argument("--issuers", action="store_true", help="for a CA in issuers/ (default: trusted/)")
    crl.set_defaults(handler=_crl)


def _where(args: argparse.Namespace) -> Path:
    from sdk.opcua.connect import default_pki_dir

    if args.trust_pki_dir is not None:
        return Path(args.trust_pki_dir)
    return Path(args.data_dir) / "pki" if args.data_dir is not None else default_pki_dir()


def _pki(args: argparse.Namespace) -> Path:
    pki_dir = _where(args)
    if not pki_dir.is_dir():
        raise UsageError(f"{pki_dir} does not exist (has the node or gateway started once with this data folder?)")
    return pki_dir


def _print(out: Output, entries: list[object]) -> None:
    from rich.text import Text

    from sdk.opcua.pki import Entry

    rows = [e for e in entries if isinstance(e, Entry)]
    if out.as_json:
        out.result({"certificates": [e.as_dict() for e in rows]})
        return
    for e in rows:
        out.result(
            {},
            Text(
                f"{e.list:9} {e.thumbprint}  {e.subject}  {e.application_uri or '-'}  "
                f"until {e.not_after:%Y-%m-%d}{'  (CA)' if e.is_ca else ''}"
            ),
        )


def _list(args: argparse.Namespace, out: Output) -> int:
    from sdk.opcua.pki import entries

    found = entries(_pki(args), args.list)
    _print(out, list(found))
    if not found and not out.as_json:
        out.note("no certificates")
    return 0


def _approve(args: argparse.Namespace, out: Output) -> int:
    from sdk.opcua.pki import approve

    _print(out, [approve(_where(args), args.certificate)])
    return 0


def _remove(args: argparse.Namespace, out: Output) -> int:
    from sdk.opcua.pki import remove

    _print(out, [remove(_pki(args), args.certificate)])
    return 0


async def _show(args: argparse.Namespace, out: Output) -> int:
    from rich.text import Text

    from sdk.opcua.connect import CLIENT_URI, own_certificate
    from sdk.opcua.pki import entry_of, find, load_certificate

    if args.certificate == "own" and args.data_dir is None and args.trust_pki_dir is None:
        await own_certificate(_where(args), CLIENT_URI, "ModelLine CLI")  # the CLI's: made on first use
    pki_dir = _pki(args)
    if args.certificate == "own":
        path = pki_dir / "own" / "cert.der"
        if not path.is_file():
            raise UsageError(f"{path} does not exist yet (made at the first start or connection)")
        entry = entry_of("own", path, load_certificate(path.read_bytes()))
    else:
        entry = find(pki_dir, args.certificate)
    if out.as_json:
        out.result({**entry.as_dict(), "path": str(entry.file)})
    else:
        for key, value in {**entry.as_dict(), "path": str(entry.file)}.items():
            out.result({}, Text(f"{key:16} {value}"))
    return 0


def _crl(args: argparse.Namespace, out: Output) -> int:
    from sdk.opcua.pki import add_crl

    target = add_crl(_where(args), args.file, args.issuers)
    out.result({"crl": str(target)}, f"added {target}")
    return 0
