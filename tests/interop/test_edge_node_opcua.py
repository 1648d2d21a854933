"""node-opcua drives a ModelLine edge node: browse, read, install through DI, subscribe to predictions."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from tests.conftest import Signer
from tests.edge_harness import HEALTHY, WORN, SimulatedPlc, build_pump, direct_prediction, edge_settings, running_edge

pytestmark = [pytest.mark.interop, pytest.mark.e2e]


@pytest.mark.timeout(180)
async def test_node_opcua_installs_and_receives_predictions(
    node_opcua: Path, tmp_path: Path, signer: Signer, example: Path
) -> None:
    plc = await SimulatedPlc().start()
    package = build_pump(example, signer, tmp_path / "pump.mlpkg").path
    binding = tmp_path / "binding.json"
    binding.write_text(json.dumps(plc.binding()))
    try:
        async with running_edge(edge_settings(tmp_path, signer.trust_dir)) as node:
            proc = await asyncio.create_subprocess_exec(
                "node",
                str(node_opcua / "edge_install.mjs"),
                node.url,
                str(package),
                str(binding),
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                cwd=node_opcua,
            )
            assert proc.stdout is not None
            lines = []
            while line := (await asyncio.wait_for(proc.stdout.readline(), 120)).decode().strip():
                lines.append(line)
                if line == "EVENT subscribed":  # node-opcua listens: make the line move
                    for values in (HEALTHY, WORN, HEALTHY, WORN):
                        await plc.write_all(values)
                        await asyncio.sleep(0.2)
            _, err = await asyncio.wait_for(proc.communicate(), 60)
            assert proc.returncode == 0, err.decode()[-3000:]
            summary = json.loads(next(line for line in lines if line.startswith("{")))
            assert summary["device"] == "edge-1" and summary["slot"] == "main"
            assert (summary["currentBefore"], summary["pending"], summary["currentAfter"]) == ("", "1.0.0", "1.0.0")
            good = [n["value"] for n in summary["notifications"] if n["status"] == "Good"]
            assert len(good) >= 3 and all(0.0 <= v <= 1.0 for v in good)
            # Each tag write is a prediction of its own (trigger any_change); the complete sets are among them.
            healthy = direct_prediction(example, HEALTHY)["anomaly_score"]
            assert any(abs(v - healthy) < 1e-7 for v in good), (healthy, good)
            assert node.slots["main"].pipeline.model.manifest.version == "1.0.0"
    finally:
        await plc.stop()
