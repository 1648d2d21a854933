"""Each deployment shows its targets one by one: their own state, their error, and what each device serves.

A real gateway and two real edge nodes; edge-b keeps more disk space free than its disk has, so it
refuses every transfer, while edge-a installs. The deployment's TargetStates, TargetErrors and
ServingVersions (arrays in the order of Targets) and `modelline status` (table and --json) must say
which device got where, and ServingVersions must follow what the devices report afterwards.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from nodesets.ids import DeploymentState
from tests import readme
from tests.conftest import Signer
from tests.e2e.test_gateway_rollout import Plant, plant
from tests.edge_harness import build_pump, wait_for
from tests.processes import run_modelline
from tests.readme import assert_documented

pytestmark = pytest.mark.e2e

PENDING, TRANSFERRING, INSTALLING = DeploymentState.PENDING, DeploymentState.TRANSFERRING, DeploymentState.INSTALLING
CONFIRMING, ACTIVE, FAILED = DeploymentState.CONFIRMING, DeploymentState.ACTIVE, DeploymentState.FAILED


def _steps(seen: list[list[int]], target: int) -> list[DeploymentState]:
    """One target's states in the order notified, each change once."""
    states = [DeploymentState(values[target]) for values in seen]
    return [s for i, s in enumerate(states) if i == 0 or s != states[i - 1]]


async def _last_is(seen: list[list[int]], states: list[DeploymentState]) -> bool:
    return bool(seen) and seen[-1] == [int(s) for s in states]


async def _per_target(p: Plant, deployment_id: str) -> dict[str, Any]:
    node = await p.manager.get_child([f"{p.ml}:Deployments", f"1:{deployment_id}"])
    return {
        name: await (await node.get_child(f"{p.ml}:{name}")).read_value()
        for name in ("Targets", "TargetStates", "ServingVersions", "TargetErrors")
    }


async def _status(p: Plant, *flags: str) -> str:
    code, out, err = await run_modelline("status", "--gateway", p.gateway.url, *flags, timeout=60)
    assert code == 0, err
    return out


@pytest.mark.timeout(300)
async def test_a_deployment_shows_each_target_and_what_each_device_serves(
    tmp_path: Path, signer: Signer, example: Path
) -> None:
    full_disk = {"edge-b": {"disk_reserve_bytes": 1 << 50}}  # keeps 1 PiB free: no transfer ever fits
    async with plant(tmp_path, signer, edge_options=full_disk) as p:
        for version in ("1.0.0", "2.0.0"):
            await p.push(build_pump(example, signer, tmp_path / f"{version}.mlpkg", version).path)
        # A client subscribed to TargetStates sees each target's steps as they happen. The rollout waits for
        # a maintenance window 3 s away, so that the subscription is in place while both targets are Pending.
        seen: list[list[int]] = []

        class Collect:
            def datachange_notification(self, node: Any, value: Any, data: Any) -> None:
                seen.append(list(value or []))

        first = await p.deploy(
            "1.0.0", ["edge-a", "edge-b"], start_at=(datetime.now(UTC) + timedelta(seconds=3)).isoformat()
        )
        states_node = await p.manager.get_child([f"{p.ml}:Deployments", f"1:{first}", f"{p.ml}:TargetStates"])
        subscription = await p.client.create_subscription(10, Collect())
        await subscription.subscribe_data_change(states_node, queuesize=100)
        failed = await p.settled(first, FAILED.label)
        assert failed["LastError"].startswith("wave 1, device edge-b: the device has no disk space for the package")

        node = await p.manager.get_child([f"{p.ml}:Deployments", f"1:{first}"])
        documented = [n for row in readme.table("Roll a model out") for n in re.findall(r"`(\w+)`", row[0])]
        assert len(documented) == 9, documented
        for name in documented:  # everything the README says a client sees is there
            await node.get_child(f"{p.ml}:{name}")
        shown = await _per_target(p, first)
        assert shown["Targets"] == ["edge-a", "edge-b"]
        assert [DeploymentState(s) for s in shown["TargetStates"]] == [ACTIVE, FAILED]
        assert shown["ServingVersions"] == ["1.0.0", ""]  # edge-b serves nothing, as before
        assert shown["TargetErrors"][0] == ""
        assert shown["TargetErrors"][1].startswith("the device has no disk space for the package: needs ")
        assert_documented(shown["TargetErrors"][1], "the device has no disk space for the package")
        assert p.serving("edge-a") == "1.0.0" and p.serving("edge-b") is None  # what the devices really run
        await wait_for(lambda: _last_is(seen, [ACTIVE, FAILED]), what="the final TargetStates notified")
        assert _steps(seen, 0) == [PENDING, TRANSFERRING, INSTALLING, CONFIRMING, ACTIVE]
        assert _steps(seen, 1) == [PENDING, TRANSFERRING, FAILED]
        await subscription.delete()

        status = json.loads(await _status(p, "--json"))
        row = next(d for d in status["deployments"] if d["id"] == first)
        assert row["State"] == FAILED.label
        assert row["TargetStates"] == [ACTIVE.label, FAILED.label]
        assert row["ServingVersions"] == ["1.0.0", ""]
        assert row["TargetErrors"] == shown["TargetErrors"]
        table = await _status(p)
        assert f"edge-a: {ACTIVE.label} — serving 1.0.0" in table
        assert f"edge-b: {FAILED.label} — serving nothing" in table

        # ServingVersions follows the devices, not the rollout: edge-a moves on to 2.0.0 by a later deployment.
        await p.settled(await p.deploy("2.0.0", ["edge-a"]), ACTIVE.label)

        async def follows() -> bool:
            return (await _per_target(p, first))["ServingVersions"] == ["2.0.0", ""]

        await wait_for(follows, what=f"{first} to show edge-a serving 2.0.0")
        shown = await _per_target(p, first)
        assert [DeploymentState(s) for s in shown["TargetStates"]] == [ACTIVE, FAILED]  # its own record is unchanged

        # A device that goes away is marked so in the table; its last reported version stays.
        await p.edges["edge-b"].__aexit__(None, None, None)

        async def offline() -> bool:
            return not p.gateway.devices.get("edge-b").online

        await wait_for(offline, timeout=20, what="the gateway to see edge-b go away")

        async def marked() -> str | None:
            table = await _status(p)
            return table if f"edge-b: {FAILED.label} — serving nothing (offline)" in table else None

        table = await wait_for(marked, timeout=20, what="edge-b shown offline")
        assert f"edge-a: {ACTIVE.label} — serving 2.0.0" in table
