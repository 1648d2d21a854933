"""`modelline demo --headless --duration 30`: the live line end to end, then nothing left behind."""

from __future__ import annotations

import asyncio
import re
import socket
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.mark.timeout(240)
async def test_headless_demo_runs_upgrades_rolls_back_and_cleans_up(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "modelline"),
        "demo",
        "--headless",
        "--duration",
        "30",
        "--data-dir",
        str(tmp_path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out_bytes, err_bytes = await asyncio.wait_for(proc.communicate(), 200)
    out, err = out_bytes.decode(), err_bytes.decode()
    assert proc.returncode == 0, out[-3000:] + err[-3000:]
    summary = out.split("\nSummary\n", 1)[1]
    counts = {m[0]: int(m[1]) for m in re.findall(r"^  (edge-\d): (\d+) predictions$", summary, re.M)}
    assert set(counts) == {"edge-1", "edge-2"} and min(counts.values()) > 10  # predictions flowing on both
    assert "upgrade: done; rollback: done" in summary
    assert "edge-1 serves 1.1.0" in summary and "edge-1 serves 1.0.0 again" in summary
    assert "Traceback" not in out + err
    ports = [int(p) for p in re.findall(r"opc\.tcp://127\.0\.0\.1:(\d+)/", summary)]
    assert len(ports) == 4
    for port in ports:  # every server stopped: its port can be bound again
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", port))
