"""`modelline package`: build, inspect, verify, approve and convert model packages."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelline.cli.common import (
    add_json,
    add_output_and_spec,
    add_passphrase,
    add_signing,
    read_passphrase,
    signing_identity,
    signing_key,
)
from modelline.cli.output import Output
from sdk.errors import NotFound, PackageRejected, UsageError

LEGACY_NOTE = ".mlpkg packages are deprecated: convert with 'modelline package convert'"

if TYPE_CHECKING:  # onnxruntime, numpy and rich load when a command runs, not for --help
    from rich.table import Table

    from sdk.package.manifest import Range, TensorSpec
    from sdk.package.verify import PackageInfo

_EXAMPLES = """Examples:
  modelline package build examples/pump_health/model.onnx --name pump-health --version 1.0.0 \\
      --spec examples/pump_health/spec.toml --cert keys/signing.pem --key keys/signing.key \\
      -o pump-health-1.0.0.uadipkg
  modelline package inspect pump-health-1.0.0.uadipkg
  modelline package verify pump-health-1.0.0.uadipkg --trust trust/
  modelline package approve pump-health-1.0.0.uadipkg --cert approver.pem --key approver.key \\
      -o pump-health-1.0.0-approved.uadipkg
  modelline package convert old.mlpkg --cert keys/signing.pem --key keys/signing.key -o new.uadipkg
  modelline package sign old.mlpkg --key keys/release.key   (legacy .mlpkg only, deprecated)

Run 'modelline package ACTION --help' for each action's options."""

_BUILD_EXAMPLE = """Example:
  modelline package build examples/pump_health/model.onnx --name pump-health --version 1.0.0 \\
      --spec examples/pump_health/spec.toml --cert keys/signing.pem --key keys/signing.key \\
      -o pump-health-1.0.0.uadipkg

The package is an OPC UA DI Software Package (OPC 10000-100 8.7): META/package_metadata.json,
the model and its manifest under CONTENT/, a model card under SUPPLEMENT/, and an ASiC-E
CAdES signature in META-INF/ that 'openssl cms -verify' can check.

The spec file (TOML) is optional: it adds units, valid ranges, labels, a description and a
training CSV (for drift reference statistics) to what the ONNX graph declares."""


def register(commands: argparse._SubParsersAction, formatter: type[argparse.HelpFormatter]) -> None:  # type: ignore[type-arg]
    """Add `package build|inspect|verify|approve|convert|sign`."""
    package = commands.add_parser(
        "package",
        help="build, inspect, verify, approve and convert model packages",
        formatter_class=formatter,
        epilog=_EXAMPLES,
    )
    sub = package.add_subparsers(dest="package_command", metavar="ACTION", required=True)

    build = sub.add_parser(
        "build",
        help="package an ONNX model (signed with --cert and --key)",
        formatter_class=formatter,
        description="Read the model's inputs and outputs from the ONNX file, record sample inputs with the\n"
        "outputs onnxruntime gives for them, hash every file, sign, write one .uadipkg file.",
        epilog=_BUILD_EXAMPLE,
    )
    build.add_argument("model", type=Path, metavar="MODEL.onnx", help="the ONNX model file")
    build.add_argument("--name", required=True, help="model name, e.g. pump-health (letters, digits, _ . -)")
    build.add_argument("--version", required=True, help="semantic version, e.g. 1.0.0")
    build.add_argument("--description", help="one line on what the model predicts (overrides the spec)")
    build.add_argument("--manufacturer", help="Manufacturer in the DI package metadata (default: the certificate's O)")
    build.add_argument(
        "--manufacturer-uri",
        default=None,
        help="ManufacturerUri in the DI package metadata (default: urn:modelline:model:NAME)",
    )
    add_output_and_spec(build)
    add_signing(build)
    add_json(build)
    build.set_defaults(handler=_build)

    show = sub.add_parser(
        "inspect",
        help="show what a package holds",
        formatter_class=formatter,
        description="Show a package's model, inputs, outputs, units, signatures and file hashes.\n"
        "With --trust the author's chain is checked too (the files are not: use 'verify').",
        epilog="Examples:\n  modelline package inspect pump-health-1.0.0.uadipkg\n"
        "  modelline package inspect pump-health-1.0.0.uadipkg --trust trust/ --json",
    )
    show.add_argument("package", type=Path, metavar="PKG", help="the .uadipkg (or legacy .mlpkg) file")
    show.add_argument("--trust", type=Path, metavar="DIR", help="trust store folder to check the author's chain")
    add_json(show)
    show.set_defaults(handler=_inspect)

    verify = sub.add_parser(
        "verify",
        help="check signature, hashes, archive safety and the model itself",
        formatter_class=formatter,
        description="Run every check a gateway and an edge node run before they accept a package:\n"
        "safe archive, ASiC-E container, CAdES signatures and the author's certificate chain (at\n"
        "signing time, CRLs), the DI metadata schema, every file's size and SHA-256,\n"
        "the model loads in onnxruntime with the declared inputs and outputs, and it\n"
        "reproduces its recorded sample outputs. Exit code 3 and one line saying why on failure.",
        epilog="Examples:\n  modelline package verify pump-health-1.0.0.uadipkg --trust trust/\n"
        "  modelline package verify pump-health-1.0.0.uadipkg --trust trust/ --approval-trust approvers/",
    )
    verify.add_argument("package", type=Path, metavar="PKG", help="the .uadipkg (or legacy .mlpkg) file")
    verify.add_argument(
        "--trust",
        type=Path,
        required=True,
        metavar="DIR",
        help="trust store folder: root certificates (*.pem) and CRLs (*.crl); legacy *.pub keys",
    )
    verify.add_argument(
        "--approval-trust", type=Path, metavar="DIR", help="also require an approval signature chaining to these roots"
    )
    verify.add_argument("--skip-samples", action="store_true", help="do not run the sample inputs")
    add_json(verify)
    verify.set_defaults(handler=_verify)

    approve = sub.add_parser(
        "approve",
        help="add an approval signature (the author's stays)",
        formatter_class=formatter,
        description="Add an approval signature: one more ASiCManifest and CAdES signature in META-INF that\n"
        "covers every file and the author's signature. Gateways and edge nodes started with\n"
        "--approval-trust accept only packages approved by a certificate of that hierarchy.",
        epilog="Example:\n  modelline package approve pump-health-1.0.0.uadipkg --cert plant-approver.pem \\\n"
        "      --key plant-approver.key --trust trust/ -o pump-health-1.0.0-approved.uadipkg",
    )
    approve.add_argument("package", type=Path, metavar="PKG", help="the .uadipkg file")
    approve.add_argument("-o", "--output", type=Path, required=True, metavar="OUT.uadipkg", help="package to write")
    approve.add_argument("--trust", type=Path, metavar="DIR", help="verify the package against this trust store first")
    add_signing(approve, required=True)
    add_json(approve)
    approve.set_defaults(handler=_approve)

    convert = sub.add_parser(
        "convert",
        help="turn a legacy .mlpkg into a DI package (.uadipkg), re-signed",
        formatter_class=formatter,
        description="Read a deprecated .mlpkg and write the same model and manifest as a DI Software\n"
        "Package signed with an X.509 certificate. With --trust the old signature is checked first.",
        epilog="Example:\n  modelline package convert old.mlpkg --trust trust/ --cert keys/signing.pem \\\n"
        "      --key keys/signing.key -o new.uadipkg",
    )
    convert.add_argument("package", type=Path, metavar="OLD.mlpkg", help="the legacy package")
    convert.add_argument("-o", "--output", type=Path, required=True, metavar="NEW.uadipkg", help="package to write")
    convert.add_argument("--trust", type=Path, metavar="DIR", help="verify the old package against this trust store")
    add_signing(convert, required=True)
    add_json(convert)
    convert.set_defaults(handler=_convert)

    sign = sub.add_parser(
        "sign",
        help="re-sign a legacy .mlpkg with an Ed25519 key (deprecated)",
        formatter_class=formatter,
        description="Sign a legacy .mlpkg's manifest with an Ed25519 key, replacing any earlier signature.\n"
        "Deprecated with the .mlpkg format: use 'convert' (and 'approve' for a second signature).",
        epilog="Example:\n  modelline package sign old.mlpkg --key keys/release.key",
    )
    sign.add_argument("package", type=Path, metavar="PKG", help="the .mlpkg file")
    sign.add_argument("-o", "--output", type=Path, metavar="OUT.mlpkg", help="write here instead of in place")
    sign.add_argument("--key", type=Path, required=True, metavar="KEY", help="Ed25519 private key")
    add_passphrase(sign)
    add_json(sign)
    sign.set_defaults(handler=_sign)


def _build(args: argparse.Namespace, out: Output) -> int:
    from sdk.package.build import build_package
    from sdk.package.spec import PackageSpec

    spec = PackageSpec.load(args.spec) if args.spec else None
    identity = signing_identity(args)
    key = signing_key(args)
    result = build_package(
        args.model,
        args.output,
        name=args.name,
        version=args.version,
        spec=spec,
        identity=identity,
        private_key=key,
        description=args.description,
        manufacturer=args.manufacturer,
        manufacturer_uri=args.manufacturer_uri,
    )
    if key is not None:
        out.note(f"note: an Ed25519 key alone wrote a legacy .mlpkg; {LEGACY_NOTE}")
    elif identity is None:
        out.note(
            "note: the package is not signed; gateways and edge nodes refuse unsigned packages "
            "(build it with --cert and --key)"
        )
    m = result.manifest
    out.result(
        {
            "ok": True,
            "path": str(result.path),
            "name": m.name,
            "version": m.version,
            "sha256": result.sha256,
            "size": result.size,
            "signed_by": result.signed_by,
            "samples": len(m.samples),
        },
        f"built {result.path}: {m.name} {m.version}, {len(m.inputs)} input(s), {len(m.outputs)} output(s), "
        f"{len(m.samples)} sample(s)\nsha256 {result.sha256}\n"
        + (f"signed by {result.signed_by}" if result.signed_by else "unsigned"),
    )
    return 0


def _range(r: Range) -> str:
    if r.min is None and r.max is None:
        return ""
    return f"{'' if r.min is None else f'{r.min:g}'} .. {'' if r.max is None else f'{r.max:g}'}"


def _row(table: Table, *cells: str | None) -> None:
    """Add a row of plain text: names and labels come from users and may hold '[' (rich markup)."""
    from rich.text import Text

    table.add_row(*(Text(c or "") for c in cells))


def _ports_table(title: str, tensors: list[TensorSpec]) -> Table:
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for column in ("name", "type", "shape", "label", "units", "valid range"):
        table.add_column(column)
    for t in tensors:
        shape = "[" + ", ".join("?" if d is None else str(d) for d in t.shape) + "]"
        _row(table, t.name, t.element_type.value, shape, t.label, t.units, _range(t.valid))
        for f in t.features:
            _row(table, f"  {f.name}", "", "", f.label, f.units, _range(f.valid))
    return table


def _signature_state(info: PackageInfo, trust_dir: Path | None) -> tuple[str, bool | None]:
    if info.legacy:
        return _legacy_signature_state(info, trust_dir)
    if not info.signatures:
        return "not signed", False
    author = info.signatures[0]
    if trust_dir is None:
        return f"{author.subject} (not checked: give --trust, or run 'verify')", None
    from sdk.keys import TrustStore

    try:
        chain = TrustStore.load(trust_dir).certificates.validate(*_author_cert(info), author.signing_time)
    except PackageRejected as exc:
        return f"{author.subject}: REJECTED: {exc}", False
    return f"{author.subject} (trusted, chain: {' <- '.join(c.subject.rfc4514_string() for c in chain)})", True


def _author_cert(info: PackageInfo) -> tuple[Any, list[Any]]:
    from sdk.package.archive import PackageArchive
    from sdk.package.verify_di import read_signatures

    with PackageArchive(info.path) as archive:
        signer = read_signatures(archive)[0].signer
    return signer.certificate, signer.others


def _legacy_signature_state(info: PackageInfo, trust_dir: Path | None) -> tuple[str, bool | None]:
    if info.signature is None:
        return "not signed (legacy .mlpkg)", False
    if trust_dir is None:
        return f"key {info.signature.key_id} (legacy .mlpkg; not checked: give --trust, or run 'verify')", None
    from sdk.keys import TrustStore
    from sdk.package.signature import verify_manifest

    try:
        verify_manifest(info.manifest_bytes, info.signature, TrustStore.load(trust_dir))
    except PackageRejected as exc:
        return f"key {info.signature.key_id}: REJECTED: {exc}", False
    return f"key {info.signature.key_id} (valid, trusted; legacy .mlpkg)", True


def _signatures_table(info: PackageInfo) -> Table:
    from rich.table import Table

    table = Table(title="Signatures", title_justify="left")
    for column in ("#", "role", "signer", "issuer", "signing time", "sha256 fingerprint"):
        table.add_column(column, overflow="fold")
    for r in info.signatures:
        _row(table, f"{r.number:03d}", r.role, r.subject, r.issuer, r.signing_time.isoformat(), r.fingerprint)
    return table


def _inspect(args: argparse.Namespace, out: Output) -> int:
    from rich.console import Group
    from rich.table import Table

    from sdk.package.verify import read_package

    info = read_package(args.package)
    m = info.manifest
    signer_text, signature_ok = _signature_state(info, args.trust)
    data: dict[str, Any] = {
        "path": str(info.path),
        "sha256": info.sha256,
        "size": info.size,
        "format": "mlpkg" if info.legacy else "uadipkg",
        "signature": {"key_id": info.signature.key_id if info.signature else None, "valid": signature_ok},
        "signatures": [r.as_dict() for r in info.signatures],
        "package_metadata": info.metadata.model_dump(mode="json", by_alias=True, exclude_none=True)
        if info.metadata
        else None,
        "manifest": m.model_dump(mode="json"),
    }
    if info.legacy:
        out.note(f"note: {LEGACY_NOTE}")
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold", no_wrap=True)
    head.add_column(overflow="fold")
    for label, value in (
        ("model", f"{m.name} {m.version}"),
        ("description", m.description),
        ("created", m.created.isoformat()),
        ("source", f"{m.provenance.source.value} {m.provenance.uri or ''}".strip()),
        ("approval", m.provenance.approval_status or ""),
        ("metrics", ", ".join(f"{k}={v:g}" for k, v in m.provenance.metrics.items())),
        (
            "onnx",
            f"IR {m.onnx.ir_version}, opsets " + ", ".join(f"{d or 'ai.onnx'} {v}" for d, v in m.onnx.opsets.items()),
        ),
        ("format", "legacy .mlpkg (deprecated)" if info.legacy else "DI Software Package (ASiC-E, CAdES)"),
        ("manufacturer", f"{info.metadata.manufacturer} ({info.metadata.manufacturer_uri})" if info.metadata else ""),
        ("signature", signer_text),
        ("package sha256", info.sha256),
        ("samples", str(len(m.samples))),
        ("drift reference", f"{len(m.reference_stats)} feature(s)" if m.reference_stats else "none"),
    ):
        if value:
            _row(head, label, value)
    files = Table(title="Files", title_justify="left")
    files.add_column("file")
    files.add_column("bytes", justify="right")
    files.add_column("sha256", no_wrap=True, overflow="fold")
    for f in m.files:
        _row(files, f.path, str(f.size), f.sha256)
    parts = [head, _ports_table("Inputs", m.inputs), _ports_table("Outputs", m.outputs), files]
    if info.signatures:
        parts.append(_signatures_table(info))
    out.result(data, Group(*parts))
    return 0 if signature_ok is not False or args.trust is None else 3


def _verify(args: argparse.Namespace, out: Output) -> int:
    from sdk.keys import TrustStore
    from sdk.package.verify import verify_package

    if not args.package.is_file():  # the package first: its absence matters more than the trust store's
        raise NotFound(f"package {args.package} does not exist")
    trust = TrustStore.load_policy(args.trust, args.approval_trust)
    pkg = verify_package(args.package, trust, run_samples=not args.skip_samples)
    m = pkg.manifest
    if pkg.legacy:
        out.note(f"note: {LEGACY_NOTE}")
    approvers = [r.subject for r in pkg.signatures if r.role == "approver" and r.trusted]
    samples = "skipped" if args.skip_samples else f"{len(m.samples)} reproduced"
    out.result(
        {
            "ok": True,
            "name": m.name,
            "version": m.version,
            "signer": pkg.signer,
            "sha256": pkg.sha256,
            "files": len(m.files),
            "samples": samples,
            "format": "mlpkg" if pkg.legacy else "uadipkg",
            "signatures": [r.as_dict() for r in pkg.signatures],
        },
        f"OK {m.name} {m.version}: signed by trusted {'key' if pkg.legacy else 'author'} {pkg.signer}"
        + (f", approved by {', '.join(approvers)}" if approvers else "")
        + f"; {len(m.files)} file(s) match; model loads; samples {samples}\nsha256 {pkg.sha256}",
    )
    return 0


def _approve(args: argparse.Namespace, out: Output) -> int:
    from sdk.keys import TrustStore
    from sdk.package.approve import approve_package

    identity = signing_identity(args)
    if identity is None:
        raise UsageError("--cert and --key are required")
    if not args.package.is_file():
        raise NotFound(f"package {args.package} does not exist")
    trust = TrustStore.load(args.trust) if args.trust else None
    number = approve_package(args.package, identity, args.output, trust=trust)
    who = identity.certificate.subject.rfc4514_string()
    out.result(
        {"ok": True, "path": str(args.output), "signature": number, "approver": who},
        f"approved {args.output}: signature {number:03d} by {who}",
    )
    return 0


def _convert(args: argparse.Namespace, out: Output) -> int:
    from sdk.keys import TrustStore
    from sdk.package.approve import convert_package

    identity = signing_identity(args)
    if identity is None:
        raise UsageError("--cert and --key are required")
    trust = TrustStore.load(args.trust) if args.trust else None
    result = convert_package(args.package, identity, args.output, trust=trust)
    out.result(
        {"ok": True, "path": str(result.path), "sha256": result.sha256, "signed_by": result.signed_by},
        f"converted {args.package} -> {result.path}, signed by {result.signed_by}\nsha256 {result.sha256}",
    )
    return 0


def _sign(args: argparse.Namespace, out: Output) -> int:
    from sdk.keys import load_private_key

    key = load_private_key(args.key, read_passphrase(args))
    out.note(f"note: {LEGACY_NOTE}")
    from sdk.package.verify import sign_package

    target = args.output or args.package
    signature = sign_package(args.package, key, args.output)
    out.result(
        {"ok": True, "path": str(target), "key_id": signature.key_id}, f"signed {target} with key {signature.key_id}"
    )
    return 0
