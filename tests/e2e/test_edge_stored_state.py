"""Inputs that would keep an edge node from starting again are refused, and a bad state file does not stop it."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from asyncua import Node, ua

from sdk.di_client import SoftwareUpdateClient
from tests.conftest import Signer
from tests.edge_harness import build_pump, edge_settings, running_edge
from tests.tls import Client

pytestmark = pytest.mark.e2e


async def _timeout_node(client: Client) -> Node:
    su = await SoftwareUpdateClient.find(client)
    return await su.update.get_child([f"{su.di}:Confirmation", f"{su.di}:ConfirmationTimeout"])


@pytest.mark.timeout(120)
async def test_confirmation_timeout_refuses_values_that_cannot_be_kept(signer: Signer, tmp_path: Path) -> None:
    settings = edge_settings(tmp_path, signer.trust_dir)
    state_file = settings.data_dir / "slots" / "main" / "state.json"
    async with running_edge(settings) as node, Client(node.url) as client:
        timeout = await _timeout_node(client)
        assert await timeout.read_value_rank() == ua.ValueRank.Scalar
        await timeout.write_value(ua.Variant(5000.0, ua.VariantType.Double))
        refused = {
            "+Inf": (ua.Variant(float("inf"), ua.VariantType.Double), "BadOutOfRange"),
            "NaN": (ua.Variant(float("nan"), ua.VariantType.Double), "BadOutOfRange"),
            "negative": (ua.Variant(-1.0, ua.VariantType.Double), "BadOutOfRange"),
            "a year": (ua.Variant(365 * 86_400_000.0, ua.VariantType.Double), "BadOutOfRange"),
            "1e308": (ua.Variant(1e308, ua.VariantType.Double), "BadOutOfRange"),
            "array": (ua.Variant([1000.0, 2000.0], ua.VariantType.Double), "BadTypeMismatch"),
            "Int32": (ua.Variant(1000, ua.VariantType.Int32), "BadTypeMismatch"),
            "null": (ua.Variant(), "BadTypeMismatch"),
        }
        for what, (variant, code) in refused.items():
            with pytest.raises(ua.UaStatusCodeError) as info:
                await timeout.write_value(variant)
            assert type(info.value).__name__ == code, what
            assert await timeout.read_value() == 5000.0, what  # the old value is kept
        assert node.slots["main"].state.confirmation_timeout_s == 5.0
    assert json.loads(state_file.read_text())["confirmation_timeout_s"] == 5.0
    async with running_edge(settings) as node, Client(node.url) as client:  # starts cleanly on what was kept
        assert await (await _timeout_node(client)).read_value() == 5000.0


@pytest.mark.timeout(120)
async def test_node_starts_with_an_unreadable_slot_state_and_serves_the_other_slot(
    signer: Signer, tmp_path: Path, example: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = edge_settings(tmp_path, signer.trust_dir, slots=["main", "aux"])
    package = build_pump(example, signer, tmp_path / "v1.mlpkg").path
    async with running_edge(settings) as node, Client(node.url) as client:
        su = await SoftwareUpdateClient.find(client, slot="main")
        await su.install(await su.transfer(package))
        await node.slots["aux"].set_confirmation_timeout(7.0)
    aux_state = settings.data_dir / "slots" / "aux" / "state.json"
    aux_state.write_text(json.dumps({"confirmation_timeout_s": None, "current": {"name": 1}}))

    with caplog.at_level(logging.ERROR):
        async with running_edge(settings) as node, Client(node.url) as client:
            assert node.slots["main"].pipeline.model is not None  # the good slot serves its model
            status = await (await SoftwareUpdateClient.find(client, slot="aux")).update_status()
            assert "stored state unreadable" in status and "state.unreadable-" in status
            assert node.slots["aux"].state.current is None
    assert any("slot aux" in r.getMessage() and "unreadable" in r.getMessage() for r in caplog.records)
    kept = list(aux_state.parent.glob("state.unreadable-*.json"))
    assert len(kept) == 1 and "current" in kept[0].read_text()  # moved aside for a person, not lost
