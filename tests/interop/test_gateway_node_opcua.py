"""node-opcua drives the gateway: browse, read a device, upload, Deploy, download."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from tests.conftest import Signer
from tests.e2e.test_gateway_rollout import plant
from tests.edge_harness import build_pump

pytestmark = [pytest.mark.interop, pytest.mark.e2e]


@pytest.mark.timeout(180)
async def test_node_opcua_uploads_deploys_and_downloads(
    node_opcua: Path, tmp_path: Path, signer: Signer, example: Path
) -> None:
    package = build_pump(example, signer, tmp_path / "pump.mlpkg").path
    async with plant(tmp_path, signer) as p:
        binding = tmp_path / "binding.json"
        binding.write_text(json.dumps(p.plc.binding()))
        await p.gateway.devices.get("edge-a").wait_online(30)
        proc = await asyncio.create_subprocess_exec(
            "node",
            str(node_opcua / "gateway_client.mjs"),
            p.gateway.url,
            str(package),
            "edge-a",
            str(binding),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=node_opcua,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 120)
        assert proc.returncode == 0, err.decode()[-3000:]
        summary = json.loads(next(line for line in out.decode().splitlines() if line.startswith("{")))
        assert summary["folders"] == [
            "Deploy",
            "Deployments",
            "Devices",
            "Models",
            "RegisterDevice",
            "Rollback",
            "Undeploy",
            "Upload",
            "UploadError",
        ]
        assert summary["deviceState"] in (0, 2)  # Online (or Degraded while unbound)
        assert (summary["model"], summary["version"]) == ("pump-health", "1.0.0")
        assert summary["downloaded"] == summary["stored"] == summary["uploaded"]
        await p.settled(summary["deploymentId"], "Active")
        assert p.serving("edge-a") == "1.0.0"
