"""A PLC that goes away and comes back: outputs are Good again within seconds of each return.

A real edge node is bound to a SimulatedPlc; the PLC's server is stopped for 20 s, started again on
the same port, then stopped for 3 s and started again. The node's reconnect backoff must neither
still wait a long cap after the first outage nor carry a grown delay into the second one.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from asyncua import ua

from edge_node.app import EdgeNode
from sdk.di_client import SoftwareUpdateClient, set_binding
from tests.conftest import Signer
from tests.edge_harness import HEALTHY, SimulatedPlc, build_pump, edge_settings, output_node, wait_for
from tests.tls import Client

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

BACK_WITHIN_S = 5.0  # from the PLC serving again to a Good output


def _status_is(read: Callable[[], Awaitable[ua.DataValue]], good: bool) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        dv = await read()
        return dv.StatusCode.is_good() if good else dv.StatusCode.is_uncertain()

    return check


@pytest.mark.timeout(150)
async def test_outputs_are_good_within_seconds_after_a_long_and_a_short_plc_outage(
    tmp_path: Path, signer: Signer, example: Path
) -> None:
    package = build_pump(example, signer, tmp_path / "pump.mlpkg").path
    plc = await SimulatedPlc().start()
    try:
        async with EdgeNode(edge_settings(tmp_path, signer.trust_dir)) as node, Client(node.url) as client:
            su = await SoftwareUpdateClient.find(client)
            await su.install(await su.transfer(package))
            await plc.write_all(HEALTHY)
            await set_binding(client, "main", json.dumps(plc.binding()))
            output = await output_node(client, "main", "remaining_life")

            async def read() -> ua.DataValue:
                return await output.read_data_value(raise_on_bad_status=False)

            await wait_for(_status_is(read, good=True), what="Good outputs before the outages")
            loop = asyncio.get_running_loop()
            back_after = []
            for outage_s in (20.0, 3.0):
                await plc.stop()
                await wait_for(_status_is(read, good=False), what="Uncertain outputs while the PLC is away")
                await asyncio.sleep(outage_s)  # the outage itself: the scenario, not a synchronisation
                await plc.start()  # the same port: the node must find it again by itself
                returned = loop.time()
                await plc.write_all(HEALTHY)  # a PLC that restarts holds its process values again
                await wait_for(
                    _status_is(read, good=True),
                    timeout=BACK_WITHIN_S - (loop.time() - returned),
                    what=f"Good outputs within {BACK_WITHIN_S:g} s of the PLC's return after {outage_s:g} s away",
                )
                back_after.append(loop.time() - returned)
            print(f"outputs Good again {', '.join(f'{s:.2f}' for s in back_after)} s after the PLC returned")
            assert all(s < BACK_WITHIN_S for s in back_after), back_after
    finally:
        await plc.stop()
