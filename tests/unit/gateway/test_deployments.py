"""The deployment service against fake devices on an injected clock: the rollout rules without any network."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.deployments.service import DeploymentService
from gateway.devices.device import Device, DeviceView, SlotUpdate
from gateway.devices.registry import DeviceRegistry
from gateway.models.repository import PackageRepository
from gateway.store.base import DeploymentRecord, TargetRecord
from gateway.store.sqlite import SqliteStore
from nodesets.ids import DeploymentState, DeviceState, InstallationState, PipelineState, SoftwareVersionFileType
from sdk.binding import Binding
from sdk.errors import ConnectionLost, UpdateFailed
from sdk.versions import VersionInfo
from tests.conftest import Signer
from tests.edge_harness import wait_for


class Clock:
    """UTC time that moves only when the test (or a fake device) says so."""

    def __init__(self) -> None:
        self.now = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@dataclass
class FakeSlot:
    """A slot's DI software update as a fake device runs it; records every call."""

    device: FakeDevice
    calls: list[str] = field(default_factory=list)
    versions: dict[SoftwareVersionFileType, VersionInfo] = field(default_factory=dict)
    state: InstallationState = InstallationState.IDLE
    timeout: float = 0.0
    waiting: bool = False
    status: str = ""

    async def slot_name(self) -> str:
        return "main"

    async def version(self, which: SoftwareVersionFileType) -> VersionInfo:
        return self.versions.get(which, VersionInfo("", "", b""))

    async def set_confirmation_timeout(self, seconds: float) -> None:
        self.calls.append(f"timeout {seconds:g}")
        self.timeout = seconds

    async def transfer(self, package: Path, sha256: bytes | None = None) -> VersionInfo:
        self.calls.append("transfer")
        if self.device.link_drops:
            self.device.link_drops -= 1
            raise ConnectionLost("connection lost during the transfer: BadConnectionClosed")
        digest = hashlib.sha256(package.read_bytes()).digest()
        assert sha256 in (None, digest), "the rollout passed another package's hash"
        pending = VersionInfo("urn:modelline:model:pump-health", "1.0.0", digest)
        self.versions[SoftwareVersionFileType.PENDING] = pending
        return pending

    async def install(self, version: VersionInfo) -> str:
        self.calls.append(f"install {version.revision}")
        if self.device.install_fails:
            self.state = InstallationState.ERROR
            raise UpdateFailed("samples do not reproduce on this device")
        previous = self.versions.get(SoftwareVersionFileType.CURRENT)
        self.versions[SoftwareVersionFileType.CURRENT] = version
        self.waiting = self.timeout > 0
        if self.device.reverts_after_s is not None:  # its ConfirmationTimeout runs out, the link up
            asyncio.get_running_loop().call_later(self.device.reverts_after_s, self._revert, version, previous)
        self.device.changes += 1
        if self.device.predicts_before_binding:  # the new model's Good output with the binding it found
            self.device.predict_good("main")
        return "installed"

    async def installation_state(self) -> InstallationState:
        return self.state

    async def wait_installed(self) -> str:
        return "installed"

    async def awaiting_confirmation(self) -> bool:
        return self.waiting

    async def resume(self) -> None:
        self.calls.append("resume")
        self.state = InstallationState.IDLE

    async def confirm(self) -> None:
        self.calls.append("confirm")
        self.waiting = False

    async def update_status(self) -> str:
        return self.status

    def _revert(self, failed: VersionInfo, previous: VersionInfo | None) -> None:
        if not self.waiting:
            return
        self.waiting = False
        if previous is None:
            self.versions.pop(SoftwareVersionFileType.CURRENT, None)
        else:
            self.versions[SoftwareVersionFileType.CURRENT] = previous
        back_to = f"reverted to {previous.revision}" if previous else "no fallback: the slot serves no model"
        self.status = f"{failed.revision}: not confirmed within {self.device.reverts_after_s:g} s; {back_to}"


class FakeDevice:
    """An edge device that is always online and answers as told; a Good prediction follows each binding.

    Its pipeline Configuration is '<model> <version> binding <digest> #<change>', as an edge node's."""

    def __init__(self, device_id: str, endpoint: str, clock: Clock) -> None:
        self.device_id, self.endpoint = device_id, endpoint
        self.view = DeviceView(state=DeviceState.ONLINE)
        self.listeners: list[Callable[[Device], Awaitable[None]]] = []
        self.clock = clock
        self.slot = FakeSlot(self)
        self.install_fails = False
        self.predicts = True
        self.link_drops = 0  # how many transfers lose the link before one gets through
        self.predicts_before_binding = False
        self.binding_json = ""
        self.changes = 0
        self.restarts_when_bound = 0  # how many health checks see a restart (the install reverts)
        self.reverts_after_s: float | None = None  # an unconfirmed install reverts after this long
        self.up = True

    def current_configuration(self) -> str:
        current = self.slot.versions.get(SoftwareVersionFileType.CURRENT)
        digest = Binding.parse(self.binding_json).digest() if self.binding_json else "none"
        return f"pump-health {current.revision} binding {digest} #{self.changes}" if current else ""

    @property
    def online(self) -> bool:
        return self.up

    async def wait_online(self, within_s: float | None = None) -> bool:
        self.up = True  # back at once: the rollout's own retry delay is the wait
        return True

    @asynccontextmanager
    async def update_session(self, slot: str | None = None) -> AsyncIterator[SlotUpdate]:
        yield self.slot

    async def set_binding(self, slot: str, binding_json: str) -> None:
        self.slot.calls.append("bind")
        self.binding_json = binding_json
        self.changes += 1
        if self.predicts:  # the first Good output with this binding
            self.predict_good(slot)

    async def binding(self, slot: str) -> str:
        return self.binding_json

    def predict_good(self, slot: str) -> None:
        """A Good prediction of what serves now: the newest, and the one GoodConfiguration names."""
        self.view.good_configuration[slot] = self.current_configuration()
        self.view.pipelines[slot] = PipelineState.RUNNING

    async def configuration(self, slot: str) -> str:
        configuration = self.current_configuration()
        if self.restarts_when_bound:  # then the node restarts before Confirm: it reverts, its link is down
            self.restarts_when_bound -= 1
            self.up = False
            self.slot.versions.clear()
            self.slot.waiting = False
            self.binding_json = ""  # the revert restores the binding from before the install
        return configuration

    def refresh(self) -> None:
        pass

    async def run(self) -> None:
        await asyncio.Event().wait()


@dataclass
class Plant:
    service: DeploymentService
    devices: dict[str, FakeDevice]
    store: SqliteStore
    sha256: str
    runner: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.runner = asyncio.create_task(self.service.run())


@pytest.fixture
async def plant(tmp_path: Path, signer: Signer, package: Path) -> AsyncIterator[Plant]:
    """A running deployment service over three fake devices."""
    async with _plant(tmp_path, signer, package, start=True) as running:
        yield running


@pytest.fixture
async def stopped(tmp_path: Path, signer: Signer, package: Path) -> AsyncIterator[Plant]:
    """The same, not started yet: the test stores what a killed gateway left, then calls start()."""
    async with _plant(tmp_path, signer, package, start=False) as waiting:
        yield waiting


@asynccontextmanager
async def _plant(
    tmp_path: Path, signer: Signer, package: Path, start: bool, parallel_transfers: int = 8
) -> AsyncIterator[Plant]:
    clock = Clock()
    fakes: dict[str, FakeDevice] = {}

    def factory(device_id: str, endpoint: str) -> Device:
        fakes[device_id] = FakeDevice(device_id, endpoint, clock)
        return fakes[device_id]

    async with SqliteStore.open(tmp_path / "gw.sqlite3") as store:
        repository = PackageRepository(store, tmp_path / "packages", signer.trust, clock)
        upload = tmp_path / "upload.mlpkg"
        upload.write_bytes(package.read_bytes())
        stored, _ = await repository.add(upload)
        registry = DeviceRegistry(store, factory, clock=clock)
        for name in ("edge-a", "edge-b", "edge-c"):
            await registry.register(name, f"opc.tcp://127.0.0.1:4841/{name}/")
        service = DeploymentService(store, repository, registry, clock, parallel_transfers=parallel_transfers)
        plant = Plant(service, fakes, store, stored.sha256)
        if start:
            plant.start()
        try:
            yield plant
        finally:
            if plant.runner is not None:
                plant.runner.cancel()
                await asyncio.gather(plant.runner, return_exceptions=True)


async def _finished(plant: Plant, deployment_id: str) -> DeploymentRecord:
    async def final() -> DeploymentRecord | None:
        record = next(r for r in await plant.store.deployments() if r.id == deployment_id)
        done = (DeploymentState.ACTIVE, DeploymentState.FAILED)
        return record if record.state in done else None

    return await wait_for(final, what=f"{deployment_id} to finish")


BINDING = {"inputs": {"x": {"endpoint": "opc.tcp://127.0.0.1:4842/", "node_id": "ns=2;s=X"}}}


def _options(**values: object) -> str:
    return json.dumps(values)


async def test_each_target_is_transferred_installed_bound_health_checked_and_confirmed(plant: Plant) -> None:
    options = _options(binding=BINDING, confirmation_timeout_s=30)
    deployment = await plant.service.deploy("pump-health", "1.0.0", ["edge-a", "edge-b"], options, "alice")
    record = await _finished(plant, deployment)
    assert (record.state, record.progress, record.last_error) == (DeploymentState.ACTIVE, 100.0, "")
    for name in ("edge-a", "edge-b"):
        assert plant.devices[name].slot.calls == ["transfer", "timeout 30", "install 1.0.0", "bind", "confirm"]
    assert plant.devices["edge-c"].slot.calls == []
    assert {t.state for t in await plant.store.targets(deployment)} == {DeploymentState.ACTIVE}


@pytest.mark.parametrize("parallel", [1, 2, 3])
async def test_a_wave_transfers_at_most_parallel_transfers_packages_at_once(
    tmp_path: Path, signer: Signer, package: Path, parallel: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    in_flight: list[int] = [0, 0]  # now, most
    transfer = FakeSlot.transfer

    async def counted(self: FakeSlot, path: Path, sha256: bytes | None = None) -> VersionInfo:
        in_flight[0] += 1
        in_flight[1] = max(in_flight[1], in_flight[0])
        await asyncio.sleep(0.05)  # a transfer takes a while: the others of the wave start meanwhile
        in_flight[0] -= 1
        return await transfer(self, path, sha256)

    monkeypatch.setattr(FakeSlot, "transfer", counted)
    async with _plant(tmp_path, signer, package, start=True, parallel_transfers=parallel) as plant:
        deployment = await plant.service.deploy("pump-health", "1.0.0", ["edge-a", "edge-b", "edge-c"], "{}")
        record = await _finished(plant, deployment)
    assert record.state is DeploymentState.ACTIVE  # one wave of three: every target got its package
    assert in_flight[1] == parallel


async def test_a_failed_install_fails_the_wave_resumes_the_device_and_spares_later_waves(plant: Plant) -> None:
    plant.devices["edge-b"].install_fails = True
    deployment = await plant.service.deploy("pump-health", "1.0.0", ["edge-a", "edge-b", "edge-c"], '{"waves": 2}')
    record = await _finished(plant, deployment)
    assert record.state is DeploymentState.FAILED
    assert record.last_error == "wave 1, device edge-b: samples do not reproduce on this device"
    assert plant.devices["edge-b"].slot.calls[-2:] == ["install 1.0.0", "resume"]
    assert "confirm" not in plant.devices["edge-b"].slot.calls
    assert plant.devices["edge-c"].slot.calls == []  # the second wave is never touched


async def test_no_good_prediction_after_the_install_is_never_confirmed(plant: Plant) -> None:
    plant.devices["edge-a"].predicts = False
    options = _options(binding=BINDING, health_check_s=0.3)
    deployment = await plant.service.deploy("pump-health", "1.0.0", ["edge-a"], options)
    record = await _finished(plant, deployment)
    assert record.state is DeploymentState.FAILED
    assert "no healthy predictions within 0.3 s of the install" in record.last_error
    assert "confirm" not in plant.devices["edge-a"].slot.calls  # left to revert by itself


async def test_a_device_that_reverts_during_the_health_check_is_reported_as_reverted(plant: Plant) -> None:
    """Its ConfirmationTimeout runs out before the health check does, the link up all along."""
    device = plant.devices["edge-a"]
    device.slot.versions[SoftwareVersionFileType.CURRENT] = VersionInfo("urn:x", "0.9.0", b"\x01" * 32)
    device.predicts = False
    device.reverts_after_s = 0.1
    options = _options(binding=BINDING, health_check_s=0.5, confirmation_timeout_s=0.1)
    record = await _finished(plant, await plant.service.deploy("pump-health", "1.0.0", ["edge-a"], options))
    assert record.state is DeploymentState.FAILED
    assert record.last_error == (
        "wave 1, device edge-a: the device reverted to 0.9.0 before the install was confirmed (device: 1.0.0: not "
        "confirmed within 0.1 s; reverted to 0.9.0); the health check found no healthy predictions within "
        "0.5 s of the install (pipeline main: NoModel)"
    )
    assert "confirm" not in device.slot.calls


async def test_a_prediction_older_than_the_install_does_not_count(plant: Plant) -> None:
    device = plant.devices["edge-a"]
    device.predicts = False
    device.view.good_configuration["main"] = "pump-health 0.9.0 binding none #7"  # made by the model before
    options = _options(binding=BINDING, health_check_s=0.3)
    record = await _finished(plant, await plant.service.deploy("pump-health", "1.0.0", ["edge-a"], options))
    assert record.state is DeploymentState.FAILED and "confirm" not in device.slot.calls


async def test_a_lost_link_is_retried_and_the_target_completes(plant: Plant) -> None:
    plant.devices["edge-a"].link_drops = 1
    deployment = await plant.service.deploy("pump-health", "1.0.0", ["edge-a"], _options(retry_for_s=30))
    record = await _finished(plant, deployment)
    assert record.state is DeploymentState.ACTIVE
    assert plant.devices["edge-a"].slot.calls.count("transfer") == 2


async def test_a_link_that_stays_lost_fails_the_target_with_the_step_and_the_cause(plant: Plant) -> None:
    plant.devices["edge-a"].link_drops = 100
    deployment = await plant.service.deploy("pump-health", "1.0.0", ["edge-a"], _options(retry_for_s=1.5))
    record = await _finished(plant, deployment)
    assert record.state is DeploymentState.FAILED
    assert record.last_error == (
        "wave 1, device edge-a: connection lost during the transfer: BadConnectionClosed "
        "(gave up after 1.5 s of retries)"
    )
    [target] = await plant.store.targets(deployment)
    assert target.state is DeploymentState.FAILED and "gave up" in target.last_error


async def _stored_confirming(plant: Plant, **options: object) -> str:
    """A deployment as a gateway killed during Confirming left it: target Confirming, nothing confirmed yet."""
    now = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)
    record = DeploymentRecord(
        id="deploy-0001",
        model="pump-health",
        version="1.0.0",
        targets=["edge-a"],
        options_json=_options(binding=BINDING, **options),
        state=DeploymentState.CONFIRMING,
        created_at=now,
        updated_at=now,
    )
    target = TargetRecord(deployment_id=record.id, device_id="edge-a", state=DeploymentState.CONFIRMING, updated_at=now)
    await plant.store.put_deployment(record, [target])
    return record.id


async def test_resume_of_a_confirming_target_confirms_only_after_a_fresh_health_check(stopped: Plant) -> None:
    plant = stopped
    device = plant.devices["edge-a"]
    installed = VersionInfo("urn:modelline:model:pump-health", "1.0.0", bytes.fromhex(plant.sha256))
    device.slot.versions[SoftwareVersionFileType.CURRENT] = installed
    device.slot.waiting = True  # the device still waits for Confirm
    device.binding_json = Binding.parse(json.dumps(BINDING)).to_json()  # bound before the gateway was killed
    device.predict_good("main")  # and predicting well since
    deployment = await _stored_confirming(plant)
    plant.start()
    record = await _finished(plant, deployment)
    assert record.state is DeploymentState.ACTIVE
    assert device.slot.calls == ["confirm"]  # no second transfer or install, and confirmed: not assumed


async def test_resume_of_a_confirming_target_does_not_confirm_on_a_good_prediction_older_than_bad_ones(
    stopped: Plant,
) -> None:
    plant = stopped
    device = plant.devices["edge-a"]
    installed = VersionInfo("urn:modelline:model:pump-health", "1.0.0", bytes.fromhex(plant.sha256))
    device.slot.versions[SoftwareVersionFileType.CURRENT] = installed
    device.slot.waiting = True
    device.binding_json = Binding.parse(json.dumps(BINDING)).to_json()
    device.predict_good("main")  # before the gateway was killed ...
    device.view.pipelines["main"] = PipelineState.DEGRADED  # ... and only Bad predictions since
    device.predicts = False
    deployment = await _stored_confirming(plant, health_check_s=0.3)
    plant.start()
    record = await _finished(plant, deployment)
    assert record.state is DeploymentState.FAILED
    assert "no healthy predictions within 0.3 s of the install (pipeline main: Degraded)" in record.last_error
    assert device.slot.calls == []  # not confirmed: the device reverts by itself


async def test_a_device_that_restarts_during_the_health_check_is_installed_again(plant: Plant) -> None:
    device = plant.devices["edge-a"]
    device.restarts_when_bound = 1
    options = _options(binding=BINDING, retry_for_s=30)
    record = await _finished(plant, await plant.service.deploy("pump-health", "1.0.0", ["edge-a"], options))
    assert record.state is DeploymentState.ACTIVE, record.last_error
    assert [c for c in device.slot.calls if not c.startswith("timeout")] == [
        "transfer",
        "install 1.0.0",
        "bind",  # the node restarts: the link is lost during the health check, and the install reverted
        "transfer",
        "install 1.0.0",
        "bind",
        "confirm",
    ]


async def test_resume_of_a_confirming_target_already_confirmed_and_bound_checks_health_again(stopped: Plant) -> None:
    plant = stopped
    device = plant.devices["edge-a"]
    installed = VersionInfo("urn:modelline:model:pump-health", "1.0.0", bytes.fromhex(plant.sha256))
    device.slot.versions[SoftwareVersionFileType.CURRENT] = installed  # confirmed, or a binding change ...
    device.binding_json = Binding.parse(json.dumps(BINDING)).to_json()  # ... applied before the gateway died
    device.view.pipelines["main"] = PipelineState.DEGRADED  # and no Good prediction since
    device.predicts = False
    deployment = await _stored_confirming(plant, health_check_s=0.3)
    plant.start()
    record = await _finished(plant, deployment)
    assert record.state is DeploymentState.FAILED
    assert "no healthy predictions within 0.3 s of resuming (pipeline main: Degraded)" in record.last_error
    assert device.slot.calls == []


async def test_resume_of_a_confirming_target_that_reverted_meanwhile_reports_the_revert(stopped: Plant) -> None:
    plant = stopped
    device = plant.devices["edge-a"]
    device.slot.versions[SoftwareVersionFileType.CURRENT] = VersionInfo("urn:x", "0.9.0", b"\x01" * 32)
    deployment = await _stored_confirming(plant)
    plant.start()
    record = await _finished(plant, deployment)
    assert record.state is DeploymentState.FAILED
    assert "the device reverted to 0.9.0 before the install was confirmed" in record.last_error
    assert device.slot.calls == []


async def test_a_package_already_pending_is_installed_without_a_second_transfer(plant: Plant) -> None:
    device = plant.devices["edge-a"]
    pending = VersionInfo("urn:modelline:model:pump-health", "1.0.0", bytes.fromhex(plant.sha256))
    device.slot.versions[SoftwareVersionFileType.PENDING] = pending
    record = await _finished(plant, await plant.service.deploy("pump-health", "1.0.0", ["edge-a"], ""))
    assert record.state is DeploymentState.ACTIVE
    assert device.slot.calls == ["timeout 60", "install 1.0.0", "confirm"]


async def test_good_predictions_of_the_new_model_with_the_old_binding_do_not_count(plant: Plant) -> None:
    device = plant.devices["edge-a"]
    device.binding_json = json.dumps(
        {"inputs": {"x": {"endpoint": "opc.tcp://127.0.0.1:4842/", "node_id": "ns=2;s=Old"}}}
    )
    device.predicts_before_binding, device.predicts = True, False  # Good only before the deployment's binding
    options = _options(binding=BINDING, health_check_s=0.3)
    record = await _finished(plant, await plant.service.deploy("pump-health", "1.0.0", ["edge-a"], options))
    assert device.view.good_configuration["main"].startswith("pump-health 1.0.0 binding ")
    assert record.state is DeploymentState.FAILED and "no healthy predictions within 0.3 s" in record.last_error
    assert "confirm" not in device.slot.calls


def _running(device: FakeDevice, package: Path, binding: dict[str, object]) -> None:
    """The device serves the deployed version already, with ``binding``."""
    digest = hashlib.sha256(package.read_bytes()).digest()
    device.slot.versions[SoftwareVersionFileType.CURRENT] = VersionInfo(
        "urn:modelline:model:pump-health", "1.0.0", digest
    )
    device.binding_json = json.dumps(binding)


OTHER = {"inputs": {"x": {"endpoint": "opc.tcp://127.0.0.1:4842/", "node_id": "ns=2;s=Other"}}}


async def test_redeploying_the_running_version_with_a_new_binding_applies_and_checks_it(
    plant: Plant, package: Path
) -> None:
    device = plant.devices["edge-a"]
    _running(device, package, OTHER)
    record = await _finished(
        plant, await plant.service.deploy("pump-health", "1.0.0", ["edge-a"], _options(binding=BINDING))
    )
    assert (record.state, record.last_error) == (DeploymentState.ACTIVE, "")
    assert device.slot.calls == ["bind"]  # nothing transferred, installed or confirmed
    assert Binding.parse(device.binding_json) == Binding.model_validate(BINDING)

    again = await _finished(
        plant, await plant.service.deploy("pump-health", "1.0.0", ["edge-a"], _options(binding=BINDING))
    )
    assert again.state is DeploymentState.ACTIVE and device.slot.calls == ["bind"]  # the same binding: nothing to do


async def test_a_new_binding_for_the_running_version_that_fails_its_check_is_undone(
    plant: Plant, package: Path
) -> None:
    device = plant.devices["edge-a"]
    _running(device, package, OTHER)
    device.predicts = False
    options = _options(binding=BINDING, health_check_s=0.3)
    record = await _finished(plant, await plant.service.deploy("pump-health", "1.0.0", ["edge-a"], options))
    assert record.state is DeploymentState.FAILED
    assert "no healthy predictions within 0.3 s of the binding change" in record.last_error
    assert record.last_error.endswith("; the previous binding was restored")
    assert device.slot.calls == ["bind", "bind"] and json.loads(device.binding_json) == OTHER
