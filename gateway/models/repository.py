"""The package repository: verify, then keep each package once, named by its SHA-256.

    <data_dir>/packages/<sha256>.mlpkg

A package is verified (signature against the gateway's trust store, hashes,
archive safety, the model loads with the declared interface) before anything is
stored. Its sample answers are checked where it will run: each edge node runs
them on its own hardware before switching, and a mismatch there fails that
device's install (and the deployment's wave), not the upload. Versions are
immutable: the same name and version with other content is refused; the same
package again is accepted and changes nothing. A package that
is refused, or whose record cannot be written, leaves no file behind.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

from pydantic import ValidationError

from gateway.store.base import ModelVersionRecord, Store
from sdk import audit
from sdk.errors import InvalidState, ManifestInvalid
from sdk.keys import TrustStore
from sdk.names import first_problem
from sdk.package.stream import Received

_log = logging.getLogger(__name__)


def utc_now() -> datetime:
    """Now, in UTC."""
    return datetime.now(UTC)


class PackageRepository:
    """Stored model versions and their package files."""

    def __init__(self, store: Store, folder: Path, trust: TrustStore, clock: Callable[[], datetime] = utc_now) -> None:
        self._store = store
        self.folder = folder
        self._trust = trust
        self._clock = clock
        self._lock = asyncio.Lock()
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)

    def path(self, record: ModelVersionRecord) -> Path:
        """The package file of a stored version."""
        return self.folder / f"{record.sha256}.mlpkg"

    async def add(
        self,
        upload: Path,
        actor: str = "",
        before_store: Callable[[ModelVersionRecord], Awaitable[None]] | None = None,
        received: Received | None = None,
    ) -> tuple[ModelVersionRecord, bool]:
        """Verify and keep an uploaded package; returns its record and whether it is new.

        ``before_store`` (the version's nodes) runs after the record validated and before
        anything is kept: if it fails, nothing is stored. ``received``: the upload's size and SHA-256 as hashed
        while it arrived (else it is hashed here).
        """
        from sdk.package.verify import verify_package  # noqa: PLC0415 - onnxruntime: not at every gateway start

        verified = await asyncio.to_thread(verify_package, upload, self._trust, run_samples=False, received=received)
        m = verified.manifest
        async with self._lock:
            existing = await self._store.model_version(m.name, m.version)
            if existing is not None:
                if existing.sha256 != verified.sha256:
                    raise InvalidState(
                        f"{m.name} {m.version} is already stored with other content; versions cannot change, "
                        "build a new version",
                    )
                return existing, False
            if await self._store.has_model_version(m.name, m.version):
                raise InvalidState(f"{m.name} {m.version} is stored but unreadable (see the gateway log); not replaced")
            try:
                record = ModelVersionRecord.of(verified, self._clock())
            except ValidationError as exc:
                raise ManifestInvalid(f"the package cannot be stored: {first_problem(exc)}") from None
            if before_store is not None:
                await before_store(record)
            target = self.path(record)
            await asyncio.to_thread(os.replace, upload, target)
            try:
                await self._store.put_model_version(record)
            except BaseException:
                target.unlink(missing_ok=True)
                raise
            audit.record(
                "upload",
                "ok",
                who=actor if not audit.caller() else "",
                target=f"{m.name} {m.version}",
                detail=f"stored {verified.sha256}, signed by {verified.signer}",
            )
        _log.info("stored %s %s (%s, signed by %s)", m.name, m.version, verified.sha256[:12], verified.signer)
        return record, True

    async def records(self) -> list[ModelVersionRecord]:
        """Every stored version."""
        return await self._store.model_versions()
