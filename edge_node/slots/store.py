"""A model slot on disk: its packages and a small state file, written atomically.

    <data_dir>/slots/<slot>/state.json              which package is Current, Pending, Fallback
    <data_dir>/slots/<slot>/packages/<sha256>.mlpkg   each package exactly as transferred
    <data_dir>/slots/<slot>/work/                     temporary uploads and unpacked packages

The state file is replaced with write-to-temporary, fsync, rename, so a crash
leaves either the old or the new state, never a torn one.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sdk.binding import Binding
from sdk.errors import BAD_CONFIGURATION_ERROR, ModelLineError
from sdk.names import first_problem
from sdk.package.verify import PackageInfo

MANUFACTURER_URI_PREFIX = "urn:modelline:model:"
MAX_CONFIRMATION_TIMEOUT_S = 86_400.0  # a day: longer than any rollout waits, short enough to mean something


class InstalledVersion(BaseModel):
    """One package known to a slot: what DI shows as a SoftwareVersionType."""

    model_config = ConfigDict(frozen=True)

    name: str
    version: str
    sha256: str
    size: int
    signer: str
    created: datetime
    # From a DI package's META/package_metadata.json (OPC 10000-100 §8.7.3); None/empty for a legacy .mlpkg.
    package_manufacturer_uri: str | None = None
    manufacturer: str | None = None
    patch_identifiers: list[str] = Field(default_factory=list)

    @property
    def manufacturer_uri(self) -> str:
        """DI ManufacturerUri: the package metadata's, else one that identifies the model across versions."""
        return self.package_manufacturer_uri or MANUFACTURER_URI_PREFIX + self.name

    @classmethod
    def of(cls, info: PackageInfo, signer: str) -> InstalledVersion:
        """From a verified package; a DI package's metadata gives ManufacturerUri, Manufacturer, PatchIdentifiers."""
        m, meta = info.manifest, info.metadata
        return cls(
            name=m.name,
            version=m.version,
            sha256=info.sha256,
            size=info.size,
            signer=signer,
            created=m.created,
            package_manufacturer_uri=meta.manufacturer_uri if meta else None,
            manufacturer=meta.manufacturer if meta else None,
            patch_identifiers=meta.patch_identifiers if meta else [],
        )


class SlotSnapshot(BaseModel):
    """What an install changes, as it was before the install: restored exactly when the install reverts."""

    model_config = ConfigDict(frozen=True)

    current: InstalledVersion | None = None
    binding: Binding | None = None
    fallback: InstalledVersion | None = None
    fallback_binding: Binding | None = None


class SlotState(BaseModel):
    """Everything about a slot that must survive a restart.

    A binding is part of what an install changes: ``fallback_binding`` is the binding the Fallback
    version last ran with (a Rollback takes it back), and ``undo`` holds the Current, Fallback and
    bindings from before an install while that install waits for Confirm. Files written before
    these fields existed load with them empty (no snapshot: a revert then keeps the binding).
    """

    current: InstalledVersion | None = None
    pending: InstalledVersion | None = None
    fallback: InstalledVersion | None = None
    binding: Binding | None = None
    fallback_binding: Binding | None = None
    confirmation_timeout_s: float = Field(
        0.0,
        ge=0,
        le=MAX_CONFIRMATION_TIMEOUT_S,
        allow_inf_nan=False,
        description="DI ConfirmationTimeout in seconds; 0: no confirmation needed",
    )
    awaiting_confirmation: bool = False
    undo: SlotSnapshot | None = Field(None, description="The state before the install that waits for Confirm.")

    def snapshot(self) -> SlotSnapshot:
        """What an install would change, as it is now."""
        return SlotSnapshot(
            current=self.current, binding=self.binding, fallback=self.fallback, fallback_binding=self.fallback_binding
        )

    def referenced(self) -> set[str]:
        """Digests of every package this state may still serve: kept when the store is pruned."""
        undo = self.undo or SlotSnapshot()
        versions = (self.current, self.pending, self.fallback, undo.current, undo.fallback)
        return {v.sha256 for v in versions if v is not None}

    def updated(self, **changes: Any) -> SlotState:
        """A copy with ``changes``, validated as the state file will be read back (ValidationError if not)."""
        return SlotState.model_validate({**self.model_dump(), **changes})


class StateUnreadable(ModelLineError):
    """The slot's state file cannot be read back; it was moved aside and the slot starts empty."""

    status = BAD_CONFIGURATION_ERROR


class SlotStore:
    """Files of one slot."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.packages = root / "packages"
        self.work = root / "work"
        for folder in (self.root, self.packages, self.work):
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)

    @property
    def state_path(self) -> Path:
        """The state file."""
        return self.root / "state.json"

    def load_state(self) -> SlotState:
        """The saved state, or an empty slot (blocking).

        A state file that does not validate is moved aside to ``state.unreadable-<time>.json``
        (kept for a person to look at, not lost) and StateUnreadable raised, so the node
        starts with this slot empty instead of not at all.
        """
        if not self.state_path.exists():
            return SlotState()
        try:
            return SlotState.model_validate_json(self.state_path.read_bytes())
        except ValidationError as exc:
            kept = self.root / f"state.unreadable-{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}.json"
            os.replace(self.state_path, kept)
            raise StateUnreadable(
                f"stored state unreadable ({first_problem(exc)}); kept as {kept.name}, slot started empty"
            ) from None

    def save_state(self, state: SlotState) -> None:
        """Replace the state file atomically, after checking it reads back (blocking: call from a worker thread)."""
        SlotState.model_validate_json(state.model_dump_json())
        self._write_state(state)

    def _write_state(self, state: SlotState) -> None:
        fd, tmp = tempfile.mkstemp(prefix=".state-", dir=self.root)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(state.model_dump_json(indent=2).encode())
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.state_path)
            dir_fd = os.open(self.root, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def package_path(self, sha256: str) -> Path:
        """Where a package with this digest is kept."""
        return self.packages / f"{sha256}.mlpkg"

    def keep_package(self, upload: Path, sha256: str) -> Path:
        """Move a verified upload into the store (blocking)."""
        target = self.package_path(sha256)
        os.replace(upload, target)
        return target

    def unpack_dir(self) -> Path:
        """A new, not yet existing folder name under work/ for unpacking one package."""
        return Path(tempfile.mkdtemp(prefix="unpacked-", dir=self.work)) / "files"

    def prune(self, keep: set[str]) -> None:
        """Delete packages no slot state refers to, and leftover work files (blocking)."""
        for path in self.packages.glob("*.mlpkg"):
            if path.stem not in keep:
                path.unlink(missing_ok=True)

    def clear_work(self) -> None:
        """Remove everything under work/ (at start: nothing there survives a restart)."""
        shutil.rmtree(self.work, ignore_errors=True)
        self.work.mkdir(mode=0o700, exist_ok=True)
