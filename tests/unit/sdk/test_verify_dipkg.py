"""The DI Software Package (.uadipkg): schema, ASiC-E + CAdES signatures, trust, approval, and every refusal."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import stat
import subprocess
import zipfile
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jsonschema
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from sdk import errors
from sdk.certs import signing_certificate
from sdk.keys import TrustStore
from sdk.package import dipkg
from sdk.package.approve import approve_package, convert_package
from sdk.package.archive import Limits, sha256_file
from sdk.package.build import BuildResult
from sdk.package.stream import EntryTee, Received, StreamedEntry
from sdk.package.verify import read_package, verify_package
from tests.conftest import Signer, read_members, resign_di, write_members
from tests.pki import Pki
from tests.readme import assert_documented

MODEL = "CONTENT/model.onnx"
Build = Callable[..., BuildResult]


def _reject(path: Path, trust: TrustStore, error: type[errors.PackageRejected], match: str, **kw: object) -> str:
    with pytest.raises(error, match=match) as info:
        verify_package(path, trust, **kw)  # type: ignore[arg-type]
    assert "\n" not in str(info.value)
    return str(info.value)


def _edited(package: Path, out: Path, signer: Signer, name: str, edit: Callable[[dict], None]) -> Path:
    members = read_members(package)
    doc = json.loads(members[name])
    edit(doc)
    members[name] = json.dumps(doc, indent=2).encode()
    return write_members(out, list(resign_di(members, signer.identity).items()))


# --- the format ------------------------------------------------------------------------------------------


def test_layout_and_metadata_validate_against_the_di_schema(package: Path, signer: Signer) -> None:
    with zipfile.ZipFile(package) as zf:
        infos = zf.infolist()
    assert infos[0].filename == "mimetype" and infos[0].compress_type == zipfile.ZIP_STORED and not infos[0].extra
    assert {i.filename for i in infos} == {
        "mimetype",
        "META/package_metadata.json",
        "CONTENT/manifest.json",
        "CONTENT/model.onnx",
        "SUPPLEMENT/model_card.md",
        "META-INF/ASiCManifest001.xml",
        "META-INF/signature001.p7s",
    }
    members = read_members(package)
    assert members["mimetype"] == b"application/vnd.etsi.asic-e+zip"
    metadata = json.loads(members["META/package_metadata.json"])
    schema = dipkg.metadata_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(metadata, schema, format_checker=jsonschema.FormatChecker())
    assert metadata["Name"] == "pump-health" and metadata["PackageRevision"] == "1.0.0"
    assert metadata["PackageType"] == 1 and metadata["Manufacturer"] == "Plant"  # Application; the cert's O
    # The schema is not a rubber stamp: a file missing a mandatory field or with an unknown one fails it.
    for broken in ({k: v for k, v in metadata.items() if k != "ManufacturerUri"}, {**metadata, "Extra": 1}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(broken, schema)


def test_model_card_says_what_the_model_does(package: Path, signer: Signer) -> None:
    card = read_members(package)["SUPPLEMENT/model_card.md"].decode()
    assert card.startswith("# pump-health 1.0.0\n")
    assert "| discharge_pressure |" in card and "| bar |" in card  # inputs with units
    assert "| remaining_life |" in card and "| h |" in card  # outputs with units
    assert f"Signed by {signer.subject}" in card and "## Provenance" in card and "## Metrics" in card


def test_valid_package_verifies_with_signer_and_signatures(package: Path, signer: Signer) -> None:
    verified = verify_package(package, signer.trust)
    assert verified.signer == signer.subject and not verified.legacy
    assert verified.metadata is not None and verified.metadata.software_revision == "1.0.0"
    (author,) = verified.signatures
    assert (author.role, author.trusted, author.chain) == ("author", True, (signer.subject,))


def test_kept_files_are_flat_in_a_private_folder(package: Path, signer: Signer, tmp_path: Path) -> None:
    into = tmp_path / "slot" / "current"
    verified = verify_package(package, signer.trust, into=into)
    assert verified.model_path == into / "model.onnx" and verified.model_path.is_file()
    assert stat.S_IMODE(into.stat().st_mode) == 0o700


# --- standard tools ---------------------------------------------------------------------------------------


def _openssl(*args: str) -> subprocess.CompletedProcess[str]:
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed (apt-get install openssl)")
    return subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=60, check=False)


def _unzip(package: Path, into: Path) -> Path:
    with zipfile.ZipFile(package) as zf:
        zf.extractall(into)
    return into


def _cms_verify(folder: Path, root: Path) -> subprocess.CompletedProcess[str]:
    """The README's command: check the CAdES signature over the ASiCManifest with the root certificate."""
    return _openssl(
        "cms", "-verify", "-binary", "-inform", "DER", "-purpose", "any",
        "-in", str(folder / "META-INF/signature001.p7s"),
        "-content", str(folder / "META-INF/ASiCManifest001.xml"),
        "-CAfile", str(root), "-out", "/dev/null",
    )  # fmt: skip


def _digests_match(folder: Path) -> bool:
    """The README's second step: each file's SHA-256 (openssl dgst) equals its DigestValue in the ASiCManifest."""
    text = (folder / "META-INF/ASiCManifest001.xml").read_text()
    refs = re.findall(r'URI="([^"]+)" MimeType="[^"]*">\s*<ds:DigestMethod[^>]*/>\s*<ds:DigestValue>([^<]+)<', text)
    assert len(refs) == 4
    for name, value in refs:
        digest = _openssl("dgst", "-sha256", "-binary", "-out", str(folder / "d.bin"), str(folder / name))
        assert digest.returncode == 0, digest.stderr
        if base64.b64encode((folder / "d.bin").read_bytes()).decode() != value:
            return False
    return True


def test_openssl_cms_verify_accepts_and_rejects_after_changes(package: Path, signer: Signer, tmp_path: Path) -> None:
    good = _unzip(package, tmp_path / "good")
    done = _cms_verify(good, signer.cert_path)
    assert done.returncode == 0 and "Verification successful" in done.stderr
    assert _digests_match(good)

    stranger = signing_certificate(
        signer.identity.certificate.subject, ec.generate_private_key(ec.SECP256R1()).public_key(),
        signer.identity.certificate.subject, ec.generate_private_key(ec.SECP256R1()),
    )  # fmt: skip
    (tmp_path / "stranger.pem").write_bytes(stranger.public_bytes(serialization.Encoding.PEM))
    assert _cms_verify(good, tmp_path / "stranger.pem").returncode != 0  # another root: refused

    changed_manifest = _unzip(package, tmp_path / "m")
    xml = changed_manifest / "META-INF/ASiCManifest001.xml"
    xml.write_bytes(xml.read_bytes().replace(b"<ds:DigestValue>", b"<ds:DigestValue>A", 1))
    assert _cms_verify(changed_manifest, signer.cert_path).returncode != 0

    for name in ("CONTENT/model.onnx", "META/package_metadata.json", "SUPPLEMENT/model_card.md"):
        changed = _unzip(package, tmp_path / name.replace("/", "_"))
        target = changed / name
        target.write_bytes(target.read_bytes()[:-1] + bytes([target.read_bytes()[-1] ^ 1]))
        assert _cms_verify(changed, signer.cert_path).returncode == 0  # the manifest is still signed...
        assert not _digests_match(changed), name  # ...and the changed file no longer matches its digest


# --- trust: chains, expiry, revocation, approval ----------------------------------------------------------


def test_ca_issued_signer_verifies_and_revocation_refuses_it(build: Build, tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    author = pki.issue("Model author")
    pkg = build(tmp_path / "p.uadipkg", identity=author).path
    verified = verify_package(pkg, pki.trust)
    assert verified.signatures[0].chain == ("CN=Model author", "CN=Plant CA")

    pki.revoke(author.certificate)
    message = _reject(pkg, pki.trust, errors.SignerRevoked, r"CN=Model author \(serial [0-9a-f]+\) was revoked on ")
    assert "by CN=Plant CA" in message


def test_a_crl_of_another_ca_revokes_nothing(build: Build, tmp_path: Path) -> None:
    pki, other = Pki(tmp_path), Pki(tmp_path, "Other CA")
    author = pki.issue("Model author")
    pkg = build(tmp_path / "p.uadipkg", identity=author).path
    forged = other.issue("x")
    other.revoke(author.certificate, forged.certificate)  # same serial listed, but signed by the wrong CA
    shutil.copy(other.folder / "plant.crl", pki.folder / "other.crl")
    verify_package(pkg, pki.trust)


def test_expired_signer_is_refused(build: Build, tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    old = pki.issue("Old author", not_before=datetime.now(UTC) - timedelta(days=400), days=30)
    pkg = build(tmp_path / "p.uadipkg", identity=old).path
    _reject(pkg, pki.trust, errors.SignerExpired, r"CN=Old author was not valid at signing time .* \(valid ")


def test_untrusted_chain_is_refused(build: Build, other_signer: Signer, signer: Signer, tmp_path: Path) -> None:
    pkg = build(tmp_path / "p.uadipkg", identity=other_signer.identity).path
    _reject(pkg, signer.trust, errors.UntrustedKey, r"signer O=Plant,CN=stranger does not chain to a trusted root")
    pki = Pki(tmp_path)  # a trust store with only certificates of another hierarchy
    _reject(pkg, pki.trust, errors.UntrustedKey, r"trusted roots: CN=Plant CA")


def test_several_roots_at_once(build: Build, signer: Signer, other_signer: Signer, tmp_path: Path) -> None:
    both = tmp_path / "both"
    both.mkdir()
    shutil.copy(signer.cert_path, both / "old-root.pem")
    shutil.copy(other_signer.cert_path, both / "new-root.pem")
    for who in (signer, other_signer):
        pkg = build(tmp_path / f"{who.subject}.uadipkg", identity=who.identity).path
        assert verify_package(pkg, TrustStore.load(both)).signer == who.subject


def test_approval_required_refuses_author_only_and_accepts_after_approve(
    package: Path, signer: Signer, tmp_path: Path
) -> None:
    plant = Pki(tmp_path, "Plant approvals")
    required = signer.trust.requiring_approval(plant.trust)
    message = _reject(package, required, errors.ApprovalMissing, "approval required and not given: the package")

    approved = tmp_path / "approved.uadipkg"
    assert approve_package(package, plant.issue("Plant OT security"), approved, trust=signer.trust) == 2
    verified = verify_package(approved, required)
    assert [(s.role, s.subject, s.trusted) for s in verified.signatures] == [
        ("author", signer.subject, True),
        ("approver", "CN=Plant OT security", True),
    ]
    # The author's signature is untouched, byte for byte: openssl and the author-only policy still accept it.
    before, after = read_members(package), read_members(approved)
    assert all(after[name] == data for name, data in before.items())
    verify_package(approved, signer.trust)
    assert "approval" in message

    # An approval by someone outside the approval hierarchy does not count.
    rogue = tmp_path / "rogue.uadipkg"
    approve_package(package, Pki(tmp_path, "Rogue CA").issue("Rogue"), rogue)
    _reject(rogue, required, errors.ApprovalMissing, r"approval 002: signer CN=Rogue does not chain")
    # A revoked approver no longer approves.
    plant.revoke(verified_approver_cert(approved))
    _reject(approved, signer.trust.requiring_approval(plant.trust), errors.ApprovalMissing, "was revoked")


def verified_approver_cert(path: Path) -> x509.Certificate:
    from sdk.package.archive import PackageArchive
    from sdk.package.verify_di import read_signatures

    with PackageArchive(path) as archive:
        return read_signatures(archive)[1].signer.certificate


def test_approval_covers_the_authors_signature(package: Path, signer: Signer, tmp_path: Path) -> None:
    plant = Pki(tmp_path)
    approved = tmp_path / "approved.uadipkg"
    approve_package(package, plant.issue("Approver"), approved)
    members = read_members(approved)
    members = {**resign_di(members, signer.identity), **{k: v for k, v in members.items() if "002" in k}}
    bad = write_members(tmp_path / "bad.uadipkg", list(members.items()))  # author re-signed after approval
    _reject(bad, signer.trust, errors.FileMismatch, "does not match its signed digest")


def test_legacy_package_converts_to_di(legacy_package: Path, signer: Signer, tmp_path: Path) -> None:
    assert read_package(legacy_package).legacy
    _reject(legacy_package, signer.trust.requiring_approval(signer.trust), errors.ApprovalMissing, "legacy .mlpkg")
    new = convert_package(legacy_package, signer.identity, tmp_path / "new.uadipkg", trust=signer.trust)
    verified = verify_package(new.path, signer.trust)
    assert verified.manifest == read_package(legacy_package).manifest and not verified.legacy


# --- every refusal, on the DI layout ----------------------------------------------------------------------


def _flip(data: bytes) -> bytes:
    return data[:-1] + bytes([data[-1] ^ 0x01])


@pytest.mark.parametrize(
    ("name", "error", "match"),
    [
        (MODEL, errors.FileMismatch, "'model.onnx' does not match its SHA-256 in the manifest"),
        ("CONTENT/manifest.json", errors.FileMismatch, "'CONTENT/manifest.json' does not match its signed digest"),
        ("META/package_metadata.json", errors.FileMismatch, "package_metadata.json' does not match its signed"),
        ("SUPPLEMENT/model_card.md", errors.FileMismatch, "'SUPPLEMENT/model_card.md' does not match its signed"),
        ("META-INF/ASiCManifest001.xml", errors.SignatureInvalid, "changed after signing"),
        ("META-INF/signature001.p7s", errors.SignatureInvalid, "signature001.p7s"),
    ],
)
def test_any_changed_byte_is_refused(
    package: Path, signer: Signer, tmp_path: Path, name: str, error: type[errors.PackageRejected], match: str
) -> None:
    members = read_members(package)
    members[name] = _flip(members[name])
    if name.endswith(".xml"):  # keep it well-formed: change one digest character instead of the last byte
        xml = read_members(package)[name]
        at = xml.index(b"<ds:DigestValue>") + len(b"<ds:DigestValue>")
        members[name] = xml[:at] + (b"B" if xml[at : at + 1] == b"A" else b"A") + xml[at + 1 :]
    bad = write_members(tmp_path / "bad.uadipkg", list(members.items()))
    message = _reject(bad, signer.trust, error, match)
    if name.endswith(".xml"):
        assert_documented(message, "the signed manifest was changed after signing")


def test_signature_swapped_from_another_package(build: Build, package: Path, signer: Signer, tmp_path: Path) -> None:
    other = read_members(build(tmp_path / "v2.uadipkg", version="2.0.0").path)
    members = read_members(package)
    for name in ("META-INF/ASiCManifest001.xml", "META-INF/signature001.p7s"):
        members[name] = other[name]
    bad = write_members(tmp_path / "bad.uadipkg", list(members.items()))
    _reject(bad, signer.trust, errors.FileMismatch, "does not match its signed digest")


def test_unsigned_is_refused(build: Build, signer: Signer, tmp_path: Path) -> None:
    unsigned = build(tmp_path / "u.uadipkg", identity=None).path
    _reject(unsigned, signer.trust, errors.SignatureMissing, r"not signed \(no META-INF/ASiCManifest001.xml\)")


@pytest.mark.parametrize(
    ("extra", "error", "match"),
    [
        (
            "SUPPLEMENT/payload.sh",
            errors.FileMismatch,
            "'SUPPLEMENT/payload.sh' is in the package but not in the signed",
        ),
        ("CONTENT/other.onnx", errors.FileMismatch, "'CONTENT/other.onnx' is in the package but not in the signed"),
        ("META-INF/evil.sh", errors.FileMismatch, "neither an ASiCManifest nor a signature"),
        ("../evil.onnx", errors.UnsafeArchiveEntry, "parent folder reference"),
        ("CONTENT/../../evil", errors.UnsafeArchiveEntry, "parent folder reference"),
        ("/etc/cron.d/evil", errors.UnsafeArchiveEntry, "absolute path"),
        ("C:\\evil.onnx", errors.UnsafeArchiveEntry, "absolute path"),
        ("CONTENT/nested/model.onnx", errors.UnsafeArchiveEntry, "not a file of the DI package folders"),
        ("OTHER/model.onnx", errors.UnsafeArchiveEntry, "not a file of the DI package folders"),
        ("model.onnx", errors.UnsafeArchiveEntry, "not a file of the DI package folders"),
        ("SUPPLEMENT/.hidden", errors.UnsafeArchiveEntry, "hidden file"),
        ("CONTENT/", errors.UnsafeArchiveEntry, "no folder entries"),
    ],
)
def test_extra_or_unsafe_entries(
    package: Path, signer: Signer, tmp_path: Path, extra: str, error: type[errors.PackageRejected], match: str
) -> None:
    bad = write_members(tmp_path / "bad.uadipkg", [*read_members(package).items(), (extra, b"x")])
    message = _reject(bad, signer.trust, error, match)
    if extra == "SUPPLEMENT/payload.sh":
        assert_documented(message, "payload.sh")
    assert not (tmp_path.parent / "evil.onnx").exists()


def test_missing_file(package: Path, signer: Signer, tmp_path: Path) -> None:
    members = [(n, d) for n, d in read_members(package).items() if n != "SUPPLEMENT/model_card.md"]
    bad = write_members(tmp_path / "bad.uadipkg", members)
    _reject(bad, signer.trust, errors.FileMismatch, "'SUPPLEMENT/model_card.md' is in the signed ASiCManifest but not")


def test_mimetype_must_come_first_and_stored(package: Path, signer: Signer, tmp_path: Path) -> None:
    members = list(read_members(package).items())
    moved = write_members(tmp_path / "moved.uadipkg", [*members[1:], members[0]])
    _reject(moved, signer.trust, errors.NotAPackage, "'mimetype' must be the first entry, stored")
    deflated = tmp_path / "deflated.uadipkg"
    with zipfile.ZipFile(deflated, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members:
            zf.writestr(name, data)
    _reject(deflated, signer.trust, errors.NotAPackage, "'mimetype' must be the first entry, stored")


def test_symlink_entry(package: Path, signer: Signer, tmp_path: Path) -> None:
    link = zipfile.ZipInfo("SUPPLEMENT/link.md")
    link.create_system = 3
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    bad = write_members(tmp_path / "bad.uadipkg", [*read_members(package).items(), (link, b"/etc/passwd")])
    _reject(bad, signer.trust, errors.UnsafeArchiveEntry, "symbolic link")


def test_duplicate_entry(package: Path, signer: Signer, tmp_path: Path) -> None:
    members = [*read_members(package).items(), (MODEL, b"a second model that a naive extractor would let win")]
    with pytest.warns(UserWarning, match="Duplicate name"):
        bad = write_members(tmp_path / "bad.uadipkg", members)
    _reject(bad, signer.trust, errors.UnsafeArchiveEntry, "duplicate name")


def test_zip_bomb_and_oversized(package: Path, signer: Signer, tmp_path: Path) -> None:
    bomb = write_members(
        tmp_path / "bomb.uadipkg", [*read_members(package).items(), ("CONTENT/z.bin", bytes(64 << 20))]
    )
    _reject(bomb, signer.trust, errors.ArchiveTooLarge, "compressed .*:1, over the 100:1 limit")
    limits = Limits(max_entry_size=len(read_members(package)[MODEL]) - 1)
    _reject(package, signer.trust, errors.ArchiveTooLarge, "over the .* limit", limits=limits)


def test_metadata_schema_error_even_when_signed(package: Path, signer: Signer, tmp_path: Path) -> None:
    bad = _edited(package, tmp_path / "bad.uadipkg", signer, dipkg.METADATA_NAME, lambda m: m.pop("ManufacturerUri"))
    _reject(bad, signer.trust, errors.ManifestInvalid, "breaks the DI package metadata schema .*ManufacturerUri")
    other = _edited(package, tmp_path / "o.uadipkg", signer, dipkg.METADATA_NAME, lambda m: m.update(Name="x"))
    _reject(other, signer.trust, errors.ManifestInvalid, "names x 1.0.0, the manifest pump-health 1.0.0")


def test_manifest_and_model_checks_still_run(package: Path, signer: Signer, tmp_path: Path) -> None:
    bad = _edited(package, tmp_path / "v.uadipkg", signer, dipkg.MANIFEST_ENTRY, lambda m: m.update(version="one"))
    _reject(bad, signer.trust, errors.ManifestInvalid, r"manifest.json is invalid \(version: ")

    def edit(manifest: dict) -> None:
        manifest["samples"][1]["outputs"]["remaining_life"] = [[123456.0]]

    samples = _edited(package, tmp_path / "s.uadipkg", signer, dipkg.MANIFEST_ENTRY, edit)
    _reject(samples, signer.trust, errors.SampleMismatch, "sample 2, output 'remaining_life'")


def test_nothing_left_behind_on_rejection(package: Path, signer: Signer, tmp_path: Path) -> None:
    members = read_members(package)
    members[MODEL] = _flip(members[MODEL])
    bad = write_members(tmp_path / "bad.uadipkg", list(members.items()))
    into = tmp_path / "slot" / "pending"
    with pytest.raises(errors.FileMismatch):
        verify_package(bad, signer.trust, into=into)
    assert not into.exists()


def test_trust_refusals_as_the_command_prints_them(
    capsys: pytest.CaptureFixture[str], build: Build, tmp_path: Path
) -> None:
    from modelline.cli.main import main

    pki = Pki(tmp_path)
    revoked = pki.issue("Former author")
    expired = pki.issue("Old author", not_before=datetime.now(UTC) - timedelta(days=400), days=30)
    pki.revoke(revoked.certificate)
    errs = []
    for identity in (revoked, expired):
        pkg = build(tmp_path / "p.uadipkg", identity=identity).path
        assert main(["package", "verify", str(pkg), "--trust", str(pki.folder)]) == 3
        errs.append(capsys.readouterr().err)
        assert errs[-1].count("\n") == 1
    assert_documented(errs[0], "(serial …) was revoked")
    assert_documented(errs[0], "package rejected: signer certificate … was revoked on …")
    assert_documented(errs[1], "was not valid at signing time")


def test_a_stored_entry_whose_local_header_differs_is_refused(package: Path, signer: Signer, tmp_path: Path) -> None:
    """The stored model is read from its place in the file, not through zipfile: its local header must still
    agree with the central directory (a zip read one way by one tool and another way by another is refused)."""
    data = package.read_bytes()
    name = b"CONTENT/model.onnx"
    at = data.index(name)  # the local header's copy of the name comes first; the central directory's stays
    assert data[at - 30 : at - 26] == b"PK\x03\x04"
    bad = tmp_path / "bad.uadipkg"
    bad.write_bytes(data[:at] + b"CONTENT/modex.onnx" + data[at + len(name) :])
    _reject(bad, signer.trust, errors.NotAPackage, "local header differs")
    assert verify_package(package, signer.trust).sha256  # the package itself verifies


def _streamed(package: Path, folder: Path) -> tuple[Received, StreamedEntry]:
    """The package as a transfer receives it: fed to an EntryTee in pieces of uneven size."""
    tee = EntryTee(folder, min_copy=1)
    data = package.read_bytes()
    for start in range(0, len(data), 4099):
        tee.feed(data[start : start + 4099])
    tee.close()
    model = next(e for e in tee.entries if e.name == "CONTENT/model.onnx")
    return Received(sha256_file(package), tuple(tee.entries)), model


def test_the_model_copied_as_it_arrived_is_taken_not_read_again(package: Path, signer: Signer, tmp_path: Path) -> None:
    received, model = _streamed(package, tmp_path / "tee")
    assert model.copy is not None and model.copy.exists()
    verified = verify_package(package, signer.trust, into=tmp_path / "kept", received=received)
    assert not model.copy.exists()  # moved into place, not copied from the package again
    with zipfile.ZipFile(package) as zf:
        assert verified.model_path.read_bytes() == zf.read("CONTENT/model.onnx")
    assert verified.sha256 == received.digest.sha256


def test_a_copy_that_differs_from_the_signed_model_is_refused(package: Path, signer: Signer, tmp_path: Path) -> None:
    received, model = _streamed(package, tmp_path / "tee")
    assert model.copy is not None
    changed = _flip(model.copy.read_bytes())
    model.copy.write_bytes(changed)  # a hint that lies, with the hash of what it holds
    lying = StreamedEntry(model.header_offset, model.name, model.size, hashlib.sha256(changed).hexdigest(), model.copy)
    _reject(
        package,
        signer.trust,
        errors.FileMismatch,
        "changed after signing",
        received=Received(received.digest, (lying,)),
    )


def test_a_copy_that_names_another_place_is_not_taken(package: Path, signer: Signer, tmp_path: Path) -> None:
    received, model = _streamed(package, tmp_path / "tee")
    elsewhere = StreamedEntry(model.header_offset + 1, model.name, model.size, model.sha256, model.copy)
    verify_package(package, signer.trust, received=Received(received.digest, (elsewhere,)))
    assert model.copy is not None and model.copy.exists()  # the model was unpacked from the package instead
