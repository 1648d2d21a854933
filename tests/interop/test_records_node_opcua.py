"""node-opcua as a third-party record collector: RecordsReady event, FetchRecords in pages, AcknowledgeRecords."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from edge_node.monitor.queue import parse_envelope
from sdk.di_client import SoftwareUpdateClient, set_binding
from tests.conftest import Signer
from tests.edge_harness import HEALTHY, SimulatedPlc, build_pump, edge_settings, running_edge
from tests.tls import Client

pytestmark = [pytest.mark.interop, pytest.mark.e2e]


@pytest.mark.timeout(180)
async def test_node_opcua_collects_every_record_once(
    node_opcua: Path, tmp_path: Path, signer: Signer, example: Path
) -> None:
    plc = await SimulatedPlc().start()
    package = build_pump(example, signer, tmp_path / "pump.mlpkg").path
    try:
        await plc.write_all(HEALTHY)
        async with running_edge(edge_settings(tmp_path, signer.trust_dir)) as node:
            async with Client(node.url) as client:
                su = await SoftwareUpdateClient.find(client)
                await su.install(await su.transfer(package))
                await set_binding(client, "main", json.dumps(plc.binding(mode="tag", tag="speed")))
            proc = await asyncio.create_subprocess_exec(
                "node",
                str(node_opcua / "records.mjs"),
                node.url,
                "main",
                "25",
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                cwd=node_opcua,
            )
            assert proc.stdout is not None
            line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode().strip()
            assert line == "EVENT subscribed"
            for i in range(30):
                await plc.write("speed", 1400.0 + i)
                await asyncio.sleep(0.03)
            out, err = await asyncio.wait_for(proc.communicate(), 90)
            assert proc.returncode == 0, err.decode()[-3000:]
            summary = json.loads(next(x for x in out.decode().splitlines() if x.startswith("{")))
            assert summary["event"]["stream"] == "main" and summary["event"]["lastSequence"] >= 25
            assert summary["queueId"] == node.records.queue_id
            sequences = summary["sequences"]
            assert sequences == list(range(1, len(sequences) + 1)) and len(sequences) >= 25
            assert summary["removed"] == len(sequences)
            remaining = [parse_envelope(e).sequence for e in (await node.records.fetch("main", 0)).envelopes]
            assert all(sequence > len(sequences) for sequence in remaining)  # acknowledged means deleted
    finally:
        await plc.stop()
