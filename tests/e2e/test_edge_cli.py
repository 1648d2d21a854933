"""`modelline edge` and `modelline install` as real processes, the way an engineer runs them."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
from pathlib import Path

import pytest
from asyncua import Client

from sdk.opcua.users import hash_password
from tests.conftest import Signer
from tests.edge_harness import (
    HEALTHY,
    SimulatedPlc,
    build_pump,
    direct_prediction,
    edge_settings,
    output_node,
    running_edge,
    wait_for,
)
from tests.opcua_servers import free_port
from tests.processes import MODELLINE, run_modelline
from tests.readme import assert_documented

pytestmark = pytest.mark.e2e

_run = run_modelline


@pytest.mark.timeout(180)
async def test_edge_process_install_and_clean_stop(tmp_path: Path, signer: Signer, example: Path) -> None:
    plc = await SimulatedPlc().start()
    package = build_pump(example, signer, tmp_path / "pump.mlpkg").path
    binding = tmp_path / "binding.json"
    binding.write_text(json.dumps(plc.binding()))
    url = f"opc.tcp://127.0.0.1:{free_port()}/edge/"
    config = tmp_path / "edge.toml"
    users = tmp_path / "users.toml"
    users.write_text(
        f'anonymous = "Observer"\n[users.eng]\nrole = "Engineer"\npassword = "{hash_password("s3cret")}"\n'
    )
    config.write_text(
        f'device_id = "line3"\nslots = ["pump1"]\ndata_dir = "{tmp_path / "data"}"\nusers_file = "{users}"\n'
    )
    env = {**os.environ, "MODELLINE_EDGE_TRUST_DIR": str(signer.trust_dir)}  # flags > environment > file
    edge = await asyncio.create_subprocess_exec(
        MODELLINE,
        "edge",
        "--config",
        str(config),
        "--endpoint",
        url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    try:

        async def up() -> bool:
            try:
                async with Client(url, timeout=2):
                    return True
            except (OSError, TimeoutError):
                return False

        await wait_for(up, timeout=60, what="edge node process to listen")
        code, out, err = await _run("install", str(package), "--edge", url)  # anonymous clients are Observers
        assert code == 6 and "log in as a user with the Engineer role" in err, err
        (tmp_path / "pw").write_text("s3cret\n")
        code, out, err = await _run(
            "install",
            str(package),
            "--edge",
            url,
            "--binding",
            str(binding),
            "--confirm-within",
            "30",
            "--json",
            "--user",
            "eng",
            "--password-file",
            str(tmp_path / "pw"),
        )
        assert code == 0, err
        result = json.loads(out)
        assert (result["model"], result["version"], result["confirmed"]) == ("pump-health", "1.0.0", True)

        await plc.write_all(HEALTHY)
        expected = direct_prediction(example, HEALTHY)["anomaly_score"]
        async with Client(url) as client:

            async def predicted() -> bool:
                dv = await (await output_node(client, "pump1", "anomaly_score")).read_data_value(
                    raise_on_bad_status=False
                )
                return dv.StatusCode.is_good() and dv.Value.Value == expected

            await wait_for(predicted, what="prediction through the CLI-installed model")

        code, _, err = await _run("install", str(package), "--edge", f"opc.tcp://127.0.0.1:{free_port()}/none/")
        assert code == 5 and err.startswith("modelline: cannot connect to ") and err.count("\n") == 1
    finally:
        edge.send_signal(signal.SIGTERM)
        _, err_bytes = await asyncio.wait_for(edge.communicate(), 30)
        await plc.stop()
    assert edge.returncode == 0, err_bytes.decode()[-2000:]
    assert "stopping" in err_bytes.decode()
    assert "Traceback" not in err_bytes.decode()


@pytest.mark.timeout(120)
async def test_install_on_a_full_disk_says_so(tmp_path: Path, signer: Signer, example: Path) -> None:
    package = build_pump(example, signer, tmp_path / "pump.mlpkg").path
    # A reserve larger than any disk here: the node's real free-space check refuses the transfer.
    settings = edge_settings(tmp_path, signer.trust_dir, disk_reserve_bytes=1 << 50)
    async with running_edge(settings) as node:
        code, _, err = await _run("install", str(package), "--edge", node.url)
        transfers = node.slots["main"].store.root / "transfers"
        assert list(transfers.iterdir()) == []
    assert code == 6, err
    pattern = r"modelline: the device has no disk space for the package: needs 1125899907 MB, \d+(\.\d)? [kM]B free\n"
    assert re.fullmatch(pattern, err), err
    assert_documented(err, "no disk space for the package")
