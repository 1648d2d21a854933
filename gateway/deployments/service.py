"""Deployments: a stored model version rolled out to edge devices through the DI software update.

Per target: wait until the device is reachable (an offline device keeps the
deployment Pending until it returns), transfer the package to PendingVersion,
InstallSoftwarePackage with the package hash, set the binding, watch the
device's health and first predictions, then Confirm. With a binding, only a
Good prediction made by the new version with that binding counts: the pipeline's
Configuration, read right after SetBinding, must name both, and the device must
report that very Configuration as the one behind its newest Good prediction
(GoodConfiguration; see edge_node/runtime/pipeline.py). A deployment of the
version a device already serves applies a different binding alone and checks it
the same way (``_rebind``). Targets go in waves of
``waves`` devices (all at once by default) and the rollout stops at the first
failure: later waves are left untouched. Every step is saved before the next
begins, so a restarted gateway resumes unfinished deployments where they stood.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway.devices.device import Device
from gateway.devices.registry import DeviceRegistry
from gateway.models.repository import PackageRepository
from gateway.store.base import AuditEntry, DeploymentRecord, ModelVersionRecord, Store, TargetRecord
from nodesets.ids import DeploymentState, DeviceHealth, PipelineState, SoftwareVersionFileType
from sdk.binding import Binding
from sdk.errors import InvalidState, NotFound, UpdateFailed, UsageError

_log = logging.getLogger(__name__)

PENDING, TRANSFERRING, INSTALLING = DeploymentState.PENDING, DeploymentState.TRANSFERRING, DeploymentState.INSTALLING
CONFIRMING, ACTIVE, FAILED = DeploymentState.CONFIRMING, DeploymentState.ACTIVE, DeploymentState.FAILED
ROLLED_BACK = DeploymentState.ROLLED_BACK
FINAL = {ACTIVE, FAILED, ROLLED_BACK}


class DeployOptions(BaseModel):
    """OptionsJson of Deploy."""

    model_config = ConfigDict(extra="forbid")

    binding: Binding | None = Field(None, description="Input binding set on every target after the install.")
    slot: str | None = Field(None, description="Model slot on the devices; needed only when they have several.")
    confirmation_timeout_s: float = Field(
        60.0, ge=0, le=86_400, allow_inf_nan=False, description="The device reverts unless confirmed in time."
    )
    health_check_s: float = Field(
        15.0,
        ge=0,
        le=600,
        allow_inf_nan=False,
        description="How long a target may take to show healthy predictions before it fails.",
    )
    start_at: datetime | None = Field(
        None, description="Maintenance window: do not start before (ISO 8601, with zone)."
    )
    waves: int | None = Field(None, ge=1, description="Devices per wave; all at once when not given.")

    @classmethod
    def parse(cls, text: str) -> DeployOptions:
        """From OptionsJson; UsageError naming the first problem."""
        if not text.strip():
            return cls()
        try:
            return cls.model_validate_json(text)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise UsageError(f"OptionsJson {where}: {first['msg']}") from None


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
    ) -> None:
        self._store = store
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
        for listener in self.listeners:
            await listener(record, await self._store.targets(record.id))
        return record

    async def _next_id(self) -> str:
        return f"deploy-{len(await self._store.deployments()) + 1:04d}"

    async def deploy(self, model: str, version: str, targets: list[str], options_json: str, actor: str = "") -> str:
        """Validate, save as Pending, start (or schedule); returns the deployment id."""
        options = DeployOptions.parse(options_json)
        if await self._repository_version(model, version) is None:
            raise NotFound(f"no stored model version {model} {version} (push it first)")
        if not targets or len(set(targets)) != len(targets):
            raise UsageError("Targets must name one or more devices, each once")
        for device in targets:
            self._devices.get(device)
        if options.start_at is not None and options.start_at.tzinfo is None:
            raise UsageError("start_at needs a time zone, e.g. 2026-12-01T02:00:00+01:00")
        now = self._clock()
        record = DeploymentRecord(
            id=await self._next_id(),
            model=model,
            version=version,
            targets=list(targets),
            options_json=options.model_dump_json(exclude_none=True),
            state=PENDING,
            created_at=now,
            updated_at=now,
        )
        await self._save(
            record, [TargetRecord(deployment_id=record.id, device_id=d, state=PENDING, updated_at=now) for d in targets]
        )
        await self._store.audit(
            AuditEntry(
                at=now, actor=actor, action="deploy", detail=f"{record.id}: {model} {version} to {', '.join(targets)}"
            )
        )
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
                self._start(
                    deployment_id,
                    DeployOptions.model_validate(
                        {k: v for k, v in json.loads(record.options_json or "{}").items() if k != "fallback"}
                    ).start_at,
                )
            self._backlog.clear()
            await asyncio.Event().wait()

    async def undeploy(self, deployment_id: str, actor: str = "") -> None:
        """Stop an unfinished deployment; devices already updated keep their model."""
        record = await self._record(deployment_id)
        if record.state in FINAL:
            raise InvalidState(f"{deployment_id} is {record.state.label} already")
        task = self._runs.pop(deployment_id, None)
        if task is not None:
            task.cancel()
        await self._save(
            record.model_copy(update={"state": FAILED, "last_error": f"undeployed by {actor or 'a client'}"}), []
        )
        await self._store.audit(AuditEntry(at=self._clock(), actor=actor, action="undeploy", detail=deployment_id))

    async def rollback(self, target: str, version: str, actor: str = "") -> str:
        """Back to each device's fallback (version empty) or to a named stored version."""
        if target in self._devices.links:
            devices, origin = [target], None
        else:
            origin = await self._record(target)
            devices = list(origin.targets)
        if version:
            model = origin.model if origin else self._devices.get(target).view.active_model
            deployment_id = await self.deploy(model, version, devices, "", actor)
        else:
            now = self._clock()
            record = DeploymentRecord(
                id=await self._next_id(),
                model=origin.model if origin else "",
                version="fallback",
                targets=devices,
                options_json=json.dumps({"fallback": True}),
                state=PENDING,
                created_at=now,
                updated_at=now,
            )
            await self._save(
                record,
                [TargetRecord(deployment_id=record.id, device_id=d, state=PENDING, updated_at=now) for d in devices],
            )
            self._start(record.id)
            deployment_id = record.id
        if origin is not None:
            await self._save(origin.model_copy(update={"state": ROLLED_BACK}), [])
        await self._store.audit(
            AuditEntry(
                at=self._clock(),
                actor=actor,
                action="rollback",
                detail=f"{target} -> {version or 'fallback'} ({deployment_id})",
            )
        )
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

    async def _rollout(self, deployment_id: str) -> None:
        record = await self._record(deployment_id)
        raw = json.loads(record.options_json or "{}")
        fallback = bool(raw.pop("fallback", False))
        options = DeployOptions.model_validate(raw)
        targets = {t.device_id: t for t in await self._store.targets(deployment_id)}
        size = options.waves or len(record.targets)
        waves = [record.targets[i : i + size] for i in range(0, len(record.targets), size)]
        package = None
        if not fallback:
            stored = await self._repository_version(record.model, record.version)
            if stored is None:
                raise NotFound(f"{record.model} {record.version} is no longer stored on the gateway")
            package = self._repository.path(stored)
        for number, wave in enumerate(waves, start=1):
            todo = [d for d in wave if targets[d].state != ACTIVE]
            results = await asyncio.gather(
                *(self._target(record, targets[d], options, package) for d in todo), return_exceptions=True
            )
            failures = [(d, r) for d, r in zip(todo, results, strict=True) if isinstance(r, BaseException)]
            for device, target_state in zip(todo, results, strict=True):
                if not isinstance(target_state, BaseException):
                    targets[device] = target_state
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

    async def _target(
        self, record: DeploymentRecord, target: TargetRecord, options: DeployOptions, package: Path | None
    ) -> TargetRecord:
        link = self._devices.get(target.device_id)
        await link.wait_online()  # an offline device keeps the deployment Pending until it returns
        su = await link.software_update(options.slot)
        if package is None:  # rollback to the device's fallback version
            fallback = await su.version(SoftwareVersionFileType.FALLBACK)
            if fallback.empty:
                raise UpdateFailed("the device has no fallback version")
            target = await self._step(record, target, INSTALLING)
            await su.set_confirmation_timeout(0)
            await su.install(fallback)
            link.refresh()
            return await self._step(record, target, ACTIVE)
        current = await su.version(SoftwareVersionFileType.CURRENT)
        if current.revision == record.version and current.hash.hex() == package.stem:
            if options.binding is not None:  # already there: only a different binding is new
                slot = options.slot or await su.slot_name()
                target = await self._rebind(link, record, target, options, options.binding, slot)
            return await self._step(record, target, ACTIVE)  # already there (a resumed deployment)
        target = await self._step(record, target, TRANSFERRING)
        await su.set_confirmation_timeout(options.confirmation_timeout_s)
        pending = await su.transfer(package)
        target = await self._step(record, target, INSTALLING)
        try:
            await su.install(pending)
        except UpdateFailed:
            await su.resume()  # leave the device Idle, serving its previous model
            raise
        slot = options.slot or await su.slot_name()
        configuration = None
        if options.binding is not None:
            await link.set_binding(slot, options.binding.to_json())
            configuration = await self._configuration(link, record, options.binding, slot)
        link.refresh()
        target = await self._step(record, target, CONFIRMING)
        await self._watch(link, options, slot, configuration)
        if options.confirmation_timeout_s > 0:
            await su.confirm()
        return await self._step(record, target, ACTIVE)

    async def _rebind(
        self,
        link: Device,
        record: DeploymentRecord,
        target: TargetRecord,
        options: DeployOptions,
        binding: Binding,
        slot: str,
    ) -> TargetRecord:
        """The version serves already: apply the deployment's binding if it differs and health-check it.

        Nothing is installed, so no ConfirmationTimeout would undo a bad binding: a failed check puts
        the previous binding back here, and the target fails with the reason.
        """
        previous = await link.binding(slot)
        if previous and Binding.parse(previous).to_json() == binding.to_json():
            return target
        target = await self._step(record, target, CONFIRMING)
        await link.set_binding(slot, binding.to_json())
        try:
            configuration = await self._configuration(link, record, binding, slot)
            await self._watch(link, options, slot, configuration, after="the binding change")
        except UpdateFailed as exc:
            await link.set_binding(slot, previous)
            raise UpdateFailed(f"{exc}; the previous binding was restored") from None
        return target

    async def _configuration(self, link: Device, record: DeploymentRecord, binding: Binding, slot: str) -> str:
        """The slot's Configuration after SetBinding; it must name the deployed version and binding."""
        configuration = await link.configuration(slot)
        expected = f"{record.model} {record.version} binding {binding.digest()} #"
        if not configuration.startswith(expected):
            raise UpdateFailed(f"pipeline {slot} serves {configuration or 'nothing'!r}, not {expected[:-2]!r}")
        return configuration

    async def _watch(
        self, link: Device, options: DeployOptions, slot: str, configuration: str | None, after: str = "the install"
    ) -> None:
        """Before Confirm: with a binding, the device must report a Good prediction made by ``configuration``
        (the new version with the deployment's binding) within health_check_s; without one, it must not
        report FAILURE. Anything less is not confirmed, and the device reverts by itself when its
        ConfirmationTimeout runs out."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + options.health_check_s
        settled = loop.time() + min(0.5, options.health_check_s)  # without a binding: a short look at its health
        while True:
            if link.view.health is DeviceHealth.FAILURE:
                raise UpdateFailed("the device reports FAILURE after the install")
            if configuration is None:
                if loop.time() >= settled:
                    return
            elif link.view.good_configuration.get(slot) == configuration:
                return
            if loop.time() >= deadline:
                state = link.view.pipelines.get(slot, PipelineState.NO_MODEL)
                raise UpdateFailed(
                    f"no healthy predictions within {options.health_check_s:g} s of {after} "
                    f"(pipeline {slot}: {state.label})"
                )
            await asyncio.sleep(0.1)
