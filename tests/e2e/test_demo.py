"""`modelline demo`: the live line end to end, nothing left behind, and node-opcua reading it.

Both demos live in this file so that they never run at the same time (one file, one xdist worker):
each starts four OPC UA servers and its deployments.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import time
from pathlib import Path

import pytest

from tests.processes import MODELLINE

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.mark.timeout(240)
async def test_headless_demo_runs_upgrades_rolls_back_and_cleans_up() -> None:
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        MODELLINE,
        "demo",
        "--headless",
        "--duration",
        "45",  # what the demo asks for its scripted upgrade and rollback (30 s was too short on a loaded machine)
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out_bytes, err_bytes = await asyncio.wait_for(proc.communicate(), 200)
    finally:
        if proc.returncode is None:  # never leave a demo running behind a failed test
            proc.kill()
            await proc.wait()
    wall_s = time.monotonic() - started
    out, err = out_bytes.decode(), err_bytes.decode()
    assert proc.returncode == 0, out[-3000:] + err[-3000:]
    # --duration is the whole run, set-up and shutdown included (give or take a quick stop)
    assert wall_s < 45 + 10, f"--duration 45 ran {wall_s:.1f} s"
    data_dir = re.search(r"^ModelLine demo: data in (\S+) \(a temporary folder, removed on exit", out, re.M)
    assert data_dir and not Path(data_dir[1]).exists(), "the demo left its temporary folder behind"
    setup = out.split("\nline (simulated PLC) ", 1)[0]  # set-up steps are shown before the endpoints
    assert "starting the gateway" in setup and "starting edge node edge-2" in setup, setup
    assert "Pump2 starts with a worn bearing" in out and "rises on purpose" in out  # said, not left to guess
    assert re.search(r"^  edge-2: latest fault probability \d\.\d{3}", out, re.M), out
    assert "was missed" not in out + err and "apscheduler" not in out + err
    summary = out.split("\nSummary\n", 1)[1]
    counts = {m[0]: int(m[1]) for m in re.findall(r"^  (edge-\d): (\d+) predictions$", summary, re.M)}
    assert set(counts) == {"edge-1", "edge-2"} and min(counts.values()) > 10  # predictions flowing on both
    assert "upgrade: done; rollback: done" in summary
    assert "edge-1 serves 1.1.0" in summary and "edge-1 serves 1.0.0 again" in summary
    # An HMI subscribed to edge-1's prediction saw it keep coming, always Good, through both swaps.
    seen = re.search(
        r"^  edge-1 during upgrade and rollback: (\d+) prediction updates, not Good: (.+?), longest", summary, re.M
    )
    assert seen and int(seen[1]) > 10 and seen[2] == "none", summary
    # The Model Monitor panel: the gateway collected both nodes' predictions, and the panel (read over OPC UA by
    # browse name) shows the gateway's own InferenceCount of ModelMonitor/<deployment>/<device>.
    monitored = {
        m[0]: (int(m[1]), int(m[2]), m[3])
        for m in re.findall(
            r"^  Model Monitor (edge-\d): (\d+) inferences on the panel, (\d+) in the gateway's "
            r"ModelMonitor/(deploy-\d+)/\1$",
            summary,
            re.M,
        )
    }
    assert set(monitored) == {"edge-1", "edge-2"}, summary
    for device, (panel, gateway, _) in monitored.items():
        # (the node's own count is read earlier, and counts Good predictions only: records that exactly one
        # arrives of each are proven in test_monitor_delivery.py)
        assert panel == gateway and panel > 0, (device, panel, gateway, counts)
    assert monitored["edge-1"][2] != monitored["edge-2"][2]  # each node under the deployment that serves it
    assert "Model Monitor (gateway)" in summary
    rows = [line for line in summary.splitlines() if re.match(r"^  │ edge-\d ", line)]
    assert len(rows) == 2 and all(str(monitored[r.split()[1]][0]) in r for r in rows), rows
    # Pump2's drift alarm needs the baseline and a full window (30 s after deployment): not within 30 s; before
    # the gateway offers InputDriftAlarm the summary says it waits. Steady Pump1 never raises one.
    assert re.search(
        r"^  (no drift alarm on edge-2 \(Pump2\)|drift alarm on edge-2 \(Pump2\)(: waiting| at \d\d:\d\d after start))",
        summary,
        re.M,
    ), summary
    assert "drift alarm on edge-1 (Pump1) at" not in summary
    assert "Traceback" not in out + err
    ports = [int(p) for p in re.findall(r"opc\.tcp://127\.0\.0\.1:(\d+)/", summary)]
    assert len(ports) == 4
    for port in ports:  # every server stopped: its port can be bound again
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", port))


@pytest.mark.interop
@pytest.mark.timeout(240)
async def test_node_opcua_receives_predictions_from_the_demo(node_opcua: Path, tmp_path: Path) -> None:
    demo = await asyncio.create_subprocess_exec(
        MODELLINE,
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
            # A generic client without a certificate the demo knows: the read-only unencrypted endpoint it offers.
            env={**os.environ, "MODELLINE_TEST_NODE_OPCUA_SECURITY": "None"},
        )
        out, err = await asyncio.wait_for(done.communicate(), 60)
        assert done.returncode == 0, err.decode()[-2000:]
        updates = json.loads(next(x for x in out.decode().splitlines() if x.startswith("{")))["updates"]
        assert len(updates) >= 3 and all(isinstance(u["value"], float) and u["value"] >= 0 for u in updates)
    finally:
        demo.send_signal(signal.SIGTERM)
        try:
            rest, _ = await asyncio.wait_for(demo.communicate(), 60)
        finally:
            if demo.returncode is None:  # never leave a demo running behind a failed test
                demo.kill()
                await demo.wait()
    assert demo.returncode == 0
    text = rest.decode()
    assert "stopping…\n" in text and text.index("stopping…") < text.index("Summary"), text[:300]  # said at once
    assert (tmp_path / "keys" / "author.pem").exists()  # --data-dir keeps its folder
