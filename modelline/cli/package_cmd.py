"""`modelline package`: build, inspect, verify and sign model packages."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelline.cli.common import add_json, add_output_and_spec, add_signing, signing_key
from modelline.cli.output import Output
from sdk.errors import NotFound, PackageRejected, UsageError

if TYPE_CHECKING:  # onnxruntime, numpy and rich load when a command runs, not for --help
    from rich.table import Table

    from sdk.package.manifest import Range, TensorSpec
    from sdk.package.verify import PackageInfo

_EXAMPLES = """Examples:
  modelline package build examples/pump_health/model.onnx --name pump-health --version 1.0.0 \\
      --spec examples/pump_health/spec.toml --key keys/signing.key -o pump-health-1.0.0.mlpkg
  modelline package inspect pump-health-1.0.0.mlpkg
  modelline package verify pump-health-1.0.0.mlpkg --trust keys/
  modelline package sign pump-health-1.0.0.mlpkg --key keys/signing.key

Run 'modelline package ACTION --help' for each action's options."""

_BUILD_EXAMPLE = """Example:
  modelline package build examples/pump_health/model.onnx --name pump-health --version 1.0.0 \\
      --spec examples/pump_health/spec.toml --key keys/signing.key -o pump-health-1.0.0.mlpkg

The spec file (TOML) is optional: it adds units, valid ranges, labels, a description and a
training CSV (for drift reference statistics) to what the ONNX graph declares."""


def register(commands: argparse._SubParsersAction, formatter: type[argparse.HelpFormatter]) -> None:  # type: ignore[type-arg]
    """Add `package build|inspect|verify|sign`."""
    package = commands.add_parser(
        "package", help="build, inspect, verify and sign model packages", formatter_class=formatter, epilog=_EXAMPLES
    )
    sub = package.add_subparsers(dest="package_command", metavar="ACTION", required=True)

    build = sub.add_parser(
        "build",
        help="package an ONNX model (signed with --key)",
        formatter_class=formatter,
        description="Read the model's inputs and outputs from the ONNX file, record sample inputs with the\n"
        "outputs onnxruntime gives for them, hash every file, sign the manifest, write one .mlpkg file.",
        epilog=_BUILD_EXAMPLE,
    )
    build.add_argument("model", type=Path, metavar="MODEL.onnx", help="the ONNX model file")
    build.add_argument("--name", required=True, help="model name, e.g. pump-health (letters, digits, _ . -)")
    build.add_argument("--version", required=True, help="semantic version, e.g. 1.0.0")
    build.add_argument("--description", help="one line on what the model predicts (overrides the spec)")
    add_output_and_spec(build)
    add_signing(build)
    add_json(build)
    build.set_defaults(handler=_build)

    show = sub.add_parser(
        "inspect",
        help="show what a package holds",
        formatter_class=formatter,
        description="Show a package's model, inputs, outputs, units, signer and file hashes.\n"
        "With --trust the signature is also checked (the files are not: use 'verify').",
        epilog="Examples:\n  modelline package inspect pump-health-1.0.0.mlpkg\n"
        "  modelline package inspect pump-health-1.0.0.mlpkg --trust trust/ --json",
    )
    show.add_argument("package", type=Path, metavar="PKG", help="the .mlpkg file")
    show.add_argument("--trust", type=Path, metavar="DIR", help="trust store folder (*.pub) to check the signature")
    add_json(show)
    show.set_defaults(handler=_inspect)

    verify = sub.add_parser(
        "verify",
        help="check signature, hashes, archive safety and the model itself",
        formatter_class=formatter,
        description="Run every check a gateway and an edge node run before they accept a package:\n"
        "safe archive, trusted signature over the manifest, every file's size and SHA-256,\n"
        "the model loads in onnxruntime with the declared inputs and outputs, and it\n"
        "reproduces its recorded sample outputs. Exit code 3 and one line saying why on failure.",
        epilog="Example:\n  modelline package verify pump-health-1.0.0.mlpkg --trust trust/",
    )
    verify.add_argument("package", type=Path, metavar="PKG", help="the .mlpkg file")
    verify.add_argument(
        "--trust", type=Path, required=True, metavar="DIR", help="trust store folder of public keys (*.pub)"
    )
    verify.add_argument("--skip-samples", action="store_true", help="do not run the sample inputs")
    add_json(verify)
    verify.set_defaults(handler=_verify)

    sign = sub.add_parser(
        "sign",
        help="sign (or re-sign) a package",
        formatter_class=formatter,
        description="Sign the package's manifest with a private key, replacing any earlier signature.",
        epilog="Example:\n  modelline package sign pump-health-1.0.0.mlpkg --key keys/release.key",
    )
    sign.add_argument("package", type=Path, metavar="PKG", help="the .mlpkg file")
    sign.add_argument("-o", "--output", type=Path, metavar="OUT.mlpkg", help="write here instead of in place")
    add_signing(sign, required=True)
    add_json(sign)
    sign.set_defaults(handler=_sign)


def _build(args: argparse.Namespace, out: Output) -> int:
    from sdk.package.build import build_package
    from sdk.package.spec import PackageSpec

    spec = PackageSpec.load(args.spec) if args.spec else None
    key = signing_key(args)
    result = build_package(
        args.model,
        args.output,
        name=args.name,
        version=args.version,
        spec=spec,
        private_key=key,
        description=args.description,
    )
    if key is None:
        out.note(
            "note: the package is not signed; gateways and edge nodes refuse unsigned packages "
            "(sign it with 'modelline package sign --key ...')"
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
        + (f"signed by key {result.signed_by}" if result.signed_by else "unsigned"),
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
    if info.signature is None:
        return "not signed", False
    if trust_dir is None:
        return f"key {info.signature.key_id} (not checked: give --trust, or run 'verify')", None
    from sdk.keys import TrustStore
    from sdk.package.signature import verify_manifest

    try:
        verify_manifest(info.manifest_bytes, info.signature, TrustStore.load(trust_dir))
    except PackageRejected as exc:
        return f"key {info.signature.key_id}: REJECTED: {exc}", False
    return f"key {info.signature.key_id} (valid, trusted)", True


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
        "signature": {"key_id": info.signature.key_id if info.signature else None, "valid": signature_ok},
        "manifest": m.model_dump(mode="json"),
    }
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
    out.result(data, Group(head, _ports_table("Inputs", m.inputs), _ports_table("Outputs", m.outputs), files))
    return 0 if signature_ok is not False or args.trust is None else 3


def _verify(args: argparse.Namespace, out: Output) -> int:
    from sdk.keys import TrustStore
    from sdk.package.verify import verify_package

    if not args.package.is_file():  # the package first: its absence matters more than the trust store's
        raise NotFound(f"package {args.package} does not exist")
    pkg = verify_package(args.package, TrustStore.load(args.trust), run_samples=not args.skip_samples)
    m = pkg.manifest
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
        },
        f"OK {m.name} {m.version}: signed by trusted key {pkg.signer}; {len(m.files)} file(s) match; "
        f"model loads; samples {samples}\nsha256 {pkg.sha256}",
    )
    return 0


def _sign(args: argparse.Namespace, out: Output) -> int:
    key = signing_key(args)
    if key is None:
        raise UsageError("--key is required")
    from sdk.package.verify import sign_package

    target = args.output or args.package
    signature = sign_package(args.package, key, args.output)
    out.result(
        {"ok": True, "path": str(target), "key_id": signature.key_id}, f"signed {target} with key {signature.key_id}"
    )
    return 0
