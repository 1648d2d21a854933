"""Finding the ONNX model inside a downloaded artifact (a bare .onnx, or SageMaker's model.tar.gz).

A tar archive from the cloud is not trusted: only regular files are read, names
with absolute paths or '..' are refused, sizes are bounded, and only the one
chosen model file is written, into the caller's private folder.
"""

from __future__ import annotations

import tarfile
from pathlib import Path, PurePosixPath

from sdk.errors import ArchiveTooLarge, BuildError, NotFound, UnsafeArchiveEntry
from sdk.package.archive import DEFAULT_LIMITS

_CHUNK = 1 << 20


def _clean(name: str) -> str:
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts:
        raise UnsafeArchiveEntry(f"unsafe entry {name!r} in the model archive")
    return str(PurePosixPath(*[p for p in path.parts if p != "."]))


def extract_model(artifact: Path, dest_dir: Path, model_file: str | None = None, source: str = "") -> Path:
    """Path of the ONNX model: the artifact itself, or the one file taken out of its tar archive."""
    where = source or artifact.name
    if not tarfile.is_tarfile(artifact):
        if model_file:
            raise BuildError(f"{where} is not a tar archive, so --model-file {model_file!r} cannot apply")
        return artifact
    with tarfile.open(artifact, mode="r:*") as tar:
        members = {}
        for member in tar:
            if member.isfile():
                members[_clean(member.name)] = member
        if model_file is not None:
            wanted = _clean(model_file)
            if wanted not in members:
                raise NotFound(
                    f"{where} has no file {model_file!r}; it holds: {', '.join(sorted(members)) or 'nothing'}"
                )
        else:
            candidates = sorted(n for n in members if n.lower().endswith(".onnx"))
            if not candidates:
                raise NotFound(
                    f"no ONNX model (*.onnx) inside {where}; it holds: {', '.join(sorted(members)) or 'nothing'}"
                )
            if len(candidates) > 1:
                raise BuildError(
                    f"{where} holds several ONNX models ({', '.join(candidates)}): choose one with --model-file"
                )
            wanted = candidates[0]
        member = members[wanted]
        if member.size > DEFAULT_LIMITS.max_entry_size:
            raise ArchiveTooLarge(
                f"{wanted} in {where} is {member.size} bytes, over the {DEFAULT_LIMITS.max_entry_size} limit"
            )
        src = tar.extractfile(member)
        if src is None:
            raise BuildError(f"cannot read {wanted} from {where}")
        target = dest_dir / PurePosixPath(wanted).name
        written = 0
        with src, open(target, "xb") as dst:
            while chunk := src.read(_CHUNK):
                written += len(chunk)
                if written > member.size:
                    raise ArchiveTooLarge(f"{wanted} in {where} expands beyond its declared size")
                dst.write(chunk)
    return target
