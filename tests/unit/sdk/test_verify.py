"""Every reason a package is refused, each with its own error and a one-line reason."""

from __future__ import annotations

import json
import stat
import zipfile
from pathlib import Path

import pytest

from sdk import errors
from sdk.package.archive import Limits
from sdk.package.manifest import MANIFEST_NAME, SIGNATURE_NAME
from sdk.package.signature import sign_manifest
from sdk.package.verify import verify_package
from tests.conftest import Signer, read_members, write_members
from tests.readme import assert_documented


@pytest.fixture
def package(legacy_package: Path) -> Path:
    """These checks are those of the deprecated flat .mlpkg (test_verify_dipkg.py: the DI layout)."""
    return legacy_package


def _flip_last_byte(data: bytes) -> bytes:
    return data[:-1] + bytes([data[-1] ^ 0x01])


def _resigned(package: Path, out: Path, signer: Signer, edit: object) -> Path:
    """A copy whose manifest was edited by ``edit(dict)`` and then validly signed again."""
    members = read_members(package)
    manifest = json.loads(members[MANIFEST_NAME])
    edit(manifest)  # type: ignore[operator]
    manifest_bytes = json.dumps(manifest, indent=2).encode()
    members[MANIFEST_NAME] = manifest_bytes
    members[SIGNATURE_NAME] = sign_manifest(manifest_bytes, signer.private_key).to_bytes()
    return write_members(out, list(members.items()))


def _reject(path: Path, signer: Signer, error: type[errors.PackageRejected], match: str, **kw: object) -> str:
    with pytest.raises(error, match=match) as info:
        verify_package(path, signer.trust, **kw)  # type: ignore[arg-type]
    assert "\n" not in str(info.value)
    return str(info.value)


def test_valid_package_verifies_and_reports_signer_and_digest(package: Path, signer: Signer) -> None:
    verified = verify_package(package, signer.trust)
    assert verified.signer == signer.files.key_id
    assert verified.manifest.name == "pump-health"
    assert len(verified.sha256) == 64
    assert verified.size == package.stat().st_size


def test_kept_files_live_in_a_private_folder(package: Path, signer: Signer, tmp_path: Path) -> None:
    into = tmp_path / "slot" / "current"
    verified = verify_package(package, signer.trust, into=into)
    assert verified.model_path.is_file()
    assert stat.S_IMODE(into.stat().st_mode) == 0o700
    assert sorted(p.name for p in into.iterdir()) == ["model.onnx"]


def test_tampered_model_byte(package: Path, signer: Signer, tmp_path: Path) -> None:
    members = read_members(package)
    members["model.onnx"] = _flip_last_byte(members["model.onnx"])
    bad = write_members(tmp_path / "bad.mlpkg", list(members.items()))
    message = _reject(bad, signer, errors.FileMismatch, r"'model.onnx' does not match its SHA-256")
    assert_documented(message, "(changed after signing)")


def test_tampered_manifest_byte(package: Path, signer: Signer, tmp_path: Path) -> None:
    members = read_members(package)
    members[MANIFEST_NAME] = members[MANIFEST_NAME].replace(b'"1.0.0"', b'"1.0.1"', 1)
    bad = write_members(tmp_path / "bad.mlpkg", list(members.items()))
    _reject(bad, signer, errors.SignatureInvalid, "signature does not match the manifest")


def test_signature_swapped_from_another_package(build: object, package: Path, signer: Signer, tmp_path: Path) -> None:
    other = build(tmp_path / "v2.mlpkg", version="2.0.0", private_key=signer.private_key)  # type: ignore[operator]
    members = read_members(package)
    members[SIGNATURE_NAME] = read_members(other.path)[SIGNATURE_NAME]
    bad = write_members(tmp_path / "bad.mlpkg", list(members.items()))
    _reject(bad, signer, errors.SignatureInvalid, "signature does not match the manifest")


def test_malformed_signature_file(package: Path, signer: Signer, tmp_path: Path) -> None:
    members = read_members(package)
    members[SIGNATURE_NAME] = b'{"key_id": 5}'
    bad = write_members(tmp_path / "bad.mlpkg", list(members.items()))
    _reject(bad, signer, errors.SignatureInvalid, "signature.json is malformed")


def test_untrusted_key(build: object, other_signer: Signer, signer: Signer, tmp_path: Path) -> None:
    foreign = build(tmp_path / "foreign.mlpkg", private_key=other_signer.private_key)  # type: ignore[operator]
    _reject(
        foreign.path, signer, errors.UntrustedKey, f"key {other_signer.files.key_id}, which is not in the trust store"
    )


def test_missing_signature(build: object, signer: Signer, tmp_path: Path) -> None:
    unsigned = build(tmp_path / "unsigned.uadipkg", identity=None)  # type: ignore[operator]
    _reject(unsigned.path, signer, errors.SignatureMissing, "not signed")


def test_extra_file(package: Path, signer: Signer, tmp_path: Path) -> None:
    members = list(read_members(package).items()) + [("payload.sh", b"#!/bin/sh\n")]
    bad = write_members(tmp_path / "bad.mlpkg", members)
    _reject(bad, signer, errors.FileMismatch, "'payload.sh' is in the package but not in the manifest")


def test_missing_file(package: Path, signer: Signer, tmp_path: Path) -> None:
    members = [(n, d) for n, d in read_members(package).items() if n != "model.onnx"]
    bad = write_members(tmp_path / "bad.mlpkg", members)
    _reject(bad, signer, errors.FileMismatch, "'model.onnx' is in the manifest but not in the package")


def test_size_mismatch(package: Path, signer: Signer, tmp_path: Path) -> None:
    members = read_members(package)
    members["model.onnx"] += b"\x00"
    bad = write_members(tmp_path / "bad.mlpkg", list(members.items()))
    _reject(bad, signer, errors.FileMismatch, r"'model.onnx' is \d+ bytes, the manifest says \d+")


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("../evil.onnx", "parent folder reference"),
        ("/etc/cron.d/evil", "absolute path"),
        ("C:\\evil.onnx", "absolute path"),
        ("nested/model.onnx", "no folders"),
    ],
)
def test_zip_slip_entries(package: Path, signer: Signer, tmp_path: Path, name: str, reason: str) -> None:
    members = list(read_members(package).items()) + [(name, b"x")]
    bad = write_members(tmp_path / "bad.mlpkg", members)
    message = _reject(bad, signer, errors.UnsafeArchiveEntry, reason)
    if name == "../evil.onnx":
        assert_documented(message, "unsafe entry")
    assert not (tmp_path.parent / "evil.onnx").exists()


def test_symlink_entry(package: Path, signer: Signer, tmp_path: Path) -> None:
    link = zipfile.ZipInfo("model-link.onnx")
    link.create_system = 3
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    members = list(read_members(package).items()) + [(link, b"/etc/passwd")]
    bad = write_members(tmp_path / "bad.mlpkg", members)
    _reject(bad, signer, errors.UnsafeArchiveEntry, "symbolic link")


def test_duplicate_entry(package: Path, signer: Signer, tmp_path: Path) -> None:
    members = list(read_members(package).items())
    members.append(("model.onnx", b"a second model.onnx that a naive extractor would let win"))
    with pytest.warns(UserWarning, match="Duplicate name"):
        bad = write_members(tmp_path / "bad.mlpkg", members)
    _reject(bad, signer, errors.UnsafeArchiveEntry, "duplicate name")


def test_zip_bomb_ratio(package: Path, signer: Signer, tmp_path: Path) -> None:
    members = list(read_members(package).items()) + [("zeros.bin", bytes(64 << 20))]
    bad = write_members(tmp_path / "bomb.mlpkg", members)
    assert bad.stat().st_size < 1 << 20
    message = _reject(bad, signer, errors.ArchiveTooLarge, "compressed .*:1, over the 100:1 limit")
    assert_documented(message, "zip bomb guard")


def test_oversized_entry(package: Path, signer: Signer, tmp_path: Path) -> None:
    members = read_members(package)
    limits = Limits(max_entry_size=len(members["model.onnx"]) - 1)
    _reject(package, signer, errors.ArchiveTooLarge, "over the .* limit", limits=limits)


def test_not_a_zip(signer: Signer, tmp_path: Path) -> None:
    junk = tmp_path / "junk.mlpkg"
    junk.write_bytes(b"this is not a zip archive" * 10)
    _reject(junk, signer, errors.NotAPackage, "not a zip archive")


def test_manifest_schema_error_even_when_signed(package: Path, signer: Signer, tmp_path: Path) -> None:
    bad = _resigned(package, tmp_path / "bad.mlpkg", signer, lambda m: m.update(version="one"))
    message = _reject(bad, signer, errors.ManifestInvalid, r"manifest.json is invalid \(version: .*semantic version")
    assert_documented(message, "manifest.json is invalid")


def test_model_onnxruntime_cannot_load(package: Path, signer: Signer, tmp_path: Path) -> None:
    junk = b"\x08\x07garbage that is no ONNX protobuf"
    import hashlib

    def edit(manifest: dict) -> None:
        manifest["files"][0].update(size=len(junk), sha256=hashlib.sha256(junk).hexdigest())

    bad = _resigned(package, tmp_path / "bad.mlpkg", signer, edit)
    members = read_members(bad)
    members["model.onnx"] = junk
    write_members(bad, list(members.items()))
    message = _reject(bad, signer, errors.ModelLoadFailed, "onnxruntime cannot load model.onnx")
    assert_documented(message, "onnxruntime cannot load")


def test_interface_differs_from_manifest(package: Path, signer: Signer, tmp_path: Path) -> None:
    bad = _resigned(package, tmp_path / "bad.mlpkg", signer, lambda m: m["outputs"][0].update(name="health"))
    message = _reject(
        bad, signer, errors.InterfaceMismatch, "model outputs are .*anomaly_score.* the manifest says .*health"
    )
    assert_documented(message, "model outputs are")


def test_sample_outputs_do_not_reproduce(package: Path, signer: Signer, tmp_path: Path) -> None:
    def edit(manifest: dict) -> None:
        manifest["samples"][1]["outputs"]["remaining_life"] = [[123456.0]]

    bad = _resigned(package, tmp_path / "bad.mlpkg", signer, edit)
    message = _reject(bad, signer, errors.SampleMismatch, "sample 2, output 'remaining_life': differs by up to")
    assert_documented(message, "model does not reproduce its samples: sample")
    verify_package(bad, signer.trust, run_samples=False)  # everything else about it is fine


def test_nothing_left_behind_on_rejection(package: Path, signer: Signer, tmp_path: Path) -> None:
    members = read_members(package)
    members["model.onnx"] = _flip_last_byte(members["model.onnx"])
    bad = write_members(tmp_path / "bad.mlpkg", list(members.items()))
    into = tmp_path / "slot" / "pending"
    with pytest.raises(errors.FileMismatch):
        verify_package(bad, signer.trust, into=into)
    assert not into.exists()
