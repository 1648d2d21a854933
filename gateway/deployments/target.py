"""One target of a deployment: a sequence of idempotent steps, each chosen by what the device really runs.

Every run of a target starts by reading the device's slot (Current, Pending, whether it waits for
Confirm, the installation state) and does only what is still missing, so the same code serves a
new rollout, a retry after a lost link and a gateway restarted in the middle of any step:

- Current is the package and the device waits for Confirm: health check, then Confirm. Never assumed.
- Current is the package and nothing waits: the target is Active.
- the target was Confirming and Current is something else: the device reverted by itself; say so.
- an install is running (a gateway restarted during Installing): wait for its end, then look again.
- Pending is the package: install it (no second transfer); otherwise transfer it first.

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

_log = logging.getLogger(__name__)

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
        self, record: DeploymentRecord, plan: TargetPlan, device: Device, step: Step, clock: Callable[[], datetime]
    ) -> None:
        self.record = record
        self.plan = plan
        self.device = device
        self._step = step
        self._clock = clock
        self.latest: TargetRecord | None = None  # as last saved: where a retry starts from

    async def run(self, target: TargetRecord) -> TargetRecord:
        """Advance until Active; retry lost links with backoff until ``retry_for_s`` has passed."""
        loop = asyncio.get_running_loop()
        deadline: float | None = None
        delay = 1.0
        while True:
            try:
                return await self._advance(target)
            except ConnectionLost as exc:
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
        if self.plan.package is None:
            return await self._to_fallback(target, su)
        while (state := await su.installation_state()) is InstallationState.INSTALLING:
            await su.wait_installed()  # an install started before a restart: let it end, then look again
        if state is InstallationState.ERROR:
            await su.resume()
        current = await su.version(SoftwareVersionFileType.CURRENT)
        if current.hash.hex() == self.plan.sha256:
            if await su.awaiting_confirmation():
                return await self._confirm(target, su, since=self._clock())
            return await self._save(target, DeploymentState.ACTIVE)
        if target.state is DeploymentState.CONFIRMING:
            raise NotConfirmed(
                f"the device reverted to {current.revision or 'no model'} before the install was confirmed"
            )
        pending = await su.version(SoftwareVersionFileType.PENDING)
        if pending.hash.hex() != self.plan.sha256:
            target = await self._save(target, DeploymentState.TRANSFERRING)
            pending = await su.transfer(self.plan.package)
        target = await self._save(target, DeploymentState.INSTALLING)
        await su.set_confirmation_timeout(self.plan.confirmation_timeout_s)
        try:
            await su.install(pending)
        except UpdateFailed:
            await su.resume()  # leave the device Idle, serving its previous model
            raise
        since = self._clock()
        if self.plan.binding is not None:
            await self.device.set_binding(await self._slot(su), self.plan.binding.to_json())
        self.device.refresh()
        return await self._confirm(target, su, since)

    async def _slot(self, su: SlotUpdate) -> str:
        return self.plan.slot or await su.slot_name()

    async def _confirm(self, target: TargetRecord, su: SlotUpdate, since: datetime) -> TargetRecord:
        target = await self._save(target, DeploymentState.CONFIRMING)
        await self._watch(await self._slot(su), since)
        if await su.awaiting_confirmation():
            await su.confirm()
        current = await su.version(SoftwareVersionFileType.CURRENT)
        if current.hash.hex() != self.plan.sha256:  # its ConfirmationTimeout ran out during the health check
            raise NotConfirmed(f"the device reverted to {current.revision or 'no model'} before it was confirmed")
        return await self._save(target, DeploymentState.ACTIVE)

    async def _to_fallback(self, target: TargetRecord, su: SlotUpdate) -> TargetRecord:
        fallback = await su.version(SoftwareVersionFileType.FALLBACK)
        if fallback.empty:
            raise UpdateFailed("the device has no fallback version")
        target = await self._save(target, DeploymentState.INSTALLING)
        await su.set_confirmation_timeout(0)
        await su.install(fallback)
        self.device.refresh()
        return await self._save(target, DeploymentState.ACTIVE)

    async def _watch(self, slot: str, since: datetime) -> None:
        """Before Confirm: with a binding, the slot must publish a Good prediction made after ``since``
        within health_check_s; without one, the device must not report FAILURE for a short look. Anything
        less is not confirmed, and the device reverts by itself when its ConfirmationTimeout runs out."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.plan.health_check_s
        settled = loop.time() + min(0.5, self.plan.health_check_s)
        view = self.device.view
        while True:
            if view.health is DeviceHealth.FAILURE:
                raise NotConfirmed("the device reports FAILURE after the install")
            if self.plan.binding is None:
                if loop.time() >= settled:
                    return
            else:
                good = view.last_good.get(slot)
                if good is not None and good > since:
                    return
            if loop.time() >= deadline:
                state = view.pipelines.get(slot, PipelineState.NO_MODEL)
                raise NotConfirmed(
                    f"no healthy predictions within {self.plan.health_check_s:g} s of the install "
                    f"(pipeline {slot}: {state.label})"
                )
            await asyncio.sleep(0.1)
