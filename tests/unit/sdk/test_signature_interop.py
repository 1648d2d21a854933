"""The signature format is plain Ed25519 over manifest.json: checkable without ModelLine."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import Signer, read_members

# openssl is part of the Debian base system this project targets; without it there is nothing to compare with.
pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl command not installed")


@pytest.fixture
def package(legacy_package: Path) -> Path:
    """These checks are those of the deprecated flat .mlpkg (test_verify_dipkg.py: the DI layout)."""
    return legacy_package


def _openssl_verify(pub: Path, manifest: Path, sig: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            "openssl",
            "pkeyutl",
            "-verify",
            "-pubin",
            "-inkey",
            str(pub),
            "-rawin",
            "-in",
            str(manifest),
            "-sigfile",
            str(sig),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_openssl_verifies_the_manifest_signature(package: Path, signer: Signer, tmp_path: Path) -> None:
    members = read_members(package)
    manifest = tmp_path / "manifest.json"
    manifest.write_bytes(members["manifest.json"])
    sig = tmp_path / "sig.bin"
    sig.write_bytes(base64.b64decode(json.loads(members["signature.json"])["signature"]))

    done = _openssl_verify(signer.files.public_path, manifest, sig)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Signature Verified Successfully" in done.stdout

    manifest.write_bytes(members["manifest.json"].replace(b"pump-health", b"pump-hea1th", 1))
    assert _openssl_verify(signer.files.public_path, manifest, sig).returncode != 0
