"""Fixtures shared by every test: the example model, keys, trust stores and built packages."""

from __future__ import annotations

import os
import shutil
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sdk.certs import SigningIdentity, generate_identity, load_identity
from sdk.examples import example_dir
from sdk.keys import KeyFiles, TrustStore, generate_key_pair, load_private_key
from sdk.package.build import BuildResult, build_package
from sdk.package.spec import PackageSpec


def pytest_configure(config: pytest.Config) -> None:
    """No test may reach past loopback: boto3 must never ask the EC2 metadata address for credentials."""
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
        os.environ.pop(name, None)
    from tests.tls import use_for_cli

    use_for_cli()  # the CLI that tests run connects with a certificate the servers under test trust


@pytest.fixture(scope="session")
def example() -> Path:
    """examples/pump_health: model.onnx, spec.toml, training.csv."""
    return example_dir()


@dataclass(frozen=True)
class Signer:
    """An X.509 signing identity (self-signed, its certificate is the trusted root) and a legacy Ed25519 key."""

    files: KeyFiles
    private_key: Ed25519PrivateKey
    trust_dir: Path
    identity: SigningIdentity
    cert_path: Path
    key_path: Path

    @property
    def subject(self) -> str:
        return self.identity.certificate.subject.rfc4514_string()

    @property
    def trust(self) -> TrustStore:
        return TrustStore.load(self.trust_dir)


def _signer(root: Path, name: str) -> Signer:
    files = generate_key_pair(root / f"{name}-keys", name=name)
    ident = generate_identity(root / f"{name}-keys", f"{name}-cert", common_name=name, organization="Plant")
    assert ident.cert_path is not None
    trust_dir = root / f"{name}-trust"
    trust_dir.mkdir()
    (trust_dir / files.public_path.name).write_bytes(files.public_path.read_bytes())
    (trust_dir / ident.cert_path.name).write_bytes(ident.cert_path.read_bytes())
    identity = load_identity(ident.cert_path, ident.private_path)
    return Signer(files, load_private_key(files.private_path), trust_dir, identity, ident.cert_path, ident.private_path)


@pytest.fixture
def signer(tmp_path: Path) -> Signer:
    """A fresh key pair and a trust store holding its public key."""
    return _signer(tmp_path, "release")


@pytest.fixture
def other_signer(tmp_path: Path) -> Signer:
    """A second, unrelated key pair (not trusted by ``signer``'s trust store)."""
    return _signer(tmp_path, "stranger")


@pytest.fixture
def build(example: Path, signer: Signer, tmp_path: Path) -> Callable[..., BuildResult]:
    """Build a DI package of the example model; keyword arguments override the defaults.

    ``private_key=...`` builds a legacy .mlpkg instead (``private_key=None, identity=None``: unsigned).
    """

    def _build(out: Path | None = None, **kwargs: object) -> BuildResult:
        legacy = kwargs.get("private_key") is not None
        options: dict[str, object] = {
            "name": "pump-health",
            "version": "1.0.0",
            "spec": PackageSpec.load(example / "spec.toml"),
            "identity": None if legacy else signer.identity,
        }
        options.update(kwargs)
        default = tmp_path / ("pump-health.mlpkg" if legacy else "pump-health.uadipkg")
        return build_package(example / "model.onnx", out or default, **options)  # type: ignore[arg-type]

    return _build


@pytest.fixture
def package(build: Callable[..., BuildResult]) -> Path:
    """A signed DI package of the example model."""
    return build().path


@pytest.fixture
def legacy_package(build: Callable[..., BuildResult], signer: Signer) -> Path:
    """A signed legacy .mlpkg of the example model (deprecated format, still readable)."""
    return build(private_key=signer.private_key).path


def read_members(path: Path) -> dict[str, bytes]:
    """Every entry of a zip, by name, in order."""
    with zipfile.ZipFile(path) as zf:
        return {info.filename: zf.read(info) for info in zf.infolist()}


def write_members(path: Path, members: list[tuple[str | zipfile.ZipInfo, bytes]]) -> Path:
    """Write a zip exactly as given (no safety checks: tests craft hostile archives with it).

    A ``mimetype`` entry is stored, not deflated, as ASiC-E needs it.
    """
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members:
            stored = name == "mimetype"
            zf.writestr(name, data, compress_type=zipfile.ZIP_STORED if stored else None)
    return path


def resign_di(members: dict[str, bytes], identity: SigningIdentity) -> dict[str, bytes]:
    """A DI package's members with the author's ASiCManifest and signature made anew over them (valid again)."""
    from datetime import UTC, datetime

    from sdk.package import asic
    from sdk.package.build import signature_entries

    data = {n: d for n, d in members.items() if n != asic.MIMETYPE_NAME and not n.startswith(asic.META_INF)}
    entries = signature_entries({n: asic.sha256(d) for n, d in data.items()}, identity, 1, datetime.now(UTC))
    signed = {n: d for n, d in entries if isinstance(d, bytes)}
    return {asic.MIMETYPE_NAME: asic.MIMETYPE, **data, **signed}


INTEROP = Path(__file__).parent / "interop"


@pytest.fixture(scope="session")
def node_opcua() -> Path:
    """The interop folder, with node-opcua installed; fails (not skips) when it is missing."""
    if shutil.which("node") is None:
        pytest.fail("Node.js is not installed: the interop tests need it (see README, Development)")
    if not (INTEROP / "node_modules" / "node-opcua-client").is_dir():
        pytest.fail("node-opcua is not installed: run 'npm ci --prefix tests/interop' (the README test command does)")
    return INTEROP
