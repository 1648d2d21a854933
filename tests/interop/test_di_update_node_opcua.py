"""An independent DI update client (node-opcua, di_update.mjs) reads every version property in one request and installs."""

from __future__ import annotations

import asyncio
import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Signer
from tests.edge_harness import build_pump, edge_settings, running_edge

pytestmark = [pytest.mark.interop, pytest.mark.e2e]

NO_DATE = "1601-01-01T00:00:00.000Z"  # DateTime encoded as 0: the defined "no date" (OPC 10000-6 5.2.2.5)


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@pytest.mark.timeout(60)
async def test_di_client_reads_all_version_properties_in_one_request_and_installs(
    node_opcua: Path, tmp_path: Path, signer: Signer, example: Path
) -> None:
    built = build_pump(example, signer, tmp_path / "pump.uadipkg")
    async with running_edge(edge_settings(tmp_path, signer.trust_dir)) as node:
        proc = await asyncio.create_subprocess_exec(
            "node",
            str(node_opcua / "di_update.mjs"),
            node.url,
            str(built.path),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=node_opcua,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 50)
        assert proc.returncode == 0, err.decode()[-3000:]
        assert node.slots["main"].pipeline.model is not None
    summary: dict[str, Any] = json.loads(next(line for line in out.decode().splitlines() if line.startswith("{")))
    assert (summary["device"], summary["slot"]) == ("edge-1", "main")
    # Every property DI's SoftwareVersionType declares that the versions have, each read Good and well typed.
    names = {"Manufacturer", "ManufacturerUri", "SoftwareRevision", "PatchIdentifiers", "ReleaseDate", "Hash"}
    assert names <= set(summary["declared"])
    for version in ("CurrentVersion", "PendingVersion", "FallbackVersion"):
        assert names <= set(summary["properties"][version]), summary["properties"]
    assert summary["readRequests"] == 3  # before, after the transfer, after the install: one Read each
    before, transferred, installed = summary["before"], summary["afterTransfer"], summary["afterInstall"]
    assert before["CurrentVersion"]["ReleaseDate"] == before["PendingVersion"]["ReleaseDate"] == NO_DATE
    assert before["CurrentVersion"]["SoftwareRevision"] == "" and before["CurrentVersion"]["Hash"] == ""
    created = _iso(built.manifest.created)
    digest = hashlib.sha256(built.path.read_bytes()).hexdigest()
    pending = transferred["PendingVersion"]
    assert (pending["SoftwareRevision"], pending["ReleaseDate"], pending["Hash"]) == ("1.0.0", created, digest)
    current = installed["CurrentVersion"]
    assert (current["SoftwareRevision"], current["ReleaseDate"], current["Hash"]) == ("1.0.0", created, digest)
    # From the DI package's META/package_metadata.json: Manufacturer (the signer's O), ManufacturerUri.
    assert current["Manufacturer"] == "Plant" and current["PatchIdentifiers"] == []
    assert current["ManufacturerUri"] == pending["ManufacturerUri"] == "urn:modelline:model:pump-health"
