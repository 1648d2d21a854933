"""The model slot's confirmation deadline on an injected clock: real packages and onnxruntime, no OPC UA."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from edge_node.runtime.model import InferenceRuntime
from edge_node.runtime.pipeline import Pipeline
from edge_node.slots.slot import ModelSlot
from edge_node.slots.store import InstalledVersion, SlotStore
from nodesets.ids import InstallationState
from tests.conftest import Signer
from tests.edge_harness import wait_for
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
