"""The model slot's confirmation deadline on an injected clock: real packages and onnxruntime, no OPC UA."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from edge_node.runtime.model import InferenceRuntime, LoadedModel
from edge_node.runtime.pipeline import Pipeline
from edge_node.slots.slot import ModelSlot
from edge_node.slots.store import InstalledVersion, SlotStore
from nodesets.ids import InstallationState
from sdk.binding import Binding
from sdk.keys import TrustStore
from sdk.package.archive import sha256_file
from sdk.package.stream import Received
from tests.conftest import Signer
from tests.edge_harness import FEATURES, build_pump, wait_for
from tests.unit.edge_node.test_pipeline import RecordingSink


class Clock:
    """Seconds that move only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def slot(tmp_path: Path, signer: Signer) -> AsyncIterator[tuple[ModelSlot, Clock]]:
    runtime = InferenceRuntime(threads=1)
    clock = Clock()
    slot = ModelSlot(
        "main", SlotStore(tmp_path / "slot"), Pipeline("main", runtime, RecordingSink()), runtime, signer.trust, clock
    )
    await slot.start()
    worker = asyncio.create_task(slot.run())
    try:
        yield slot, clock
    finally:
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)
        runtime.close()


async def _install(slot: ModelSlot, package: Path, tmp_path: Path) -> InstalledVersion:
    upload = tmp_path / "upload.part"
    shutil.copyfile(package, upload)
    pending = await slot.stage_pending(upload)
    await slot.request_install(pending.manufacturer_uri, pending.version, bytes.fromhex(pending.sha256))

    async def installed() -> bool:
        return slot.install_state is InstallationState.IDLE and slot.state.current == pending

    await wait_for(installed, what="the install")
    return pending


async def test_an_unconfirmed_install_reverts_when_the_injected_clock_passes_the_timeout(
    slot: tuple[ModelSlot, Clock], package: Path, tmp_path: Path
) -> None:
    model_slot, clock = slot
    await model_slot.set_confirmation_timeout(60)
    await _install(model_slot, package, tmp_path)
    assert model_slot.state.awaiting_confirmation

    clock.now += 59.5  # not yet: the slot keeps the new model and keeps waiting
    model_slot.check_deadline()
    await asyncio.sleep(0.1)
    assert model_slot.state.current is not None and model_slot.state.awaiting_confirmation

    clock.now += 1.0
    model_slot.check_deadline()

    async def reverted() -> bool:
        return model_slot.state.current is None and not model_slot.state.awaiting_confirmation

    await wait_for(reverted, what="the revert")
    assert "not confirmed within 60 s" in model_slot.update_status
    assert model_slot.pipeline.model is None


async def test_a_confirmed_install_stays_however_far_the_clock_moves(
    slot: tuple[ModelSlot, Clock], package: Path, tmp_path: Path
) -> None:
    model_slot, clock = slot
    await model_slot.set_confirmation_timeout(60)
    installed = await _install(model_slot, package, tmp_path)
    await model_slot.confirm()
    clock.now += 3600
    model_slot.check_deadline()
    await asyncio.sleep(0.1)
    assert model_slot.state.current == installed and not model_slot.state.awaiting_confirmation


def _binding(tag: str) -> Binding:
    """A binding of every example input to tags of one (never contacted) PLC, named ``tag``."""
    return Binding.model_validate(
        {"inputs": {f: {"endpoint": "opc.tcp://127.0.0.1:4999/", "node_id": f"ns=2;s={tag}.{f}"} for f in FEATURES}}
    )


@pytest.fixture
def v2(example: Path, signer: Signer, tmp_path: Path) -> Path:
    return build_pump(example, signer, tmp_path / "pump-2.0.0.mlpkg", "2.0.0").path


async def _reverted(model_slot: ModelSlot) -> None:
    async def done() -> bool:
        return not model_slot.state.awaiting_confirmation

    await wait_for(done, what="the revert")


async def test_a_revert_restores_the_model_and_the_binding_it_ran_with(
    slot: tuple[ModelSlot, Clock], package: Path, v2: Path, tmp_path: Path
) -> None:
    model_slot, clock = slot
    good, bad = _binding("good"), _binding("missing")
    v1 = await _install(model_slot, package, tmp_path)
    await model_slot.set_binding(good)
    await model_slot.set_confirmation_timeout(60)
    new = await _install(model_slot, v2, tmp_path)
    await model_slot.set_binding(bad)  # set while the install is tried: it belongs to that install
    assert model_slot.state.undo is not None and model_slot.state.undo.binding == good

    clock.now += 61
    model_slot.check_deadline()
    await _reverted(model_slot)
    state = model_slot.state
    assert (state.current, state.binding, state.undo) == (v1, good, None)
    assert model_slot.pipeline.binding == good and model_slot.pipeline.model is not None
    assert model_slot.pipeline.model.manifest.version == "1.0.0"
    assert state.fallback is None  # v1 had none: the failed 2.0.0 is not kept as a fallback
    assert not model_slot.store.package_path(new.sha256).exists()  # the failed package is released
    assert model_slot.store.package_path(v1.sha256).exists()


async def test_a_revert_keeps_the_fallback_the_restored_version_had(
    slot: tuple[ModelSlot, Clock], package: Path, v2: Path, example: Path, signer: Signer, tmp_path: Path
) -> None:
    model_slot, clock = slot
    v1 = await _install(model_slot, package, tmp_path)
    await model_slot.set_binding(_binding("one"))
    v2_installed = await _install(model_slot, v2, tmp_path)
    await model_slot.set_binding(_binding("two"))
    await model_slot.set_confirmation_timeout(60)
    v3 = build_pump(example, signer, tmp_path / "pump-3.0.0.mlpkg", "3.0.0").path
    await _install(model_slot, v3, tmp_path)
    await model_slot.set_binding(_binding("three"))
    clock.now += 61
    model_slot.check_deadline()
    await _reverted(model_slot)
    state = model_slot.state
    assert (state.current, state.binding) == (v2_installed, _binding("two"))
    assert (state.fallback, state.fallback_binding) == (v1, _binding("one"))  # a second rollback has a target
    assert model_slot.store.package_path(v1.sha256).exists()


async def test_two_rollbacks_in_a_row_alternate_versions_with_their_bindings(
    slot: tuple[ModelSlot, Clock], package: Path, v2: Path, tmp_path: Path
) -> None:
    model_slot, _ = slot
    v1 = await _install(model_slot, package, tmp_path)
    await model_slot.set_binding(_binding("one"))
    v2_installed = await _install(model_slot, v2, tmp_path)  # an install keeps the slot's binding
    assert model_slot.state.binding == _binding("one")
    await model_slot.set_binding(_binding("two"))

    for expected, binding, other, other_binding in [
        (v1, "one", v2_installed, "two"),
        (v2_installed, "two", v1, "one"),
        (v1, "one", v2_installed, "two"),
    ]:
        fallback = model_slot.state.fallback
        assert fallback is not None
        await model_slot.request_install(fallback.manufacturer_uri, fallback.version, b"")

        async def rolled_back(expected: InstalledVersion = expected) -> bool:
            return model_slot.install_state is InstallationState.IDLE and model_slot.state.current == expected

        await wait_for(rolled_back, what=f"the rollback to {expected.version}")
        state = model_slot.state
        assert (state.binding, state.fallback, state.fallback_binding) == (
            _binding(binding),
            other,
            _binding(other_binding),
        )
        assert model_slot.pipeline.binding == _binding(binding)


async def test_a_restart_before_confirm_restores_model_and_binding(
    tmp_path: Path, signer: Signer, package: Path, v2: Path
) -> None:
    runtime = InferenceRuntime(threads=1)
    store = SlotStore(tmp_path / "slot")
    first = ModelSlot("main", store, Pipeline("main", runtime, RecordingSink()), runtime, signer.trust, Clock())
    await first.start()
    worker = asyncio.create_task(first.run())
    try:
        v1 = await _install(first, package, tmp_path)
        await first.set_binding(_binding("good"))
        await first.set_confirmation_timeout(60)
        await _install(first, v2, tmp_path)
        await first.set_binding(_binding("missing"))
    finally:
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)

    pipeline = Pipeline("main", runtime, RecordingSink())
    restarted = ModelSlot("main", store, pipeline, runtime, signer.trust, Clock())
    try:
        await restarted.start()
        assert (restarted.state.current, restarted.state.binding) == (v1, _binding("good"))
        assert pipeline.binding == _binding("good") and pipeline.model is not None
        assert pipeline.model.manifest.version == "1.0.0"
        assert "restarted before the install was confirmed; reverted to 1.0.0" in restarted.update_status
    finally:
        runtime.close()


def test_a_state_file_from_before_bindings_were_kept_per_version_loads(tmp_path: Path, package: Path) -> None:
    store = SlotStore(tmp_path / "slot")
    old = {
        "current": None,
        "pending": None,
        "fallback": None,
        "binding": json.loads(_binding("one").to_json()),
        "confirmation_timeout_s": 60.0,
        "awaiting_confirmation": True,
    }
    store.state_path.write_text(json.dumps(old))
    state = store.load_state()
    assert (state.binding, state.fallback_binding, state.undo) == (_binding("one"), None, None)


class CountingRuntime(InferenceRuntime):
    """The real runtime, counting the packages it verifies and loads from their files."""

    def __init__(self) -> None:
        super().__init__(threads=1)
        self.loads_from_file = 0

    async def load(self, package_path: Path, trust: TrustStore, into: Path) -> LoadedModel:
        self.loads_from_file += 1
        return await super().load(package_path, trust, into)


async def test_installing_the_committed_pending_verifies_nothing_again(
    package: Path, v2: Path, signer: Signer, other_signer: Signer, tmp_path: Path
) -> None:
    runtime = CountingRuntime()
    model_slot = ModelSlot(
        "main", SlotStore(tmp_path / "slot"), Pipeline("main", runtime, RecordingSink()), runtime, signer.trust
    )
    await model_slot.start()
    worker = asyncio.create_task(model_slot.run())
    try:
        upload = tmp_path / "upload.part"
        shutil.copyfile(package, upload)
        received = sha256_file(upload)
        pending = await model_slot.stage_pending(upload, Received(received))
        assert pending.sha256 == received.sha256 and pending.size == received.size
        unpacked = list((model_slot.store.work).iterdir())
        assert len(unpacked) == 1  # the model, unpacked once at the commit, for the install to take
        await model_slot.request_install(pending.manufacturer_uri, pending.version, bytes.fromhex(pending.sha256))
        await wait_for(lambda: _idle_with(model_slot, pending), what="the install")
        assert runtime.loads_from_file == 0  # verified once, at the commit; loaded once, at the install
        assert model_slot.pipeline.model is not None and model_slot.pipeline.model.sha256 == pending.sha256
        assert list((model_slot.store.work).iterdir()) == unpacked  # serving from the commit's folder

        shutil.copyfile(v2, upload)
        second = await model_slot.stage_pending(upload)  # no hash from the transfer: hashed here
        assert second.sha256 == sha256_file(v2).sha256
        await model_slot.recheck_trust(signer.trust)  # the same trust again: the kept files stay
        assert len(list(model_slot.store.work.iterdir())) == 2
        await model_slot.recheck_trust(other_signer.trust)  # its signer no longer trusted: they go
        assert len(list(model_slot.store.work.iterdir())) == 1
        await model_slot.recheck_trust(signer.trust)  # trusted again: the install verifies it in full
        await model_slot.request_install(second.manufacturer_uri, second.version, bytes.fromhex(second.sha256))
        await wait_for(lambda: _idle_with(model_slot, second), what="the second install")
        assert runtime.loads_from_file == 1
        assert len(list(model_slot.store.work.iterdir())) == 1  # the first version's folder went with it
    finally:
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)
        runtime.close()


async def _idle_with(model_slot: ModelSlot, version: InstalledVersion) -> bool:
    return model_slot.install_state is InstallationState.IDLE and model_slot.state.current == version
