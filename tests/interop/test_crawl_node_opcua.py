"""node-opcua reads every attribute of every node of running servers, as a generic browser does (crawl.mjs)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from asyncua import Server, ua

from nodesets.ids import InstallationState
from sdk.binding import Binding
from sdk.opcua.ids import node_id, qname
from sdk.opcua.shelf import init_server
from tests.conftest import Signer
from tests.e2e.test_gateway_rollout import Plant, plant
from tests.edge_harness import HEALTHY, WORN, SimulatedPlc, build_pump, edge_settings, running_edge, wait_for
from tests.opcua_servers import free_port

pytestmark = [pytest.mark.interop, pytest.mark.e2e]


async def crawl(node_opcua: Path, url: str) -> dict[str, Any]:
    """Run crawl.mjs against ``url``; its JSON summary, after asserting that it found no problem."""
    proc = await asyncio.create_subprocess_exec(
        "node",
        str(node_opcua / "crawl.mjs"),
        url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=node_opcua,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 50)
    lines = [line for line in out.decode().splitlines() if line.startswith("{")]
    assert lines, f"crawl.mjs printed no summary (exit {proc.returncode}): {err.decode()[-3000:]}"
    summary: dict[str, Any] = json.loads(lines[-1])
    assert summary["problems"] == [], json.dumps(summary["problems"][:40], indent=1)
    assert proc.returncode == 0, err.decode()[-3000:]
    assert not summary["truncated"] and summary["readRequests"] < summary["attributesRead"] / 100  # batched
    return summary


@pytest.mark.timeout(60)
async def test_edge_node_without_a_model_reads_everywhere(node_opcua: Path, tmp_path: Path, signer: Signer) -> None:
    async with running_edge(edge_settings(tmp_path, signer.trust_dir)) as node:
        summary = await crawl(node_opcua, node.url)
    paths = set(summary["paths"])
    version = "/ObjectsFolder/2:DeviceSet/1:edge-1/1:main/2:SoftwareUpdate/2:Loading/2:CurrentVersion"
    assert f"{version}/2:ReleaseDate" in paths
    assert any(p.endswith("/3:InferenceServer/3:Pipelines/1:main") for p in paths)


@pytest.mark.timeout(60)
async def test_edge_node_serving_a_model_reads_everywhere(
    node_opcua: Path, tmp_path: Path, signer: Signer, example: Path
) -> None:
    plc = await SimulatedPlc().start()
    package = build_pump(example, signer, tmp_path / "pump.mlpkg").path
    try:
        async with running_edge(edge_settings(tmp_path, signer.trust_dir)) as node:
            slot = node.slots["main"]
            pending = await slot.stage_pending(package)
            await slot.request_install(pending.manufacturer_uri, pending.version, b"")
            await wait_for(lambda: _idle(slot), timeout=30, what="install")
            if slot.awaiting_confirmation:
                await slot.confirm()
            await slot.set_binding(Binding.model_validate(plc.binding()))
            for values in (HEALTHY, WORN):
                await plc.write_all(values)
            await wait_for(lambda: _predicted(node), timeout=20, what="a prediction")
            summary = await crawl(node_opcua, node.url)
    finally:
        await plc.stop()
    outputs = [p for p in summary["paths"] if "/3:Outputs/" in p]
    assert any(p.endswith("/1:anomaly_score") for p in outputs), outputs
    assert any(p.endswith("/1:anomaly_score/EURange") for p in outputs), outputs


async def _idle(slot: Any) -> bool:
    return bool(slot.install_state is InstallationState.IDLE and slot.state.current is not None)


async def _predicted(node: Any) -> bool:
    return bool(node.slots["main"].pipeline.status.inference_count > 0)


@pytest.mark.timeout(60)
async def test_gateway_with_models_devices_and_deployments_reads_everywhere(
    node_opcua: Path, tmp_path: Path, signer: Signer, example: Path
) -> None:
    async with plant(tmp_path, signer) as p:
        for version in ("1.0.0", "1.1.0"):
            await p.push(build_pump(example, signer, tmp_path / f"{version}.mlpkg", version).path)
        # A device that never answered: its LastSeen has no time yet.
        gone = ua.Variant(f"opc.tcp://127.0.0.1:{free_port()}/gone/", ua.VariantType.String)
        await p.call("RegisterDevice", ua.Variant("edge-gone", ua.VariantType.String), gone)
        deployment_id = await p.deploy("1.0.0", ["edge-a"])
        deployment = await p.settled(deployment_id, "Active")
        await p.plc.write_all(HEALTHY)
        await wait_for(lambda: _mirrored(p), timeout=20, what="a mirrored prediction")
        summary = await crawl(node_opcua, p.gateway.url)
    paths = set(summary["paths"])
    manager = "/ObjectsFolder/3:ModelManager"
    assert f"{manager}/3:Models/1:pump-health/1:1.1.0/3:Package/LastModifiedTime" in paths
    # Under Devices, or first reached from its offline alarm's source under ModelMonitor (breadth first).
    assert any(p.endswith("/1:edge-gone/3:LastSeen") for p in paths), sorted(p for p in paths if "edge-gone" in p)
    assert any(p.startswith(f"{manager}/3:Deployments/1:") for p in paths), deployment
    assert any(p.endswith("/3:Predictions/1:main/1:anomaly_score/EURange") for p in paths)
    assert "/ObjectsFolder/3:ModelMonitor/3:SubmitFeedback/InputArguments" in paths
    # The crawl may reach ModelMonitor/<deployment>/edge-a first through the alarm area's HasEventSource
    # reference (OPC 10000-9 7.2, hierarchical): ModelMonitor -> edge-a.
    monitored = [p for p in paths if p.startswith("/ObjectsFolder/3:ModelMonitor/") and "1:edge-a/" in p]
    assert any(p.endswith("1:edge-a/3:DriftScore") for p in monitored), deployment_id
    assert any(p.endswith("1:edge-a/1:InputDriftAlarm/AckedState/Id") for p in monitored), sorted(monitored)[:30]


async def _mirrored(p: Plant) -> bool:
    try:
        output = await p.manager.get_child(
            [f"{p.ml}:Devices", "1:edge-a", f"{p.ml}:Predictions", "1:main", "1:anomaly_score"]
        )
    except ua.UaStatusCodeError:
        return False
    status = (await output.read_data_value(raise_on_bad_status=False)).StatusCode
    return status is not None and status.is_good()


@pytest.mark.timeout(60)
async def test_the_crawl_reports_what_breaks_clients(node_opcua: Path) -> None:
    """The check itself: a server with each defect the crawl exists for gets each one reported."""
    server = Server()
    await init_server(server)
    url = f"opc.tcp://127.0.0.1:{free_port()}/broken/"
    server.set_endpoint(url)
    ns = await server.register_namespace("urn:test:broken")
    broken = await server.nodes.objects.add_object(node_id("Broken", ns), qname("Broken", ns))
    await broken.add_variable(node_id("NoDate", ns), qname("NoDate", ns), ua.Variant(None, ua.VariantType.DateTime))
    await broken.add_variable(
        node_id("Null", ns), qname("Null", ns), ua.Variant(), datatype=node_id(ua.ObjectIds.String)
    )
    await broken.add_variable(
        node_id("Mistyped", ns), qname("Mistyped", ns), ua.Variant(1.5), datatype=node_id(ua.ObjectIds.Int32)
    )
    retyped = await broken.add_variable(node_id("Retyped", ns), qname("Retyped", ns), 1.5)
    base, analog = node_id(ua.ObjectIds.BaseDataVariableType), node_id(ua.ObjectIds.AnalogItemType)
    await retyped.delete_reference(base, ua.ObjectIds.HasTypeDefinition, forward=True, bidirectional=False)
    await retyped.add_reference(analog, ua.ObjectIds.HasTypeDefinition, forward=True, bidirectional=False)
    async with server:
        proc = await asyncio.create_subprocess_exec(
            "node", str(node_opcua / "crawl.mjs"), url, stdout=asyncio.subprocess.PIPE, cwd=node_opcua
        )
        out, _ = await asyncio.wait_for(proc.communicate(), 50)
    assert proc.returncode == 1
    summary = json.loads(next(line for line in out.decode().splitlines() if line.startswith("{")))
    found = {(p["nodeId"], p["kind"]) for p in summary["problems"] if p["nodeId"] and f"ns={ns};" in p["nodeId"]}
    assert found == {
        (f"ns={ns};s=NoDate", "readRequestFailed"),  # the whole Read failed: found by reading alone
        (f"ns={ns};s=Null", "nullValue"),
        (f"ns={ns};s=Mistyped", "valueType"),
        (f"ns={ns};s=Retyped", "browseTypeDefinition"),
    }
