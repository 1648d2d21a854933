"""`modelline demo`: the package flow on the shipped pump health model, start to finish.

Generates a signing key and a trust store, packages and signs the example model,
shows what is inside, verifies it as an edge node would, and shows that a
tampered copy is refused.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import zipfile
from pathlib import Path

from sdk.cli.output import Output
from sdk.errors import PackageRejected
from sdk.examples import example_dir
from sdk.keys import TrustStore, generate_key_pair, load_private_key
from sdk.package.build import build_package
from sdk.package.spec import PackageSpec
from sdk.package.verify import verify_package


def register(commands: argparse._SubParsersAction, formatter: type[argparse.HelpFormatter]) -> None:  # type: ignore[type-arg]
    """Add `demo`."""
    demo = commands.add_parser(
        "demo",
        help="run ModelLine end to end on the shipped example model",
        formatter_class=formatter,
        description=__doc__,
        epilog="Examples:\n  modelline demo\n  modelline demo --data-dir demo-data",
    )
    demo.add_argument(
        "--data-dir", type=Path, metavar="DIR", help="keep keys and packages here (default: a temporary folder)"
    )
    demo.set_defaults(handler=_demo)


def _tampered_copy(package: Path, target: Path) -> None:
    """A copy of the package with one byte of the model changed, as a transfer fault or attacker would."""
    with zipfile.ZipFile(package) as src, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith(".onnx"):
                data = data[:-1] + bytes([data[-1] ^ 0x01])
            dst.writestr(info, data)


def _demo(args: argparse.Namespace, out: Output) -> int:
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="modelline-demo-"))
    data_dir.mkdir(parents=True, exist_ok=True)
    example = example_dir()
    print(f"ModelLine demo: package flow on the pump health example ({example})\n")

    keys_dir = data_dir / "keys"
    if (keys_dir / "signing.key").exists():
        private = load_private_key(keys_dir / "signing.key")
        print(f"1. signing key   reusing {keys_dir / 'signing.key'}")
    else:
        files = generate_key_pair(keys_dir)
        private = load_private_key(files.private_path)
        print(f"1. signing key   {files.private_path} (key id {files.key_id})")
    trust_dir = data_dir / "trust"
    trust_dir.mkdir(exist_ok=True)
    shutil.copy(keys_dir / "signing.pub", trust_dir / "signing.pub")
    print(f"   trust store   {trust_dir}")

    package = data_dir / "pump-health-1.0.0.mlpkg"
    result = build_package(
        example / "model.onnx",
        package,
        name="pump-health",
        version="1.0.0",
        spec=PackageSpec.load(example / "spec.toml"),
        private_key=private,
    )
    m = result.manifest
    print(f"2. package       {package} ({result.size} bytes, sha256 {result.sha256[:16]}...)")
    features = ", ".join(f"{f.name} [{f.units}]" for f in m.input_features())
    print(f"   inputs        {features}")
    print("   outputs       " + ", ".join(f"{o.name}" + (f" [{o.units}]" if o.units else "") for o in m.outputs))
    print(f"   samples       {len(m.samples)} recorded; drift reference for {len(m.reference_stats)} features")

    verified = verify_package(package, TrustStore.load(trust_dir))
    print(f"3. verify        OK: trusted signer {verified.signer}, hashes match, model loads, samples reproduced")

    tampered = data_dir / "pump-health-1.0.0-tampered.mlpkg"
    _tampered_copy(package, tampered)
    try:
        verify_package(tampered, TrustStore.load(trust_dir))
    except PackageRejected as exc:
        print(f"4. tampered copy REJECTED as expected: {exc}")
    else:
        print("4. tampered copy was accepted: this is a bug, please report it")
        return 1
    print(f"\nNext: 'modelline package inspect {package}' shows everything inside the package.")
    return 0
