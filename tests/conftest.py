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
    files: KeyFiles
    private_key: Ed25519PrivateKey
    trust_dir: Path

    @property
    def trust(self) -> TrustStore:
        return TrustStore.load(self.trust_dir)


def _signer(root: Path, name: str) -> Signer:
    files = generate_key_pair(root / f"{name}-keys", name=name)
    trust_dir = root / f"{name}-trust"
    trust_dir.mkdir()
    (trust_dir / files.public_path.name).write_bytes(files.public_path.read_bytes())
    return Signer(files, load_private_key(files.private_path), trust_dir)


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
    """Build a package of the example model; keyword arguments override the defaults."""

    def _build(out: Path | None = None, **kwargs: object) -> BuildResult:
        options: dict[str, object] = {
            "name": "pump-health",
            "version": "1.0.0",
            "spec": PackageSpec.load(example / "spec.toml"),
            "private_key": signer.private_key,
        }
        options.update(kwargs)
        return build_package(example / "model.onnx", out or tmp_path / "pump-health.mlpkg", **options)  # type: ignore[arg-type]

    return _build


@pytest.fixture
def package(build: Callable[..., BuildResult]) -> Path:
    """A signed package of the example model."""
    return build().path


def read_members(path: Path) -> dict[str, bytes]:
    """Every entry of a zip, by name, in order."""
    with zipfile.ZipFile(path) as zf:
        return {info.filename: zf.read(info) for info in zf.infolist()}


def write_members(path: Path, members: list[tuple[str | zipfile.ZipInfo, bytes]]) -> Path:
    """Write a zip exactly as given (no safety checks: tests craft hostile archives with it)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members:
            zf.writestr(name, data)
    return path


INTEROP = Path(__file__).parent / "interop"


@pytest.fixture(scope="session")
def node_opcua() -> Path:
    """The interop folder, with node-opcua installed; fails (not skips) when it is missing."""
    if shutil.which("node") is None:
        pytest.fail("Node.js is not installed: the interop tests need it (see README, Development)")
    if not (INTEROP / "node_modules" / "node-opcua-client").is_dir():
        pytest.fail("node-opcua is not installed: run 'npm ci --prefix tests/interop' (the README test command does)")
    return INTEROP
