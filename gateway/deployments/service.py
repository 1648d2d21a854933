"""Deployments: a stored model version rolled out to edge devices through the DI software update.

Each target is brought to the version by ``target.TargetRollout``: transfer to PendingVersion,
InstallSoftwarePackage with the package hash, the binding, a health check that counts only a Good
prediction made by the new version with that binding, then Confirm; every step chosen by what the
device really runs, and a lost link retried. Targets go in waves of ``waves`` devices (all at once by
default) and the rollout stops at the first failure: later waves are left untouched. Every step is
saved before the next begins, so a restarted gateway resumes unfinished deployments where they stood.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from gateway.deployments.options import DeployOptions, StoredOptions
from gateway.deployments.target import TargetPlan, TargetRollout
from gateway.devices.registry import DeviceRegistry
from gateway.models.repository import PackageRepository
from gateway.store.base import DeploymentRecord, ModelVersionRecord, Store, TargetRecord
from nodesets.ids import DeploymentState
from sdk import audit, heap
from sdk.errors import InvalidState, ModelLineError, NotFound, UsageError
from sdk.names import first_problem
from sdk.package.manifest import check_name, check_version

_log = logging.getLogger(__name__)

PENDING, TRANSFERRING, INSTALLING = DeploymentState.PENDING, DeploymentState.TRANSFERRING, DeploymentState.INSTALLING
CONFIRMING, ACTIVE, FAILED = DeploymentState.CONFIRMING, DeploymentState.ACTIVE, DeploymentState.FAILED
ROLLED_BACK = DeploymentState.ROLLED_BACK
FINAL = {ACTIVE, FAILED, ROLLED_BACK}
# How far a maintenance window may lie from now: a day back (clocks differ), a year ahead.
START_AT_PAST = timedelta(days=1)
START_AT_FUTURE = timedelta(days=366)


Listener = Callable[[DeploymentRecord, list[TargetRecord]], Awaitable[None]]


def utc_now() -> datetime:
    """Now, in UTC."""
    return datetime.now(UTC)


class DeploymentService:
    """Creates deployments and runs each one to its end."""

    def __init__(
        self,
        store: Store,
        repository: PackageRepository,
        devices: DeviceRegistry,
        clock: Callable[[], datetime] = utc_now,
        parallel_transfers: int = 8,
    ) -> None:
        self._store = store
        # Package transfers at once, over every deployment (GatewaySettings.parallel_transfers): memory grows
        # with transfers in flight, throughput does not (they share the CPU).
        self._transfers = asyncio.Semaphore(parallel_transfers)
        self._repository = repository
        self._devices = devices
        self._clock = clock
        self.listeners: list[Listener] = []
        self._runs: dict[str, asyncio.Task[None]] = {}
        self._group: asyncio.TaskGroup | None = None
        self._backlog: list[str] = []
        self.scheduler: Any = None  # an apscheduler AsyncIOScheduler, for maintenance windows

    async def _save(self, record: DeploymentRecord, targets: list[TargetRecord]) -> DeploymentRecord:
        record = record.model_copy(update={"updated_at": self._clock()})
        await self._store.put_deployment(record, targets)
        if self.listeners:  # read once for all of them: a 100-device rollout saves every step of every target
            current = await self._store.targets(record.id)
            for listener in self.listeners:
                await listener(record, list(current))
        return record

    async def _next_id(self) -> str:
        taken = set(await self._store.deployment_ids())  # unreadable rows too: their ids are not free
        number = len(taken) + 1
        while f"deploy-{number:04d}" in taken:
            number += 1
        return f"deploy-{number:04d}"

    async def _new_record(self, **fields: Any) -> DeploymentRecord:
        """A Pending deployment record, validated by the model that stores it; UsageError naming the problem."""
        now = self._clock()
        try:
            return DeploymentRecord(id=await self._next_id(), state=PENDING, created_at=now, updated_at=now, **fields)
        except ValidationError as exc:
            raise UsageError(first_problem(exc)) from None

    async def deploy(self, model: str, version: str, targets: list[str], options_json: str, actor: str = "") -> str:
        """Validate, save as Pending, start (or schedule); returns the deployment id."""
        options = DeployOptions.parse(options_json)
        record = await self._new_record(model=model, version=version, targets=targets, options_json=options.to_json())
        if await self._repository_version(model, version) is None:
            raise NotFound(f"no stored model version {model} {version} (push it first)")
        for device in targets:
            self._devices.get(device)
        now = record.created_at
        if options.start_at is not None and not now - START_AT_PAST <= options.start_at <= now + START_AT_FUTURE:
            raise UsageError(f"start_at {options.start_at.isoformat()} is not between a day ago and a year from now")
        await self._save(
            record, [TargetRecord(deployment_id=record.id, device_id=d, state=PENDING, updated_at=now) for d in targets]
        )
        audit.record("deploy", "ok", target=record.id, detail=f"{model} {version} to {', '.join(targets)}")
        self._start(record.id, options.start_at)
        return record.id

    async def _repository_version(self, model: str, version: str) -> ModelVersionRecord | None:
        return await self._store.model_version(model, version)

    def _start(self, deployment_id: str, start_at: datetime | None = None) -> None:
        if self._group is None:
            self._backlog.append(deployment_id)
        elif start_at is not None and start_at > self._clock() and self.scheduler is not None:
            # A maintenance window: the scheduler starts it then (and a restart schedules it again).
            self.scheduler.add_job(
                self._start, "date", run_date=start_at, args=[deployment_id], id=deployment_id, replace_existing=True
            )
            _log.info("deployment %s: scheduled for %s", deployment_id, start_at.isoformat())
        else:
            self._runs[deployment_id] = self._group.create_task(self._run(deployment_id), name=deployment_id)

    async def run(self) -> None:
        """Resume unfinished deployments, then run new ones, forever."""
        async with asyncio.TaskGroup() as group:
            self._group = group
            for record in await self._store.deployments():
                if record.state not in FINAL and record.id not in self._backlog:
                    _log.info("deployment %s: resuming (%s)", record.id, record.state.label)
                    self._backlog.append(record.id)
            for deployment_id in self._backlog:
                record = await self._record(deployment_id)
                self._start(deployment_id, record.options.start_at)
            self._backlog.clear()
            await asyncio.Event().wait()

    async def undeploy(self, deployment_id: str, actor: str = "") -> None:
        """Stop an unfinished deployment; devices already updated keep their model."""
        try:
            check_name(deployment_id, "DeploymentId")
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        record = await self._record(deployment_id)
        if record.state in FINAL:
            raise InvalidState(f"{deployment_id} is {record.state.label} already")
        task = self._runs.pop(deployment_id, None)
        if task is not None:
            task.cancel()
        await self._save(
            record.model_copy(update={"state": FAILED, "last_error": f"undeployed by {actor or 'a client'}"}), []
        )
        audit.record("undeploy", "ok", target=deployment_id, detail=f"was {record.state.label}")

    async def rollback(self, target: str, version: str, actor: str = "") -> str:
        """Back to each device's fallback (version empty) or to a named stored version."""
        try:
            check_name(target, "Target")
            if version:
                check_version(version)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        if target in self._devices.links:
            devices, origin = [target], None
        else:
            origin = await self._record(target)
            devices = list(origin.targets)
        if version:
            model = origin.model if origin else self._devices.get(target).view.active_model
            deployment_id = await self.deploy(model, version, devices, "", actor)
        else:
            record = await self._new_record(
                model=origin.model if origin else "",
                version="fallback",
                targets=devices,
                options_json=StoredOptions(fallback=True).to_json(),
            )
            now = record.created_at
            await self._save(
                record,
                [TargetRecord(deployment_id=record.id, device_id=d, state=PENDING, updated_at=now) for d in devices],
            )
            self._start(record.id)
            deployment_id = record.id
        if origin is not None:
            await self._save(origin.model_copy(update={"state": ROLLED_BACK}), [])
        audit.record("rollback", "ok", target=target, detail=f"to {version or 'fallback'} ({deployment_id})")
        return deployment_id

    async def _record(self, deployment_id: str) -> DeploymentRecord:
        for record in await self._store.deployments():
            if record.id == deployment_id:
                return record
        raise NotFound(f"no deployment {deployment_id!r}")

    # --- running ----------------------------------------------------------------------------------

    async def _run(self, deployment_id: str) -> None:
        try:
            await self._rollout(deployment_id)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a deployment fails with its reason; the gateway goes on
            _log.exception("deployment %s failed unexpectedly", deployment_id)
            record = await self._record(deployment_id)
            await self._save(record.model_copy(update={"state": FAILED, "last_error": f"internal error: {exc}"}), [])
        finally:
            self._runs.pop(deployment_id, None)
        await asyncio.to_thread(heap.trim)  # the transfers' freed buffers go back to the system

    async def _rollout(self, deployment_id: str) -> None:
        record = await self._record(deployment_id)
        options = record.options
        fallback = options.fallback
        targets = {t.device_id: t for t in await self._store.targets(deployment_id)}
        size = options.waves or len(record.targets)
        waves = [record.targets[i : i + size] for i in range(0, len(record.targets), size)]
        plan = TargetPlan(
            package=None,
            sha256="",
            slot=options.slot,
            binding=options.binding,
            confirmation_timeout_s=options.confirmation_timeout_s,
            health_check_s=options.health_check_s,
            retry_for_s=options.retry_for_s,
        )
        if not fallback:
            stored = await self._repository_version(record.model, record.version)
            if stored is None:
                raise NotFound(f"{record.model} {record.version} is no longer stored on the gateway")
            plan = replace(plan, package=self._repository.path(stored), sha256=stored.sha256)
        for number, wave in enumerate(waves, start=1):
            todo = [d for d in wave if targets[d].state is not ACTIVE]
            results = await asyncio.gather(
                *(self._target(record, targets[d], plan) for d in todo), return_exceptions=True
            )
            for device, result in zip(todo, results, strict=True):
                if isinstance(result, BaseException) and not isinstance(result, ModelLineError):
                    raise result  # a defect, not a device's answer: reported as an internal error by _run
                if not isinstance(result, BaseException):
                    targets[device] = result
            failures = [(d, r) for d, r in zip(todo, results, strict=True) if isinstance(r, BaseException)]
            for device, error in failures:
                await self._fail_target(record, device, str(error))
            if failures:
                device, error = failures[0]
                message = f"wave {number}, device {device}: {error}"
                record = await self._record(deployment_id)
                await self._save(record.model_copy(update={"state": FAILED, "last_error": message}), [])
                _log.warning("deployment %s failed: %s", deployment_id, message)
                return
        record = await self._record(deployment_id)
        await self._save(record.model_copy(update={"state": ACTIVE, "progress": 100.0, "last_error": ""}), [])
        _log.info("deployment %s active on %s", deployment_id, ", ".join(record.targets))

    async def _fail_target(self, record: DeploymentRecord, device: str, reason: str) -> None:
        target = next(t for t in await self._store.targets(record.id) if t.device_id == device)
        failed = target.model_copy(update={"state": FAILED, "last_error": reason, "updated_at": self._clock()})
        await self._save(await self._record(record.id), [failed])

    async def _step(
        self, record: DeploymentRecord, target: TargetRecord, state: DeploymentState, error: str = ""
    ) -> TargetRecord:
        target = target.model_copy(update={"state": state, "last_error": error, "updated_at": self._clock()})
        current = await self._record(record.id)
        done = sum(
            1 for t in await self._store.targets(record.id) if t.device_id != target.device_id and t.state == ACTIVE
        )
        done += state == ACTIVE
        overall = current.state if current.state in FINAL else (state if state != ACTIVE else CONFIRMING)
        await self._save(
            current.model_copy(update={"state": overall, "progress": 100.0 * done / len(current.targets)}), [target]
        )
        return target

    async def _target(self, record: DeploymentRecord, target: TargetRecord, plan: TargetPlan) -> TargetRecord:
        async def step(current: TargetRecord, state: DeploymentState) -> TargetRecord:
            return await self._step(record, current, state)

        device = self._devices.get(target.device_id)
        return await TargetRollout(record, plan, device, step, self._clock, self._transfers).run(target)
