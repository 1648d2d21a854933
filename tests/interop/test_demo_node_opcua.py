"""A node-opcua client connected to the running demo's edge node receives prediction updates."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.interop, pytest.mark.e2e, pytest.mark.slow]


@pytest.mark.timeout(240)
async def test_node_opcua_receives_predictions_from_the_demo(node_opcua: Path, tmp_path: Path) -> None:
    demo = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "modelline"),
        "demo",
        "--headless",
        "--no-upgrade",
        "--duration",
        "120",
        "--data-dir",
        str(tmp_path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert demo.stdout is not None
    try:
        edge_url = None
        while True:
            line = (await asyncio.wait_for(demo.stdout.readline(), 120)).decode()
            assert line, "the demo ended before deploying"
            found = re.match(r"^edge-1\s+(opc\.tcp://\S+)", line)
            edge_url = found.group(1) if found else edge_url
            if "active on edge-1" in line:
                break
        assert edge_url is not None
        done = await asyncio.create_subprocess_exec(
            "node",
            str(node_opcua / "subscribe.mjs"),
            edge_url,
            "ns=1;s=InferenceServer.Pipelines.main.Outputs.remaining_life",
            "3",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=node_opcua,
        )
        out, err = await asyncio.wait_for(done.communicate(), 60)
        assert done.returncode == 0, err.decode()[-2000:]
        updates = json.loads(next(x for x in out.decode().splitlines() if x.startswith("{")))["updates"]
        assert len(updates) >= 3 and all(isinstance(u["value"], float) and u["value"] >= 0 for u in updates)
    finally:
        demo.send_signal(signal.SIGTERM)
        await asyncio.wait_for(demo.communicate(), 60)
    assert demo.returncode == 0
