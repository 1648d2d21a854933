"""One target of a deployment: a sequence of idempotent steps, each chosen by what the device really runs.

Every run of a target starts by reading the device's slot (Current, Pending, whether it waits for
Confirm, the installation state) and does only what is still missing, so the same code serves a
new rollout, a retry after a lost link and a gateway restarted in the middle of any step:

- Current is the package and the device waits for Confirm: health check, then Confirm. Never assumed.
- Current is the package and nothing waits: the target is Active, once a binding that differs from the
  device's has been applied and checked (and put back if the check fails: no revert would undo it), or,
  if the target was Confirming (interrupted before its check passed), once the health check passes.
- the target was Confirming and Current is something else: the device reverted by itself; say so
  (or, when this run lost the link meanwhile, install again: the revert followed the lost link).
- an install is running (a gateway restarted during Installing): wait for its end, then look again.
- Pending is the package: install it (no second transfer); otherwise transfer it first.
- a rollback installs the Fallback it found first (remembered in the target), and once that is Current
  it is done: resumed after its install, it does not swap the versions back.

The health check counts only a Good prediction made by the new version with the deployment's
binding: the pipeline's Configuration, read right after SetBinding, must name both, and the device
must report that very Configuration behind its newest Good prediction (GoodConfiguration; see
edge_node/runtime/pipeline.py), so a Good output of the new model with the old binding never counts;
and that prediction must be the newest (pipeline State Running), so a gateway restarted while Confirming
does not confirm on a Good prediction the device made before Bad ones.

A lost link (ConnectionLost from the device layer) is retried with backoff until ``retry_for_s``
has passed; refusals by the device (package rejected, install failed, not healthy) fail at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from gateway.devices.device import Device, SlotUpdate
from gateway.store.base import DeploymentRecord, TargetRecord
from nodesets.ids import DeploymentState, DeviceHealth, InstallationState, PipelineState, SoftwareVersionFileType
from sdk.binding import Binding
from sdk.errors import ConnectionLost, UpdateFailed
from sdk.versions import VersionInfo

_log = logging.getLogger(__name__)

RUNNING = PipelineState.RUNNING

Step = Callable[[TargetRecord, DeploymentState], Awaitable[TargetRecord]]
"""Saves a target's new state (and the deployment's progress); returns the saved target."""


class NotConfirmed(UpdateFailed):
    """The device reverted by itself (or would): the install was not confirmed; the message says why."""


@dataclass(frozen=True)
class TargetPlan:
    """What a deployment asks of each target."""

    package: Path | None  # None: return to the device's Fallback version (a rollback)
    sha256: str
    slot: str | None
    binding: Binding | None
    confirmation_timeout_s: float
    health_check_s: float
    retry_for_s: float


class TargetRollout:
    """Brings one device to a deployment's version, or says in one line why it could not."""

    def __init__(
        self,
        record: DeploymentRecord,
        plan: TargetPlan,
        device: Device,
        step: Step,
        clock: Callable[[], datetime],
        transfers: asyncio.Semaphore | None = None,
    ) -> None:
        self.record = record
        self._transfers = transfers or asyncio.Semaphore(1)  # shared by every target: transfers at once
        self.plan = plan
        self.device = device
        self._step = step
        self._clock = clock
        self.latest: TargetRecord | None = None  # as last saved: where a retry starts from
        # The link was lost during this run: a revert found afterwards is its consequence (a node restarted
        # before Confirm reverts, as does one whose ConfirmationTimeout ran out while unreachable), not a
        # verdict on the version, so the version is installed again. A gateway that restarts instead
        # reports such a revert: it cannot know what happened while it was down.
        self._link_lost = False

    async def run(self, target: TargetRecord) -> TargetRecord:
        """Advance until Active; retry lost links with backoff until ``retry_for_s`` has passed."""
        loop = asyncio.get_running_loop()
        deadline: float | None = None
        delay = 1.0
        while True:
            try:
                return await self._advance(target)
            except ConnectionLost as exc:
                self._link_lost = True
                now = loop.time()
                deadline = deadline if deadline is not None else now + self.plan.retry_for_s
                if now + delay > deadline:
                    raise ConnectionLost(f"{exc} (gave up after {self.plan.retry_for_s:g} s of retries)") from None
                _log.warning(
                    "deployment %s, device %s: %s; trying again in %.0f s",
                    self.record.id,
                    self.device.device_id,
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
                target = self.latest or target

    async def _save(self, target: TargetRecord, state: DeploymentState) -> TargetRecord:
        self.latest = await self._step(target, state)
        return self.latest

    async def _advance(self, target: TargetRecord) -> TargetRecord:
        # A device that was offline before the rollout reached it keeps the target Pending until it returns;
        # one lost in the middle of a step counts against retry_for_s.
        if target.state is DeploymentState.PENDING:
            await self.device.wait_online()
        elif not await self.device.wait_online(10.0):
            raise ConnectionLost(f"device unreachable during {target.state.label.lower()}")
        async with self.device.update_session(self.plan.slot) as su:
            return await self._steps(target, su)

    async def _steps(self, target: TargetRecord, su: SlotUpdate) -> TargetRecord:
        while (state := await su.installation_state()) is InstallationState.INSTALLING:
            await su.wait_installed()  # an install started before a restart: let it end, then look again
        if state is InstallationState.ERROR:
            await su.resume()
        if self.plan.package is None:
            return await self._to_fallback(target, su)
        current = await su.version(SoftwareVersionFileType.CURRENT)
        if current.hash.hex() == self.plan.sha256:
            if await su.awaiting_confirmation():
                return await self._confirm(target, su)
            return await self._rebind(target, await self._slot(su))
        if target.state is DeploymentState.CONFIRMING:
            reverted = await self._reverted(su, current)
            if not self._link_lost:
                raise reverted
            _log.warning(
                "deployment %s, device %s: %s, while the link was lost; installing again",
                self.record.id,
                self.device.device_id,
                reverted,
            )
        pending = await su.version(SoftwareVersionFileType.PENDING)
        if pending.hash.hex() != self.plan.sha256:
            target = await self._save(target, DeploymentState.TRANSFERRING)
            async with self._transfers:  # a wave's transfers take turns: one chunk in flight per transfer
                # the store's hash: not one more read of the whole package per device of a wave
                pending = await su.transfer(self.plan.package, bytes.fromhex(self.plan.sha256))
        target = await self._save(target, DeploymentState.INSTALLING)
        await su.set_confirmation_timeout(self.plan.confirmation_timeout_s)
        try:
            await su.install(pending)
        except UpdateFailed:
            await su.resume()  # leave the device Idle, serving its previous model
            raise
        return await self._confirm(target, su)

    async def _slot(self, su: SlotUpdate) -> str:
        return self.plan.slot or await su.slot_name()

    async def _confirm(self, target: TargetRecord, su: SlotUpdate) -> TargetRecord:
        slot = await self._slot(su)
        configuration = None
        if self.plan.binding is not None:
            if await self._binding_differs(slot):  # not yet set (a gateway restarted before it was)
                await self.device.set_binding(slot, self.plan.binding.to_json())
            configuration = await self._configuration(slot)
        self.device.refresh()
        target = await self._save(target, DeploymentState.CONFIRMING)
        try:
            await self._watch(slot, configuration, after="the install")
        except NotConfirmed as exc:
            current = await su.version(SoftwareVersionFileType.CURRENT)
            if current.hash.hex() != self.plan.sha256:  # its ConfirmationTimeout ran out first, the link up
                raise await self._reverted(su, current, found=str(exc)) from None
            raise
        if await su.awaiting_confirmation():
            await su.confirm()
        current = await su.version(SoftwareVersionFileType.CURRENT)
        if current.hash.hex() != self.plan.sha256:  # its ConfirmationTimeout ran out during the health check
            raise await self._reverted(su, current)
        return await self._save(target, DeploymentState.ACTIVE)

    async def _reverted(self, su: SlotUpdate, current: VersionInfo, found: str = "") -> NotConfirmed:
        """The device serves ``current``, not the deployed version: it reverted by itself (its ConfirmationTimeout
        ran out, or it restarted, before Confirm; OPC 10000-100 8.4.10). Its UpdateStatus tells why."""
        status = await su.update_status()
        why = f" (device: {status})" if status else ""
        checked = f"; the health check found {found}" if found else ""
        return NotConfirmed(
            f"the device reverted to {current.revision or 'no model'} before the install was confirmed{why}{checked}"
        )

    async def _to_fallback(self, target: TargetRecord, su: SlotUpdate) -> TargetRecord:
        """Install the device's Fallback, remembered (its hash, in the target) before the install starts.

        A rollback swaps Current and Fallback, so "install the Fallback" is not idempotent: a rollback
        resumed after its install was done (a gateway killed while Installing) finds the version it rolled
        back from as the Fallback. The remembered hash tells the two apart: Current already, it is done."""
        if target.sha256:
            current = await su.version(SoftwareVersionFileType.CURRENT)
            if current.hash.hex() == target.sha256:
                self.device.refresh()
                return await self._save(target, DeploymentState.ACTIVE)
        fallback = await su.version(SoftwareVersionFileType.FALLBACK)
        if fallback.empty:
            raise UpdateFailed("the device has no fallback version")
        if target.sha256 and fallback.hash.hex() != target.sha256:
            raise UpdateFailed(
                f"the device's versions changed during the rollback: its fallback is now {fallback.revision}"
            )
        target = await self._save(target.model_copy(update={"sha256": fallback.hash.hex()}), DeploymentState.INSTALLING)
        await su.set_confirmation_timeout(0)
        await su.install(fallback)
        self.device.refresh()
        return await self._save(target, DeploymentState.ACTIVE)

    async def _binding_differs(self, slot: str) -> bool:
        assert self.plan.binding is not None
        current = await self.device.binding(slot)
        return not current or Binding.parse(current).to_json() != self.plan.binding.to_json()

    async def _rebind(self, target: TargetRecord, slot: str) -> TargetRecord:
        """The version serves already: apply the deployment's binding if it differs, and check it.

        Nothing is installed, so no ConfirmationTimeout would undo a bad binding: a failed check puts
        the previous binding back here, and the target fails with the reason. A target found Confirming
        with the binding in place was interrupted (a gateway restart, a lost link) after the binding or a
        confirmed install was applied but before its health check passed: it is checked now, never assumed
        (the binding from before is not known any more, so a failure leaves it as it is)."""
        if self.plan.binding is None:
            return await self._save(target, DeploymentState.ACTIVE)
        if not await self._binding_differs(slot):
            if target.state is DeploymentState.CONFIRMING:
                await self._watch(slot, await self._configuration(slot), after="resuming")
            return await self._save(target, DeploymentState.ACTIVE)
        previous = await self.device.binding(slot)
        target = await self._save(target, DeploymentState.CONFIRMING)
        await self.device.set_binding(slot, self.plan.binding.to_json())
        try:
            await self._watch(slot, await self._configuration(slot), after="the binding change")
        except UpdateFailed as exc:
            await self.device.set_binding(slot, previous)
            raise UpdateFailed(f"{exc}; the previous binding was restored") from None
        return await self._save(target, DeploymentState.ACTIVE)

    async def _configuration(self, slot: str) -> str:
        """The slot's Configuration after SetBinding; it must name the deployed version and binding."""
        assert self.plan.binding is not None
        configuration = await self.device.configuration(slot)
        expected = f"{self.record.model} {self.record.version} binding {self.plan.binding.digest()} #"
        if not configuration.startswith(expected):
            raise UpdateFailed(f"pipeline {slot} serves {configuration or 'nothing'!r}, not {expected[:-2]!r}")
        return configuration

    async def _watch(self, slot: str, configuration: str | None, after: str) -> None:
        """Before Confirm: with a binding, the device must report a Good prediction made by ``configuration``
        (the new version with the deployment's binding) within health_check_s, and it must be the newest
        prediction (pipeline Running), so evidence from before a gateway restart counts only while it still
        holds; without a binding, it must not report FAILURE for a short look. Anything less is not
        confirmed, and the device reverts by itself when its ConfirmationTimeout runs out."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.plan.health_check_s
        settled = loop.time() + min(0.5, self.plan.health_check_s)
        view = self.device.view
        while True:
            if not self.device.online:  # what the view shows is stale now: retried, not judged on it
                raise ConnectionLost(f"connection lost during the health check after {after}")
            if view.health is DeviceHealth.FAILURE:
                raise NotConfirmed("the device reports FAILURE after the install")
            if configuration is None:
                if loop.time() >= settled:
                    return
            elif view.good_configuration.get(slot) == configuration and view.pipelines.get(slot) is RUNNING:
                # Running: the newest prediction is Good, so it is the one GoodConfiguration names. Without
                # this, a Good prediction made before a gateway restart (and Bad ones since) would confirm.
                return
            if loop.time() >= deadline:
                state = view.pipelines.get(slot, PipelineState.NO_MODEL)
                raise NotConfirmed(
                    f"no healthy predictions within {self.plan.health_check_s:g} s of {after} "
                    f"(pipeline {slot}: {state.label})"
                )
            await asyncio.sleep(0.1)
