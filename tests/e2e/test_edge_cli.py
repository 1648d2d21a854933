"""`modelline edge` and `modelline install` as real processes, the way an engineer runs them."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
from pathlib import Path

import pytest

from sdk.opcua.users import hash_password
from sdk.package.build import build_package
from sdk.package.spec import PackageSpec
from tests.conftest import Signer
from tests.edge_harness import (
    HEALTHY,
    SimulatedPlc,
    build_pump,
    direct_prediction,
    edge_settings,
    output_node,
    running_edge,
    running_plc,
    wait_for,
)
from tests.opcua_servers import free_port
from tests.processes import MODELLINE, run_modelline
from tests.readme import assert_documented
from tests.tls import Client, seed_process

pytestmark = pytest.mark.e2e

_run = run_modelline


@pytest.mark.timeout(180)
async def test_edge_process_install_and_clean_stop(tmp_path: Path, signer: Signer, example: Path) -> None:
    plc = await SimulatedPlc().start()
    package = build_pump(example, signer, tmp_path / "pump.uadipkg").path
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
    argv = ["edge", "--config", str(config), "--endpoint", url]
    seed_process(argv, env)  # the data folder trusts the test CA (tests/tls.py)
    edge = await asyncio.create_subprocess_exec(
        MODELLINE,
        *argv,
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
        await plc.write_all(HEALTHY)  # the install is confirmed only after a Good prediction
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
        assert code == 7 and err.startswith("modelline: cannot connect to ") and err.count("\n") == 1
    finally:
        edge.send_signal(signal.SIGTERM)
        _, err_bytes = await asyncio.wait_for(edge.communicate(), 30)
        await plc.stop()
    assert edge.returncode == 0, err_bytes.decode()[-2000:]
    assert "stopping" in err_bytes.decode()
    assert "Traceback" not in err_bytes.decode()


@pytest.mark.timeout(180)
async def test_install_confirms_only_after_a_good_prediction(tmp_path: Path, signer: Signer, example: Path) -> None:
    """--confirm-within confirms a model that predicts Good; one whose inputs are out of range (also while the
    old model predicted Good), or that has no binding, is left unconfirmed with exit code 6 and the node
    reverts by itself."""
    v1 = build_pump(example, signer, tmp_path / "v1.uadipkg").path
    v2 = build_pump(example, signer, tmp_path / "v2.uadipkg", version="1.1.0").path
    spec = PackageSpec.load(example / "spec.toml")
    sensors = spec.inputs["sensors"]
    features = [f.model_copy(update={"max": 2.0}) if f.name == "vibration_rms" else f for f in sensors.features]
    narrow = build_package(  # vibration_rms valid only up to 2.0: the healthy 2.1 is out of its range
        example / "model.onnx",
        tmp_path / "narrow.uadipkg",
        name="pump-health",
        version="1.2.0",
        spec=spec.model_copy(update={"inputs": {"sensors": sensors.model_copy(update={"features": features})}}),
        private_key=signer.private_key,
    ).path
    async with (
        running_plc() as plc,
        running_edge(edge_settings(tmp_path, signer.trust_dir, slots=["pump1", "pump2"])) as node,
    ):
        binding = tmp_path / "binding.json"
        binding.write_text(json.dumps(plc.binding()))
        url = node.settings.endpoint
        await plc.write_all(HEALTHY)
        code, out, err = await _run(
            "install", str(v1), "--edge", url, "--slot", "pump1", "--binding", str(binding), "--confirm-within", "20"
        )
        assert code == 0, err
        assert "pump-health 1.0.0 installed on" in out and "and confirmed" in out
        assert not node.slots["pump1"].awaiting_confirmation

        await plc.write("vibration_rms", 100.0)  # valid range 0..45: every prediction is Bad_OutOfRange
        code, out, err = await _run("install", str(v2), "--edge", url, "--slot", "pump1", "--confirm-within", "4")
        assert code == 6, err
        line = err.strip().splitlines()[-1]  # progress notes, then the one-line error
        assert line.startswith(
            "modelline: pump-health 1.1.0 installed but not confirmed: no Good prediction within 3 s"
        ), line
        assert "BadOutOfRange" in line and "the edge node reverts by itself within 4 s" in line, line
        assert_documented(line, "installed but not confirmed: no Good prediction")

        async def reverted() -> bool:
            current = node.slots["pump1"].state.current
            return current is not None and current.version == "1.0.0" and not node.slots["pump1"].awaiting_confirmation

        await wait_for(reverted, timeout=15, what="the unconfirmed install to revert to 1.0.0")

        # Tags that do not change: the only prediction of the new model is the one made at the swap, before
        # install returns; it counts (the binding set above stays, so no --binding this time).
        await plc.write("vibration_rms", HEALTHY["vibration_rms"])
        code, out, err = await _run("install", str(v2), "--edge", url, "--slot", "pump1", "--confirm-within", "20")
        assert code == 0, err
        assert "pump-health 1.1.0 installed on" in out and "and confirmed" in out
        assert node.slots["pump1"].state.current.version == "1.1.0"  # type: ignore[union-attr]

        # The old model predicts Good right up to the swap; the new one, with a narrower valid range, never does.
        code, out, err = await _run("install", str(narrow), "--edge", url, "--slot", "pump1", "--confirm-within", "4")
        assert code == 6, err
        assert "pump-health 1.2.0 installed but not confirmed" in err and "BadOutOfRange" in err, err

        async def back_to_1_1_0() -> bool:
            current = node.slots["pump1"].state.current
            return current is not None and current.version == "1.1.0" and not node.slots["pump1"].awaiting_confirmation

        await wait_for(back_to_1_1_0, timeout=15, what="the install of the narrow model to revert to 1.1.0")

        code, out, err = await _run("install", str(v1), "--edge", url, "--slot", "pump2", "--confirm-within", "4")
        assert code == 6, err
        assert "pipeline pump2 has no binding" in err and "give --binding, or --no-confirm" in err, err
        assert_documented(err, "installed but not confirmed: pipeline")

        async def unbound_reverted() -> bool:
            return node.slots["pump2"].state.current is None and not node.slots["pump2"].awaiting_confirmation

        await wait_for(unbound_reverted, timeout=15, what="the unbound install to revert")


@pytest.mark.timeout(120)
async def test_install_on_a_full_disk_says_so(tmp_path: Path, signer: Signer, example: Path) -> None:
    package = build_pump(example, signer, tmp_path / "pump.uadipkg").path
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


@pytest.mark.timeout(120)
async def test_a_second_node_on_a_busy_port_or_a_used_data_folder_is_refused_in_one_line(
    tmp_path: Path, signer: Signer
) -> None:
    settings = edge_settings(tmp_path / "first", signer.trust_dir)
    async with running_edge(settings):
        port = settings.endpoint.rsplit(":", 1)[1].split("/")[0]
        common = ["edge", "--trust", str(signer.trust_dir), "--device-id", "edge-2"]
        code, _, err = await run_modelline(
            *common, "--endpoint", settings.endpoint, "--data-dir", str(tmp_path / "second"), timeout=60
        )
        assert code == 2 and err.count("\n") == 1, err
        assert err == (
            f"modelline: cannot listen on {settings.endpoint}: the address is in use "
            "(another edge node or gateway, or another program)\n"
        )
        assert port not in err.replace(settings.endpoint, "")  # said once, no traceback around it
        elsewhere = f"opc.tcp://127.0.0.1:{free_port()}/edge/"
        code, _, err = await run_modelline(
            *common, "--endpoint", elsewhere, "--data-dir", str(settings.data_dir), timeout=60
        )
        assert code == 1 and err.count("\n") == 1, err
        assert err.startswith(f"modelline: an edge node is running on data folder {settings.data_dir} (pid ")
