"""Adding an approval signature to a DI package, and converting a legacy .mlpkg into one.

An approval is one more ASiCManifest + CAdES signature pair in META-INF (ETSI EN
319 162-1 §4.4.3.2: an ASiC-E container may hold several signatures, each over its
own ASiCManifest). The approver's manifest lists every file and the author's
manifest and signature, so it endorses the package as the author signed it. No
existing entry is changed: the author's signature stays valid byte for byte
(OPC 10000-100 §8.7.4 foresees this author + approver signing).
"""

from __future__ import annotations

import shutil
from datetime import datetime
from pathlib import Path

from sdk.certs import SigningIdentity
from sdk.errors import NotAPackage, SignatureMissing
from sdk.keys import TrustStore
from sdk.package import asic
from sdk.package.archive import PackageArchive, private_dir, sha256_file, write_package
from sdk.package.build import BuildResult, signature_entries, utc_now, write_di_package
from sdk.package.verify import read_package, verify_package
from sdk.package.verify_di import check_container, read_signatures

_AUTHOR = frozenset({asic.manifest_name(asic.AUTHOR_NUMBER), asic.signature_name(asic.AUTHOR_NUMBER)})


def approve_package(
    path: Path,
    identity: SigningIdentity,
    out_path: Path,
    *,
    trust: TrustStore | None = None,
    signing_time: datetime | None = None,
) -> int:
    """Write ``out_path``: the package plus an approval signature; returns its number.

    With ``trust``, the package is first verified in full (the author must be trusted).
    """
    if trust is not None:
        verify_package(path, trust, run_samples=True)
    staging = private_dir()
    try:
        with PackageArchive(path) as archive:
            if not archive.is_di:
                raise NotAPackage("only DI packages (.uadipkg) take approvals: convert the .mlpkg first")
            check_container(archive)
            entries = read_signatures(archive)
            if not entries:
                raise SignatureMissing("the package has no author signature to approve")
            order = archive.ordered_names
            members: list[tuple[str, bytes | Path]] = []
            digests: dict[str, bytes] = {}
            for index, name in enumerate(order):
                local = staging / f"{index:03d}"
                _, digest = archive.extract(name, staging, local.name)
                members.append((name, local.read_bytes() if name == asic.MIMETYPE_NAME else local))
                if name != asic.MIMETYPE_NAME and not (name.startswith(asic.META_INF) and name not in _AUTHOR):
                    digests[name] = bytes.fromhex(digest)
        number = max(e.number for e in entries) + 1
        members += signature_entries(digests, identity, number, signing_time or utc_now())
        write_package(out_path, members, stored=[asic.MIMETYPE_NAME])
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return number


def convert_package(
    path: Path,
    identity: SigningIdentity,
    out_path: Path,
    *,
    trust: TrustStore | None = None,
    signing_time: datetime | None = None,
) -> BuildResult:
    """Re-package a legacy .mlpkg as a DI package signed by ``identity``.

    With ``trust`` the old package is verified first; without it, only read (the
    new signer vouches for it).
    """
    info = read_package(path)
    if not info.legacy:
        raise NotAPackage(f"{path.name} is already a DI package")
    staging = private_dir()
    try:
        if trust is not None:
            verify_package(path, trust, into=staging / "files")
            files = staging / "files"
        else:
            files = staging
            with PackageArchive(path) as archive:
                for entry in info.manifest.files:
                    archive.extract(entry.path, files)
        for entry in info.manifest.files:
            if sha256_file(files / entry.path)[1] != entry.sha256:
                raise NotAPackage(f"{entry.path} does not match the manifest of {path.name}")
        content = {entry.path: files / entry.path for entry in info.manifest.files}
        return write_di_package(out_path, info.manifest, content, identity, signing_time=signing_time or utc_now())
    finally:
        shutil.rmtree(staging, ignore_errors=True)
