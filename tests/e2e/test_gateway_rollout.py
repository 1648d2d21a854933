"""A gateway, two real edge nodes and a simulated PLC on loopback: register, push, deploy, roll back."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from asyncua import Node, ua

from edge_node.app import EdgeNode
from gateway.app import Gateway
from nodesets.ids import DeploymentState
from sdk.file_client import upload
from sdk.opcua.analog import read_layout
from tests.conftest import Signer
from tests.edge_harness import (
    HEALTHY,
    SimulatedPlc,
    build_pump,
    direct_prediction,
    edge_settings,
    wait_for,
    with_wrong_samples,
)
from tests.opcua_servers import free_port
from tests.pki import Pki
from tests.processes import run_modelline
from tests.readme import assert_documented
from tests.tls import Client, GatewaySettings

pytestmark = pytest.mark.e2e

ML = "http://modelline.io/UA/"


@dataclass
class Plant:
    gateway: Gateway
    client: Client
    edges: dict[str, EdgeNode]
    plc: SimulatedPlc
    manager: Node
    ml: int

    async def call(self, method: str, *args: ua.Variant) -> Any:
        return await self.manager.call_method(f"{self.ml}:{method}", *args)

    async def push(self, package: Path) -> None:
        await upload(self.client, await self.manager.get_child(f"{self.ml}:Upload"), package.read_bytes(), ua.Variant())

    async def deploy(self, version: str, targets: list[str], **options: Any) -> str:
        opts = {"binding": self.plc.binding(), "confirmation_timeout_s": 30, "health_check_s": 15, **options}
        return str(
            await self.call(
                "Deploy",
                ua.Variant("pump-health", ua.VariantType.String),
                ua.Variant(version, ua.VariantType.String),
                ua.Variant(targets, ua.VariantType.String),
                ua.Variant(json.dumps(opts), ua.VariantType.String),
            )
        )

    async def deployment(self, deployment_id: str) -> dict[str, Any]:
        node = await self.manager.get_child([f"{self.ml}:Deployments", f"1:{deployment_id}"])
        values = {}
        for name in ("State", "Progress", "LastError", "Version", "Targets"):
            values[name] = await (await node.get_child(f"{self.ml}:{name}")).read_value()
        values["State"] = DeploymentState(values["State"]).label
        return values

    async def settled(self, deployment_id: str, state: str, within: float = 120) -> dict[str, Any]:
        async def check() -> dict[str, Any] | None:
            d = await self.deployment(deployment_id)
            return d if d["State"] == state else None

        return await wait_for(check, timeout=within, what=f"{deployment_id} {state}")

    def serving(self, device: str) -> str | None:
        model = self.edges[device].slots["main"].pipeline.model
        return model.manifest.version if model else None


def _gateway_settings(root: Path, signer: Signer) -> GatewaySettings:
    return GatewaySettings(
        endpoint=f"opc.tcp://127.0.0.1:{free_port()}/gateway/",
        data_dir=root / "gateway",
        trust_dir=signer.trust_dir,
        anonymous_role="Engineer",
    )


@asynccontextmanager
async def plant(
    root: Path,
    signer: Signer,
    settings: GatewaySettings | None = None,
    edge_options: dict[str, dict[str, Any]] | None = None,
) -> AsyncIterator[Plant]:
    """A PLC, edge-a and edge-b (with ``edge_options[name]`` as settings overrides), a gateway knowing both."""
    async with AsyncExitStack() as stack:
        plc = await SimulatedPlc().start()
        stack.push_async_callback(plc.stop)
        edges = {}
        for name in ("edge-a", "edge-b"):
            overrides = (edge_options or {}).get(name, {})
            edges[name] = await stack.enter_async_context(
                EdgeNode(edge_settings(root / name, signer.trust_dir, device_id=name, **overrides))
            )
        gateway = await stack.enter_async_context(Gateway(settings or _gateway_settings(root, signer)))
        client = await stack.enter_async_context(Client(gateway.url))
        ml = await client.get_namespace_index(ML)
        manager = await client.nodes.objects.get_child(f"{ml}:ModelManager")
        p = Plant(gateway, client, edges, plc, manager, ml)
        for name, edge in edges.items():
            await p.call(
                "RegisterDevice", ua.Variant(name, ua.VariantType.String), ua.Variant(edge.url, ua.VariantType.String)
            )
        yield p


@pytest.mark.timeout(300)
async def test_push_deploy_to_both_and_predictions_are_mirrored(tmp_path: Path, signer: Signer, example: Path) -> None:
    async with plant(tmp_path, signer) as p:
        await p.push(build_pump(example, signer, tmp_path / "v1.mlpkg", "1.0.0").path)
        deployment = await p.deploy("1.0.0", ["edge-a", "edge-b"])
        d = await p.settled(deployment, "Active")
        assert (d["Progress"], d["LastError"], d["Targets"]) == (100.0, "", ["edge-a", "edge-b"])
        assert p.serving("edge-a") == p.serving("edge-b") == "1.0.0"
        await p.plc.write_all(HEALTHY)
        expected = direct_prediction(example, HEALTHY)["remaining_life"]
        for device in ("edge-a", "edge-b"):
            node = await p.manager.get_child([f"{p.ml}:Devices", f"1:{device}"])

            async def mirrored(node: Node = node) -> bool:
                try:
                    value = await node.get_child([f"{p.ml}:Predictions", "1:main", "1:remaining_life"])
                except ua.UaStatusCodeError:
                    return False
                dv = await value.read_data_value(raise_on_bad_status=False)
                return dv.StatusCode.is_good() and abs(dv.Value.Value - expected) < 1e-3

            await wait_for(mirrored, what=f"{device} prediction mirrored on the gateway")
            # The mirror looks like the device's own output: same data type, units, range and label.
            mirror = await node.get_child([f"{p.ml}:Predictions", "1:main", "1:remaining_life"])
            layout = await read_layout(mirror)
            async with Client(p.edges[device].url) as edge_client:
                source = edge_client.get_node("ns=1;s=InferenceServer.Pipelines.main.Outputs.remaining_life")
                assert layout == await read_layout(source)
            assert layout.kind is ua.VariantType.Float and layout.units is not None
            assert layout.units.DisplayName.Text == "h" and layout.eu_range is not None
            type_definition = await mirror.read_type_definition()
            assert type_definition == ua.NodeId(ua.ObjectIds.AnalogItemType)
            state = await (await node.get_child(f"{p.ml}:State")).read_value()
            assert state == 0  # Online
            assert await (await node.get_child(f"{p.ml}:ActiveVersion")).read_value() == "1.0.0"
            assert await (await node.get_child(f"{p.ml}:DesiredVersion")).read_value() == "1.0.0"


@pytest.mark.timeout(300)
async def test_a_device_serving_a_model_of_a_revoked_author_is_degraded_at_the_gateway(
    tmp_path: Path, signer: Signer, example: Path
) -> None:
    from sdk.package.build import build_package
    from sdk.package.spec import PackageSpec

    pki = Pki(tmp_path, "Plant CA")
    author = pki.issue("Model author")
    package = build_package(
        example / "model.onnx",
        tmp_path / "v1.uadipkg",
        name="pump-health",
        version="1.0.0",
        spec=PackageSpec.load(example / "spec.toml"),
        identity=author,
    ).path
    plant_signer = replace(signer, trust_dir=pki.folder)
    async with plant(tmp_path, plant_signer, edge_options={"edge-a": {"trust_check_s": 0.5}}) as p:
        await p.push(package)
        await p.settled(await p.deploy("1.0.0", ["edge-a"]), "Active")
        state = await p.manager.get_child([f"{p.ml}:Devices", "1:edge-a", f"{p.ml}:State"])
        assert await state.read_value() == 0  # Online

        pki.revoke(author.certificate)  # the edge node reads the new CRL by itself (trust_check_s)

        async def degraded() -> bool:
            return bool(await state.read_value() == 2)

        await wait_for(degraded, timeout=60, what="edge-a Degraded at the gateway")
        assert p.gateway.devices.links["edge-a"].view.reason == "device health MAINTENANCE_REQUIRED"
        assert p.serving("edge-a") == "1.0.0"  # reported, still serving


@pytest.mark.timeout(300)
async def test_bad_version_fails_the_first_wave_and_spares_the_second(
    tmp_path: Path, signer: Signer, example: Path
) -> None:
    v1 = build_pump(example, signer, tmp_path / "v1.mlpkg", "1.0.0").path
    bad = with_wrong_samples(v1, tmp_path / "bad.mlpkg", signer, "1.1.0")
    async with plant(tmp_path, signer) as p:
        await p.push(v1)
        await p.push(bad)
        await p.settled(await p.deploy("1.0.0", ["edge-a", "edge-b"]), "Active")
        failed = await p.settled(await p.deploy("1.1.0", ["edge-a", "edge-b"], waves=1), "Failed")
        assert failed["LastError"].startswith("wave 1, device edge-a: install of pump-health 1.1.0 failed")
        assert "does not reproduce its samples" in failed["LastError"]
        assert p.serving("edge-a") == "1.0.0"  # the bad version never served
        assert p.serving("edge-b") == "1.0.0"  # the second wave was never touched
        assert p.edges["edge-b"].slots["main"].state.pending is None


@pytest.mark.timeout(300)
async def test_offline_device_catches_up_when_it_returns(tmp_path: Path, signer: Signer, example: Path) -> None:
    async with plant(tmp_path, signer) as p:
        await p.push(build_pump(example, signer, tmp_path / "v1.mlpkg", "1.0.0").path)
        edge_b = p.edges["edge-b"]
        settings = edge_b.settings
        await edge_b.__aexit__(None, None, None)  # edge-b goes away
        deployment = await p.deploy("1.0.0", ["edge-a", "edge-b"])
        await wait_for(lambda: _serving(p, "edge-a", "1.0.0"), what="edge-a updated")
        assert (await p.deployment(deployment))["State"] != "Active"  # waiting for edge-b
        async with EdgeNode(settings) as returned:
            p.edges["edge-b"] = returned
            await p.settled(deployment, "Active", within=90)
            assert p.serving("edge-b") == "1.0.0"


@pytest.mark.timeout(300)
async def test_rollback_to_the_fallback(tmp_path: Path, signer: Signer, example: Path) -> None:
    async with plant(tmp_path, signer) as p:
        for version in ("1.0.0", "2.0.0"):
            await p.push(build_pump(example, signer, tmp_path / f"{version}.mlpkg", version).path)
        await p.settled(await p.deploy("1.0.0", ["edge-a", "edge-b"]), "Active")
        upgrade = await p.deploy("2.0.0", ["edge-a"])
        await p.settled(upgrade, "Active")
        assert p.serving("edge-a") == "2.0.0"
        rollback = str(
            await p.call("Rollback", ua.Variant(upgrade, ua.VariantType.String), ua.Variant("", ua.VariantType.String))
        )
        await p.settled(rollback, "Active")
        assert p.serving("edge-a") == "1.0.0"
        assert (await p.deployment(upgrade))["State"] == "RolledBack"


@pytest.mark.timeout(300)
async def test_gateway_restart_keeps_everything_and_resumes(tmp_path: Path, signer: Signer, example: Path) -> None:
    settings = _gateway_settings(tmp_path, signer)
    async with plant(tmp_path, signer, settings) as p:
        await p.push(build_pump(example, signer, tmp_path / "v1.mlpkg", "1.0.0").path)
        first = await p.deploy("1.0.0", ["edge-a"])
        await p.settled(first, "Active")
        edge_b = p.edges["edge-b"]
        await edge_b.__aexit__(None, None, None)
        pending = await p.deploy("1.0.0", ["edge-b"])  # cannot finish: edge-b is away
        await p.gateway.__aexit__(None, None, None)  # the gateway stops mid-rollout
        async with EdgeNode(edge_b.settings) as returned, Gateway(settings) as gateway, Client(gateway.url) as client:
            p.edges["edge-b"], p.gateway, p.client = returned, gateway, client
            p.manager = await client.nodes.objects.get_child(f"{p.ml}:ModelManager")
            assert (await p.deployment(first))["State"] == "Active"  # nothing acknowledged is lost
            await p.settled(pending, "Active", within=90)  # and the unfinished one resumes
            assert p.serving("edge-b") == "1.0.0"
            devices = await (await p.manager.get_child(f"{p.ml}:Devices")).get_children()
            assert sorted([(await d.read_browse_name()).Name for d in devices]) == ["edge-a", "edge-b"]


@pytest.mark.timeout(300)
async def test_methods_refuse_bad_arguments_with_precise_codes(tmp_path: Path, signer: Signer, example: Path) -> None:
    async with plant(tmp_path, signer) as p:
        await p.push(build_pump(example, signer, tmp_path / "v1.mlpkg", "1.0.0").path)
        s, arr = ua.VariantType.String, ua.VariantType.String

        async def refused(method: str, *args: ua.Variant) -> str:
            with pytest.raises(ua.UaStatusCodeError) as info:
                await p.call(method, *args)
            return type(info.value).__name__

        deploy = lambda model, version, targets, options="": (  # noqa: E731
            ua.Variant(model, s),
            ua.Variant(version, s),
            ua.Variant(targets, arr),
            ua.Variant(options, s),
        )
        assert await refused("Deploy", *deploy("pump-health", "9.9.9", ["edge-a"])) == "BadNotFound"
        assert await refused("Deploy", *deploy("pump-health", "1.0.0", ["nobody"])) == "BadNotFound"
        assert await refused("Deploy", *deploy("pump-health", "1.0.0", [])) == "BadInvalidArgument"
        assert await refused("Deploy", *deploy("pump-health", "1.0.0", ["edge-a"], "{bad json")) == "BadInvalidArgument"
        assert (
            await refused("Deploy", *deploy("pump-health", "1.0.0", ["edge-a"], '{"waves": 0}')) == "BadInvalidArgument"
        )
        assert await refused("Deploy", ua.Variant("pump-health", s)) == "BadArgumentsMissing"
        assert (
            await refused(
                "Deploy",
                ua.Variant(1, ua.VariantType.Int32),
                ua.Variant("1.0.0", s),
                ua.Variant(["edge-a"], arr),
                ua.Variant("", s),
            )
            == "BadInvalidArgument"  # OPC 10000-4 5.11.2: the argument's own result says BadTypeMismatch
        )
        assert await refused("Undeploy", ua.Variant("deploy-9999", s), ua.Variant("", s)) == "BadTooManyArguments"
        assert await refused("Undeploy", ua.Variant("deploy-9999", s)) == "BadNotFound"
        assert await refused("Rollback", ua.Variant("deploy-9999", s), ua.Variant("", s)) == "BadNotFound"
        assert (
            await refused("RegisterDevice", ua.Variant("bad id!", s), ua.Variant("opc.tcp://x:1/", s))
            == "BadInvalidArgument"
        )
        assert (
            await refused("RegisterDevice", ua.Variant("edge-c", s), ua.Variant("http://x", s)) == "BadInvalidArgument"
        )
        done = await p.deploy("1.0.0", ["edge-a"])
        await p.settled(done, "Active")
        assert await refused("Undeploy", ua.Variant(done, s)) == "BadInvalidState"


async def _serving(p: Plant, device: str, version: str) -> bool:
    return p.serving(device) == version


@pytest.mark.timeout(300)
async def test_cli_drives_the_gateway(tmp_path: Path, signer: Signer, example: Path) -> None:
    run = partial(run_modelline, timeout=60)

    package = build_pump(example, signer, tmp_path / "v1.mlpkg", "1.0.0").path
    async with plant(tmp_path, signer) as p:
        url = p.gateway.url
        binding = tmp_path / "binding.json"
        binding.write_text(json.dumps(p.plc.binding()))
        assert (await run("push", str(package), "--gateway", url))[0] == 0
        code, out, err = await run("devices", "add", "edge-a", p.edges["edge-a"].url, "--gateway", url)
        assert code == 0, err
        code, out, _ = await run("devices", "list", "--gateway", url, "--json")
        assert sorted(d["id"] for d in json.loads(out)["devices"]) == ["edge-a", "edge-b"]
        code, out, err = await run(
            "deploy",
            "pump-health",
            "1.0.0",
            "--to",
            "edge-a,edge-b",
            "--binding",
            str(binding),
            "--waves",
            "1",
            "--gateway",
            url,
            "--json",
        )
        assert code == 0, err
        deployment = json.loads(out)["deployment"]
        await p.settled(deployment, "Active")
        code, out, _ = await run("status", "--gateway", url, "--json")
        status = json.loads(out)
        assert [(d["id"], d["State"]) for d in status["deployments"]] == [(deployment, "Active")]
        assert {d["id"]: d["ActiveVersion"] for d in status["devices"]} == {"edge-a": "1.0.0", "edge-b": "1.0.0"}
        code, out, _ = await run("status", "--gateway", url)
        assert "Deployments" in out and deployment in out and "Active" in out
        code, _, err = await run("deploy", "pump-health", "9.9.9", "--to", "edge-a", "--gateway", url)
        assert (
            code == 4 and err.startswith("modelline: the gateway refused Deploy (BadNotFound)") and err.count("\n") == 1
        )
        code, out, err = await run("rollback", deployment, "--gateway", url, "--json")
        assert code == 0, err
        assert json.loads(out)["deployment"] != deployment


@pytest.mark.timeout(300)
async def test_unhealthy_install_is_not_confirmed_and_the_device_reverts(
    tmp_path: Path, signer: Signer, example: Path
) -> None:
    async with plant(tmp_path, signer) as p:
        for version in ("1.0.0", "2.0.0"):
            await p.push(build_pump(example, signer, tmp_path / f"{version}.mlpkg", version).path)
        await p.settled(await p.deploy("1.0.0", ["edge-a"]), "Active")
        broken = p.plc.binding()
        broken["inputs"]["speed"]["node_id"] = "ns=2;s=Pump1.NoSuchTag"  # 2.0.0 will never see good inputs
        upgrade = await p.deploy("2.0.0", ["edge-a"], binding=broken, confirmation_timeout_s=3, health_check_s=1)
        failed = await p.settled(upgrade, "Failed")
        assert "no healthy predictions within 1 s of the install" in failed["LastError"]
        assert_documented(failed["LastError"], "no healthy predictions")
        slot = p.edges["edge-a"].slots["main"]

        async def reverted() -> bool:
            return "not confirmed within 3 s; reverted to 1.0.0" in slot.update_status

        await wait_for(reverted, timeout=20, what="edge-a reverting to 1.0.0 by itself")
        assert p.serving("edge-a") == "1.0.0" and not slot.awaiting_confirmation
        # The binding 2.0.0 was tried with is undone with it: 1.0.0 runs with its own binding, Good again.
        assert slot.state.binding is not None and json.loads(slot.state.binding.to_json()) == p.plc.binding()
        await p.plc.write_all(HEALTHY)

        async def good_again() -> bool:
            return slot.pipeline.status.good_configuration == slot.pipeline.status.configuration != ""

        await wait_for(good_again, timeout=20, what="edge-a Good again with its own binding")


@pytest.mark.timeout(300)
async def test_a_device_that_reverts_while_its_link_is_up_is_reported_as_reverted(
    tmp_path: Path, signer: Signer, example: Path
) -> None:
    """Its ConfirmationTimeout (2 s) runs out during the gateway's health check (8 s): the link stays up."""
    async with plant(tmp_path, signer) as p:
        for version in ("1.0.0", "2.0.0"):
            await p.push(build_pump(example, signer, tmp_path / f"{version}.mlpkg", version).path)
        await p.settled(await p.deploy("1.0.0", ["edge-a"]), "Active")
        broken = p.plc.binding()
        broken["inputs"]["speed"]["node_id"] = "ns=2;s=Pump1.NoSuchTag"  # 2.0.0 will never see good inputs
        upgrade = await p.deploy("2.0.0", ["edge-a"], binding=broken, confirmation_timeout_s=2, health_check_s=8)
        failed = await p.settled(upgrade, "Failed")
        assert (
            "device edge-a: the device reverted to 1.0.0 before the install was confirmed (device: 2.0.0: not "
            "confirmed within 2 s; reverted to 1.0.0); the health check found no healthy predictions within 8 s "
            "of the install"
        ) in failed["LastError"], failed["LastError"]
        assert_documented(failed["LastError"], "the device reverted to")
        assert p.serving("edge-a") == "1.0.0"


@pytest.mark.timeout(300)
async def test_redeploying_the_running_version_applies_a_new_binding(
    tmp_path: Path, signer: Signer, example: Path
) -> None:
    async with plant(tmp_path, signer) as p:
        await p.push(build_pump(example, signer, tmp_path / "1.0.0.mlpkg", "1.0.0").path)
        await p.plc.write_all(HEALTHY)
        await p.settled(await p.deploy("1.0.0", ["edge-a"]), "Active")
        slot = p.edges["edge-a"].slots["main"]
        status = slot.update_status
        on_speed = p.plc.binding(mode="tag", tag="speed")
        rebind = await p.deploy("1.0.0", ["edge-a"], binding=on_speed)
        await p.settled(rebind, "Active")
        assert slot.state.binding is not None and json.loads(slot.state.binding.to_json())["trigger"]["mode"] == "tag"
        assert slot.update_status == status  # nothing was transferred or installed

        broken = p.plc.binding()
        broken["inputs"]["speed"]["node_id"] = "ns=2;s=Pump1.NoSuchTag"
        failed = await p.settled(await p.deploy("1.0.0", ["edge-a"], binding=broken, health_check_s=1), "Failed")
        assert "no healthy predictions within 1 s of the binding change" in failed["LastError"]
        assert failed["LastError"].endswith("; the previous binding was restored")
        assert_documented(failed["LastError"], "the previous binding was restored")
        assert slot.state.binding is not None and json.loads(slot.state.binding.to_json())["trigger"]["mode"] == "tag"


@pytest.mark.timeout(120)
async def test_edge_node_registers_itself_with_the_gateway(tmp_path: Path, signer: Signer) -> None:
    async with Gateway(_gateway_settings(tmp_path, signer)) as gateway:
        settings = edge_settings(tmp_path / "edge-c", signer.trust_dir, device_id="edge-c", gateway_url=gateway.url)
        async with EdgeNode(settings):

            async def registered() -> bool:
                return "edge-c" in gateway.devices.links and gateway.devices.links["edge-c"].online

            await wait_for(registered, timeout=30, what="edge-c registered and connected")
            assert gateway.devices.links["edge-c"].endpoint == settings.endpoint
        assert [d.id for d in await gateway.store.devices()] == ["edge-c"]


@pytest.mark.timeout(300)
async def test_deployment_waits_for_its_maintenance_window(tmp_path: Path, signer: Signer, example: Path) -> None:
    from datetime import UTC, datetime, timedelta

    async with plant(tmp_path, signer) as p:
        await p.push(build_pump(example, signer, tmp_path / "v1.mlpkg", "1.0.0").path)
        start = datetime.now(UTC) + timedelta(seconds=4)
        deployment = await p.deploy("1.0.0", ["edge-a"], start_at=start.isoformat())
        assert (await p.deployment(deployment))["State"] == "Pending"
        assert p.serving("edge-a") is None
        await p.settled(deployment, "Active")
        assert datetime.now(UTC) >= start  # not before its window
        assert p.serving("edge-a") == "1.0.0"
        job_ids = [job.id for job in p.gateway.scheduler.get_jobs()]
        assert deployment not in job_ids  # a one-off: done


@pytest.mark.timeout(300)
async def test_undeploy_stops_a_waiting_rollout_and_rollback_to_a_named_version(
    tmp_path: Path, signer: Signer, example: Path
) -> None:
    async with plant(tmp_path, signer) as p:
        for version in ("1.0.0", "2.0.0"):
            await p.push(build_pump(example, signer, tmp_path / f"{version}.mlpkg", version).path)
        edge_b = p.edges["edge-b"]
        await edge_b.__aexit__(None, None, None)  # edge-b is away: this deployment cannot finish
        waiting = await p.deploy("1.0.0", ["edge-b"])
        assert (await p.deployment(waiting))["State"] == "Pending"
        await p.call("Undeploy", ua.Variant(waiting, ua.VariantType.String))
        stopped = await p.deployment(waiting)
        assert stopped["State"] == "Failed" and stopped["LastError"] == "undeployed by anonymous"
        await p.settled(await p.deploy("2.0.0", ["edge-a"]), "Active")
        back = str(
            await p.call(
                "Rollback", ua.Variant("edge-a", ua.VariantType.String), ua.Variant("1.0.0", ua.VariantType.String)
            )
        )
        await p.settled(back, "Active")
        assert p.serving("edge-a") == "1.0.0"
        assert (await p.deployment(back))["Version"] == "1.0.0"
        await p.gateway.audit.flush()
        entries = [e.action for e in await p.gateway.store.fetch("", 0, 1000)]
        assert {"deploy", "undeploy", "rollback", "register device", "upload"} <= set(entries)
