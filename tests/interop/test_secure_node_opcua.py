"""node-opcua connects to an edge node as a SCADA would: own certificate, refused until approved with
``modelline trust approve``, then Aes256_Sha256_RsaPss SignAndEncrypt with a password, and reads a prediction."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from sdk.opcua import pki
from sdk.opcua.users import hash_password
from tests.conftest import Signer
from tests.edge_harness import HEALTHY, SimulatedPlc, build_pump, edge_settings, running_edge, wait_for
from tests.processes import run_modelline
from tests.tls import node_opcua_trusts_ca

pytestmark = [pytest.mark.interop, pytest.mark.e2e]

PASSWORD = "scada-secret"
OUTPUT = "ns=1;s=InferenceServer.Pipelines.main.Outputs.anomaly_score"


async def _read(node_opcua: Path, url: str, pki_root: Path) -> tuple[int, dict[str, Any]]:
    proc = await asyncio.create_subprocess_exec(
        "node",
        str(node_opcua / "secure_read.mjs"),
        url,
        str(pki_root),
        "scada",
        PASSWORD,
        OUTPUT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=node_opcua,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    lines = [line for line in out.decode().splitlines() if line.startswith("{")]
    assert lines, err.decode()[-3000:]
    return proc.returncode or 0, json.loads(lines[-1])


@pytest.mark.timeout(240)
async def test_node_opcua_reads_a_prediction_over_aes256_after_its_certificate_is_approved(
    node_opcua: Path, tmp_path: Path, signer: Signer, example: Path
) -> None:
    users = tmp_path / "users.toml"
    users.write_text(f'anonymous = ""\n[users.scada]\nrole = "Observer"\npassword = "{hash_password(PASSWORD)}"\n')
    plc = await SimulatedPlc().start()
    try:
        binding = tmp_path / "binding.json"
        binding.write_text(json.dumps(plc.binding()))
        settings = edge_settings(
            tmp_path, signer.trust_dir, users_file=users, anonymous_role="", bindings={"main": binding}
        )
        async with running_edge(settings) as node:
            slot = node.slots["main"]
            pending = await slot.stage_pending(build_pump(example, signer, tmp_path / "pump.mlpkg").path)
            await slot.request_install(pending.manufacturer_uri, pending.version, b"")
            await wait_for(lambda: _installed(slot), what="the install")

            pki_root = node_opcua_trusts_ca(tmp_path / "node-opcua-pki")  # the server's certificate is the test CA's
            code, refused = await _read(node_opcua, node.url, pki_root)
            assert code == 3 and "BadCertificateUntrusted" in json.dumps(refused), refused
            rejected = pki.entries(settings.data_dir / "pki", "rejected")
            assert len(rejected) == 1
            code, _, err = await run_modelline(
                "trust", "approve", "--data-dir", str(settings.data_dir), rejected[0].thumbprint
            )
            assert code == 0, err

            for _ in range(10):  # until the line has delivered a complete set of inputs
                await plc.write_all(HEALTHY)
                code, read = await _read(node_opcua, node.url, pki_root)
                assert code == 0, read
                assert read["policy"].endswith("Aes256_Sha256_RsaPss") and read["mode"] == "SignAndEncrypt", read
                if read["status"] == "Good":
                    break
            assert read["status"] == "Good" and 0.0 <= read["value"] <= 1.0, read
    finally:
        await plc.stop()


async def _installed(slot: Any) -> bool:
    return slot.state.current is not None
