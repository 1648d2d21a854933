"""A model slot and its software update flow (OPC 10000-100 section 8, Cached-Loading).

Pending: a package transferred and verified, not yet installed. Current: the
package serving. Fallback: the one that served before it. A transferred package
is verified once, as it is committed: its hash was taken as its chunks arrived,
and its archive, signatures and files are checked while its model is unpacked
(kept); installing that Pending version loads the unpacked model into onnxruntime
beside the serving one without verifying the package again. Any other install (a
Fallback, a Pending from before a restart or a trust change) re-verifies the
package first. Either way the install loads the model once, checks it
against its own recorded samples and only then swaps it in; anything that fails
leaves the serving model untouched and the Installation state machine in Error
with UpdateStatus saying why. After a swap with a ConfirmationTimeout, the slot
reverts by itself unless Confirm arrives in time (8.4.10).

A binding is part of what an install changes. Each kept version keeps the
binding it last ran with: installing the Pending version keeps the slot's
binding and remembers the old one as the Fallback's; installing the Fallback (a
Rollback) swaps versions and bindings, so two rollbacks in a row alternate. An
install that waits for Confirm keeps a snapshot of the Current, the Fallback and
both bindings from before it; a revert (not confirmed in time, or a restart
before Confirm) restores that snapshot exactly, undoing any binding set while
the install was being tried.

What must survive a restart (which package is which, the binding, the timeout,
whether a confirmation is outstanding) is written before a call is answered.
A node that restarts while a confirmation is outstanding reverts at start: an
install that was never confirmed is not trusted.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from pydantic import ValidationError

from edge_node.runtime.model import InferenceRuntime, LoadedModel
from edge_node.runtime.pipeline import Pipeline
from edge_node.slots.store import (
    MAX_CONFIRMATION_TIMEOUT_S,
    InstalledVersion,
    SlotSnapshot,
    SlotState,
    SlotStore,
    StateUnreadable,
)
from nodesets.ids import InstallationState, SoftwareVersionFileType
from sdk import audit
from sdk.binding import Binding
from sdk.cancel import honour_cancel
from sdk.diskspace import DEFAULT_RESERVE_BYTES, FreeSpace, ensure_free, free_bytes, is_disk_full, megabytes
from sdk.errors import DiskFull, InvalidState, ModelLineError, NotFound, OutOfRange, PackageRejected, UsageError
from sdk.keys import TrustStore
from sdk.package.stream import Received
from sdk.package.verify import VerifiedPackage, check_signers, verify_package

_log = logging.getLogger(__name__)


Listener = Callable[["ModelSlot"], Awaitable[None]]


class ModelSlot:
    """One model slot: its versions, its pipeline, its update state."""

    def __init__(
        self,
        name: str,
        store: SlotStore,
        pipeline: Pipeline,
        runtime: InferenceRuntime,
        trust: TrustStore,
        clock: Callable[[], float] = time.monotonic,
        free_space: FreeSpace = free_bytes,
    ) -> None:
        self.name = name
        self._clock = clock  # seconds, for the confirmation deadline; tests pass a clock they move
        self.free_space = free_space  # asked before transfers and installs fill the disk; tests simulate a full one
        self.reserve_bytes = DEFAULT_RESERVE_BYTES  # left free by every transfer (EdgeSettings.disk_reserve_bytes)
        self.store = store
        self.pipeline = pipeline
        self._runtime = runtime
        self._trust = trust
        self.state = SlotState()
        self.install_state = InstallationState.IDLE
        self.update_status = ""
        self.percent_complete = 0
        self._listeners: list[Listener] = []
        self._job: InstalledVersion | None = None
        self._job_by = ("", "")  # who asked for the install, from which address (for the audit trail)
        self._deadline: float | None = None
        self._work = asyncio.Event()
        self._lock = asyncio.Lock()
        self._distrust: tuple[str, str] = ("", "")  # (package sha256, why its signer is no longer trusted)
        self._staged: VerifiedPackage | None = None  # Pending, verified with its files unpacked when committed

    @property
    def trust_problem(self) -> str:
        """Why the signer of the Current model is no longer trusted; "" while it is (or another one is Current)."""
        sha, problem = self._distrust
        current = self.state.current
        return problem if current is not None and current.sha256 == sha else ""

    async def recheck_trust(self, trust: TrustStore) -> str:
        """Take a newly read trust store for later installs and check Current's signers against it.

        A model whose signer is no longer trusted (revoked, root removed) keeps serving, as a device
        must not stop on a certificate change by itself; the reason shows in UpdateStatus and
        DeviceHealth until the plant installs a package it trusts. Returns the reason, or "".
        A Pending verified under the old trust store whose signers the new one refuses is forgotten: its
        install then verifies it in full (and refuses it).
        """
        self._trust = trust
        staged = self._staged
        if staged is not None:
            try:
                await asyncio.to_thread(check_signers, self.store.package_path(staged.sha256), trust)
            except PackageRejected:
                if self._staged is staged:
                    await self._drop_staged()
        current = self.state.current
        problem = ""
        if current is not None:
            try:
                await asyncio.to_thread(check_signers, self.store.package_path(current.sha256), trust)
            except PackageRejected as exc:
                problem = f"{current.name} {current.version} is no longer trusted: {exc}"
        if problem != self.trust_problem:
            self._distrust = (current.sha256 if current else "", problem)
            if problem:
                self.update_status = problem
                _log.warning("slot %s: %s", self.name, problem)
            await self._changed()
        return problem

    def listen(self, listener: Listener) -> None:
        """Call ``listener(slot)`` after every change."""
        self._listeners.append(listener)

    async def _changed(self) -> None:
        for listener in self._listeners:
            await listener(self)

    async def _save(self, state: SlotState) -> None:
        await asyncio.to_thread(self.store.save_state, state)
        self.state = state

    @property
    def awaiting_confirmation(self) -> bool:
        """Whether the current version still needs Confirm."""
        return self.state.awaiting_confirmation

    def version(self, kind: SoftwareVersionFileType) -> InstalledVersion | None:
        """The Current, Pending or Fallback version."""
        return {
            SoftwareVersionFileType.CURRENT: self.state.current,
            SoftwareVersionFileType.PENDING: self.state.pending,
            SoftwareVersionFileType.FALLBACK: self.state.fallback,
        }[kind]

    def package_file(self, kind: SoftwareVersionFileType) -> Path:
        """The package file of a version, for GenerateFileForRead; NotFound when there is none."""
        version = self.version(kind)
        if version is None:
            raise NotFound(f"slot {self.name} has no {kind.label} version")
        return self.store.package_path(version.sha256)

    # --- start --------------------------------------------------------------------------------

    async def start(self) -> None:
        """Restore the saved state and serve Current at once (verified again before loading)."""
        await asyncio.to_thread(self.store.clear_work)
        try:
            self.state = await asyncio.to_thread(self.store.load_state)
        except StateUnreadable as exc:  # one bad slot must not keep the node (and its other slots) down
            self.state = SlotState()
            self.update_status = str(exc)
            _log.error("slot %s: %s", self.name, exc)
        if self.state.awaiting_confirmation:  # the revert binds what it restores: never the untrusted binding
            await self._revert("the node restarted before the install was confirmed")
            return
        await self.pipeline.set_binding(self.state.binding)
        if self.state.current is not None:
            try:
                await self.pipeline.set_model(await self._load(self.state.current))
            except ModelLineError as exc:
                self.update_status = f"cannot serve {self.state.current.version} after restart: {exc}"
                _log.error("slot %s: %s", self.name, self.update_status)
        await self._changed()

    async def _load(self, version: InstalledVersion) -> LoadedModel:
        return await self._runtime.load(self.store.package_path(version.sha256), self._trust, self.store.unpack_dir())

    async def _load_new(self, version: InstalledVersion) -> LoadedModel:
        """Load a version to install; DiskFull when there is no room to unpack it (the package size is a floor).

        Pending, verified and unpacked when it was committed, is loaded from its unpacked files as it is."""
        await ensure_free(self.store.work, version.size, self.free_space)
        staged = self._staged
        if staged is not None and staged.sha256 == version.sha256:
            self._staged = None
            return await self._runtime.load_verified(staged)  # its folder is removed if it fails
        try:
            return await self._load(version)
        except OSError as exc:
            if not is_disk_full(exc):
                raise
            free = await asyncio.to_thread(self.free_space, self.store.work)
            raise DiskFull(f"the disk filled up while unpacking ({megabytes(free)} free)") from None

    async def report(self, status: str) -> None:
        """Show a one-line status (UpdateStatus) about something the slot did not do."""
        self.update_status = status
        _log.warning("slot %s: %s", self.name, status)
        await self._changed()

    # --- transfer -----------------------------------------------------------------------------

    async def stage_pending(self, upload: Path, received: Received | None = None) -> InstalledVersion:
        """Verify a transferred package and make it Pending; a rejected one leaves nothing behind.

        One pass over the package: ``received`` is its size and SHA-256 as hashed while its chunks arrived
        (hashed here when None); the archive, the signatures and every file's signed digest are checked while
        the model is unpacked, and the unpacked files are kept for the install of this version, which loads
        the model into onnxruntime (once) without verifying the package again."""
        async with self._lock:
            into = self.store.unpack_dir()
            try:
                staged = await asyncio.to_thread(
                    verify_package, upload, self._trust, into=into, load_model=False, received=received
                )
            except BaseException as exc:  # the transfer layer deletes the upload
                await asyncio.to_thread(shutil.rmtree, into.parent, True)
                if isinstance(exc, OSError) and is_disk_full(exc):
                    exc = DiskFull(f"the disk filled up while unpacking the package ({exc.strerror})")
                elif not isinstance(exc, ModelLineError):
                    raise
                self.update_status = f"transferred package rejected: {exc}"
                _log.warning("slot %s: %s", self.name, self.update_status)
                await self._changed()
                raise exc from None
            pending = InstalledVersion.of(staged, staged.signer)
            try:
                await asyncio.to_thread(self.store.keep_package, upload, pending.sha256)
            except BaseException:
                await self._discard(staged)
                raise
            await self._drop_staged()
            self._staged = staged
            await self._save(self.state.model_copy(update={"pending": pending}))
            await asyncio.to_thread(self.store.prune, self.state.referenced())
            self.update_status = f"{pending.name} {pending.version} transferred and verified; ready to install"
            _log.info("slot %s: pending %s %s (%s)", self.name, pending.name, pending.version, pending.sha256[:12])
            await self._changed()
            return pending

    async def _discard(self, package: VerifiedPackage) -> None:
        """Forget a verified package that will not be installed, and its unpacked files."""
        if package.directory is not None:
            await asyncio.to_thread(shutil.rmtree, package.directory.parent, True)

    async def _drop_staged(self) -> None:
        staged, self._staged = self._staged, None
        if staged is not None:
            await self._discard(staged)

    # --- installation -------------------------------------------------------------------------

    async def request_install(
        self, manufacturer_uri: str, revision: str, digest: bytes, *, who: str = "", address: str = ""
    ) -> InstalledVersion:
        """InstallSoftwarePackage: check the request, enter Installing, install in the background.

        ``who`` and ``address`` name the caller in the audit record of the install's outcome."""
        if self.install_state is not InstallationState.IDLE:
            raise InvalidState(f"installation is {self.install_state.label}, not Idle")
        if self.state.awaiting_confirmation:
            raise InvalidState("the last install is waiting for Confirm")
        candidates = [
            v
            for v in (self.state.pending, self.state.fallback)
            if v is not None and v.manufacturer_uri == manufacturer_uri and v.version == revision
        ]
        # The Hash tells two packages with one ManufacturerUri and SoftwareRevision apart (Pending and Fallback).
        target = next((v for v in candidates if digest and digest == bytes.fromhex(v.sha256)), None)
        target = target or (candidates[0] if candidates else None)
        if target is None:
            raise NotFound(f"no Pending or Fallback version {manufacturer_uri} {revision}")
        if digest and digest != bytes.fromhex(target.sha256):
            raise UsageError(
                f"hash {digest.hex()[:16]}... does not match {target.version} ({target.sha256[:16]}...)",
            )
        self.install_state = InstallationState.INSTALLING
        self.percent_complete = 0
        self.update_status = f"installing {target.name} {target.version}"
        self._job = target
        self._job_by = (who, address)
        self._work.set()
        await self._changed()
        return target

    def _audit_install(self, target: InstalledVersion, outcome: audit.Outcome, detail: str, action: str) -> None:
        """The outcome of an install ("revert" when it brought the Fallback back: a manual revert)."""
        who, address = self._job_by
        what = f"{target.name} {target.version} ({target.sha256[:12]})"
        audit.record(action, outcome, who=who, address=address, target=self.name, detail=f"{what}: {detail}")

    async def _install(self, target: InstalledVersion) -> None:
        action = "revert" if target == self.state.fallback and target != self.state.pending else "install"
        try:
            candidate = await self._load_new(target)
        except ModelLineError as exc:
            self.install_state = InstallationState.ERROR
            self.update_status = f"install of {target.name} {target.version} failed: {exc}"
            _log.warning("slot %s: %s", self.name, self.update_status)
            self._audit_install(target, "failed", str(exc), action)
            await self._changed()
            return
        self.percent_complete = 80
        new_state = self._installed(target)
        await self._save(new_state)  # written before the swap: a crash now reverts at start
        await self._swap(candidate, new_state.binding)
        waiting = new_state.awaiting_confirmation
        self.install_state = InstallationState.IDLE
        self.percent_complete = 100
        timeout = self.state.confirmation_timeout_s
        self.update_status = f"{target.name} {target.version} installed" + (
            f"; waiting {timeout:g} s for Confirm" if waiting else ""
        )
        self._deadline = self._clock() + timeout if waiting else None
        await asyncio.to_thread(self.store.prune, self.state.referenced())
        _log.info("slot %s: %s", self.name, self.update_status)
        self._audit_install(target, "ok", self.update_status, action)
        await self._changed()

    def _installed(self, target: InstalledVersion) -> SlotState:
        """The state once ``target`` serves: versions and bindings move together."""
        state = self.state
        previous = state.current
        waiting = state.confirmation_timeout_s > 0
        update: dict[str, object] = {
            "current": target,
            "pending": None if state.pending == target else state.pending,
            "awaiting_confirmation": waiting,
            "undo": state.snapshot() if waiting else None,
        }
        if previous is not None and previous != target:
            rollback = target == state.fallback
            update |= {
                "fallback": previous,
                "fallback_binding": state.binding,
                # A Rollback runs the Fallback with the binding it ran with (a state from before bindings
                # were kept per version has none: then the slot's binding stays).
                "binding": state.fallback_binding if rollback and state.fallback_binding else state.binding,
            }
        return state.model_copy(update=update)

    async def _swap(self, model: LoadedModel | None, binding: Binding | None) -> None:
        """Serve ``model`` with ``binding``; the binding first, so the new model never runs on the old one."""
        if binding != self.pipeline.binding:
            await self.pipeline.set_binding(binding)
        old = self.pipeline.model
        await self.pipeline.set_model(model)
        if old is not None and old.package.directory is not None:
            await asyncio.to_thread(shutil.rmtree, old.package.directory.parent, True)

    async def confirm(self) -> None:
        """Confirm: keep the current version."""
        if not self.state.awaiting_confirmation:
            raise InvalidState("nothing is waiting for Confirm")
        await self._save(self.state.model_copy(update={"awaiting_confirmation": False, "undo": None}))
        await asyncio.to_thread(self.store.prune, self.state.referenced())
        self._deadline = None
        current = self.state.current
        self.update_status = f"{current.name} {current.version} confirmed" if current else "confirmed"
        self._work.set()
        await self._changed()

    async def resume(self) -> None:
        """Resume: leave the Error state."""
        if self.install_state is not InstallationState.ERROR:
            raise InvalidState(f"installation is {self.install_state.label}, not Error")
        self.install_state = InstallationState.IDLE
        self.percent_complete = 0
        await self._changed()

    async def _revert(self, reason: str) -> None:
        """Undo the install that waits for Confirm: its versions and bindings as they were before it."""
        failed, state = self.state.current, self.state
        # A state file from before the snapshot existed: back to the Fallback, as then.
        before = state.undo or SlotSnapshot(current=state.fallback, binding=state.fallback_binding or state.binding)
        restored, model = before.current, None
        if restored is not None:
            try:
                model = await self._load(restored)
            except ModelLineError as exc:
                _log.error("slot %s: %s cannot be loaded: %s", self.name, restored.version, exc)
                restored = None
        await self._save(
            state.model_copy(
                update={
                    "current": restored,
                    "binding": before.binding,
                    "fallback": before.fallback,
                    "fallback_binding": before.fallback_binding,
                    "awaiting_confirmation": False,
                    "undo": None,
                }
            )
        )
        await self._swap(model, before.binding)
        self._deadline = None
        back_to = f"reverted to {restored.version}" if restored else "no fallback: the slot serves no model"
        self.update_status = f"{failed.version if failed else 'install'}: {reason}; {back_to}"
        _log.warning("slot %s: %s", self.name, self.update_status)
        audit.record("revert", "ok", target=self.name, detail=self.update_status)  # the node's own decision
        await asyncio.to_thread(self.store.prune, self.state.referenced())
        await self._changed()

    # --- settings ------------------------------------------------------------------------------

    def check_confirmation_timeout(self, seconds: float) -> SlotState:
        """The state with this ConfirmationTimeout, validated by the model that stores it; OutOfRange if not."""
        try:
            return self.state.updated(confirmation_timeout_s=seconds)
        except ValidationError:
            raise OutOfRange(
                f"ConfirmationTimeout must be a finite number of seconds in 0..{MAX_CONFIRMATION_TIMEOUT_S:g}, "
                f"not {seconds!r}"
            ) from None

    async def set_confirmation_timeout(self, seconds: float) -> None:
        """ConfirmationTimeout, kept for the next install; OutOfRange (nothing saved) when it could not be kept."""
        await self._save(self.check_confirmation_timeout(seconds))

    async def set_binding(self, binding: Binding | None) -> None:
        """A new input binding, saved and taken at once; no reinstall.

        While an install waits for Confirm the binding belongs to that install: a revert undoes it.
        """
        await self._save(self.state.model_copy(update={"binding": binding}))
        await self.pipeline.set_binding(binding)
        await self._changed()

    # --- worker -------------------------------------------------------------------------------

    def check_deadline(self) -> None:
        """Look at the confirmation deadline again now (the worker also does so when it falls due)."""
        self._work.set()

    async def run(self) -> None:
        """Runs installs and the confirmation deadline, forever."""
        while True:
            timeout = None if self._deadline is None else max(0.0, self._deadline - self._clock())
            try:
                await asyncio.wait_for(self._work.wait(), timeout)
            except TimeoutError:
                pass
            honour_cancel()
            self._work.clear()
            if self._deadline is not None and self._clock() >= self._deadline and self.state.awaiting_confirmation:
                timeout_s = self.state.confirmation_timeout_s
                await self._revert(f"not confirmed within {timeout_s:g} s")
            if self._job is not None:
                job, self._job = self._job, None
                async with self._lock:
                    try:
                        await self._install(job)
                    except Exception:  # the slot keeps serving; the failure is reported, not fatal
                        _log.exception("slot %s: install of %s failed unexpectedly", self.name, job.version)
                        self._audit_install(job, "failed", "internal error", "install")
                        self.install_state = InstallationState.ERROR
                        self.update_status = f"install of {job.version} failed: internal error, see the edge node log"
                        await self._changed()
