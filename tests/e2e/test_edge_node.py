"""An edge node on loopback, driven through the DI software update flow by a plain OPC UA client,
reading tags from a simulated PLC and publishing predictions."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import pytest_asyncio
from asyncua import ua

from nodesets.ids import DeviceHealth, InstallationState, PipelineState, SoftwareVersionFileType
from sdk import errors
from sdk.di_client import SoftwareUpdateClient, set_binding
from sdk.diskspace import free_bytes
from sdk.errors import UpdateFailed
from sdk.package.build import build_package
from sdk.package.spec import PackageSpec
from tests.conftest import Signer, read_members, write_members
from tests.edge_harness import (
    HEALTHY,
    WORN,
    SimulatedPlc,
    build_pump,
    direct_prediction,
    edge_settings,
    output_node,
    running_edge,
    wait_for,
    with_wrong_samples,
)
from tests.malicious import variants
from tests.pki import Pki
from tests.readme import assert_documented
from tests.tls import Client

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def plc() -> AsyncIterator[SimulatedPlc]:
    plc = await SimulatedPlc().start()
    yield plc
    await plc.stop()


@pytest.fixture
def v1(example: Path, signer: Signer, tmp_path: Path) -> Path:
    return build_pump(example, signer, tmp_path / "pump-1.0.0.uadipkg", "1.0.0").path


@pytest.fixture
def v2(example: Path, signer: Signer, tmp_path: Path) -> Path:
    return build_pump(example, signer, tmp_path / "pump-2.0.0.uadipkg", "2.0.0").path


async def _install(client: Client, package: Path, confirm_within: float = 0.0, confirm: bool = True) -> str:
    su = await SoftwareUpdateClient.find(client)
    await su.set_confirmation_timeout(confirm_within)
    pending = await su.transfer(package)
    status = await su.install(pending)
    if confirm_within and confirm:
        await su.confirm()
    return status


async def _read(client: Client, output: str) -> ua.DataValue:
    node = await output_node(client, "main", output)
    return await node.read_data_value(raise_on_bad_status=False)


@pytest.mark.timeout(120)
async def test_install_confirm_and_predict_exactly_what_onnxruntime_returns(
    plc: SimulatedPlc, v1: Path, signer: Signer, tmp_path: Path, example: Path
) -> None:
    async with running_edge(edge_settings(tmp_path, signer.trust_dir)) as node, Client(node.url) as client:
        status = await _install(client, v1, confirm_within=30)
        assert "pump-health 1.0.0 installed" in status
        su = await SoftwareUpdateClient.find(client)
        current = await su.version(SoftwareVersionFileType.CURRENT)
        assert current.revision == "1.0.0"
        assert current.manufacturer_uri == "urn:modelline:model:pump-health"
        assert current.hash == hashlib.sha256(v1.read_bytes()).digest()  # as transferred
        assert (await su.version(SoftwareVersionFileType.PENDING)).empty

        before = await _read(client, "anomaly_score")
        assert before.StatusCode.name == "BadConfigurationError"  # installed, not bound yet
        import json

        await set_binding(client, "main", json.dumps(plc.binding()))
        source_time = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=5)
        await plc.write_all(WORN, source_time=source_time)
        expected = direct_prediction(example, WORN)

        async def predicted() -> bool:
            dv = await _read(client, "remaining_life")
            return dv.StatusCode.is_good() and dv.Value.Value == pytest.approx(expected["remaining_life"], abs=0)

        await wait_for(predicted, what="remaining_life prediction")
        for name, value in expected.items():
            dv = await _read(client, name)
            assert dv.Value.VariantType == ua.VariantType.Float
            assert dv.Value.Value == value  # bit for bit what onnxruntime gives
            assert dv.StatusCode.is_good()
            assert dv.SourceTimestamp == source_time  # the newest input's source timestamp
            assert dv.ServerTimestamp >= dv.SourceTimestamp
        units = await (
            await (await output_node(client, "main", "remaining_life")).get_child("0:EngineeringUnits")
        ).read_value()
        assert units.DisplayName.Text == "h" and units.UnitId == 0x485552  # UNECE HUR
        eu_range = await (
            await (await output_node(client, "main", "anomaly_score")).get_child("0:EURange")
        ).read_value()
        assert (eu_range.Low, eu_range.High) == (0.0, 1.0)
        pipeline = node.slots["main"].pipeline
        assert pipeline.status.state is PipelineState.RUNNING and pipeline.status.inference_count >= 1


@pytest.mark.timeout(120)
async def test_tampered_package_rejected_at_commit_and_nothing_changes(
    plc: SimulatedPlc, v1: Path, v2: Path, signer: Signer, tmp_path: Path
) -> None:
    members = read_members(v2)
    members["CONTENT/model.onnx"] = members["CONTENT/model.onnx"][:-1] + bytes([members["CONTENT/model.onnx"][-1] ^ 1])
    tampered = write_members(tmp_path / "tampered.uadipkg", list(members.items()))
    async with running_edge(edge_settings(tmp_path, signer.trust_dir)) as node, Client(node.url) as client:
        await _install(client, v1)
        su = await SoftwareUpdateClient.find(client)
        with pytest.raises(errors.PackageRejected, match="does not match its SHA-256"):
            await su.transfer(tampered)
        assert (await su.version(SoftwareVersionFileType.PENDING)).empty
        assert (await su.version(SoftwareVersionFileType.CURRENT)).revision == "1.0.0"
        transfers = node.slots["main"].store.root / "transfers"
        assert list(transfers.iterdir()) == []
        packages = {p.name for p in node.slots["main"].store.packages.iterdir()}
        assert packages == {hashlib.sha256(v1.read_bytes()).hexdigest() + ".mlpkg"}


@pytest.mark.timeout(120)
async def test_refusal_reasons_name_the_package_not_a_server_path(
    plc: SimulatedPlc, signer: Signer, other_signer: Signer, example: Path, tmp_path: Path
) -> None:
    """Loading/ErrorMessage says why in the words of 'package verify', without the node's own file paths."""
    junk = tmp_path / "junk.uadipkg"
    junk.write_bytes(b"not a package" * 10)
    foreign = build_pump(example, other_signer, tmp_path / "foreign.uadipkg").path
    async with running_edge(edge_settings(tmp_path, signer.trust_dir)) as node, Client(node.url) as client:
        su = await SoftwareUpdateClient.find(client)
        for package, reason in ((junk, "not a ModelLine package"), (foreign, "does not chain to a trusted root")):
            with pytest.raises(errors.PackageRejected, match=reason) as refused:
                await su.transfer(package)
            loading = await su.update.get_child(f"{su.di}:Loading")
            message = (await (await loading.get_child(f"{su.di}:ErrorMessage")).read_value()).Text
            assert reason in message and message in str(refused.value)
            for server_path in (str(node.settings.data_dir), str(signer.trust_dir), "upload-", ".part"):
                assert server_path not in message, message


@pytest.mark.timeout(180)
async def test_every_hostile_variant_is_refused_at_transfer(
    plc: SimulatedPlc, v1: Path, signer: Signer, tmp_path: Path
) -> None:
    async with running_edge(edge_settings(tmp_path, signer.trust_dir)) as node, Client(node.url) as client:
        su = await SoftwareUpdateClient.find(client)
        for name, bad in variants(v1, tmp_path).items():
            with pytest.raises(errors.PackageRejected):
                await su.transfer(bad)
            assert (await su.version(SoftwareVersionFileType.PENDING)).empty, name
        assert node.slots["main"].state.current is None


@pytest.mark.timeout(180)
async def test_edge_checks_approval_at_install_and_revocation_at_load(
    plc: SimulatedPlc, example: Path, tmp_path: Path
) -> None:
    """The node verifies every package itself: approval at transfer, and a revoked author at the next load."""
    from sdk.package.approve import approve_package

    pki, approvers = Pki(tmp_path, "Plant CA"), Pki(tmp_path, "Plant approvals")
    author = pki.issue("Model author")
    plain = build_package(
        example / "model.onnx",
        tmp_path / "p.uadipkg",
        name="pump-health",
        version="1.0.0",
        spec=PackageSpec.load(example / "spec.toml"),
        identity=author,
    ).path
    approved = tmp_path / "approved.uadipkg"
    approve_package(plain, approvers.issue("OT security"), approved)
    settings = edge_settings(tmp_path, pki.folder, approval_trust_dir=approvers.folder)
    async with running_edge(settings) as node, Client(node.url) as client:
        su = await SoftwareUpdateClient.find(client)
        with pytest.raises(errors.PackageRejected, match="approval required and not given"):
            await su.transfer(plain)
        assert "pump-health 1.0.0 installed" in await _install(client, approved)
        current = await su.version(SoftwareVersionFileType.CURRENT)  # from META/package_metadata.json
        assert (current.manufacturer_uri, current.revision) == ("urn:modelline:model:pump-health", "1.0.0")
        assert current.hash == hashlib.sha256(approved.read_bytes()).digest()

    pki.revoke(author.certificate)  # the plant revokes the author; the node restarts with the new CRL
    async with running_edge(settings) as node, Client(node.url) as client:
        su = await SoftwareUpdateClient.find(client)
        text = await su.update_status()
        assert "cannot serve 1.0.0 after restart" in text and "CN=Model author" in text and "was revoked" in text
        assert node.slots["main"].pipeline.status.state is not PipelineState.RUNNING


@pytest.mark.timeout(120)
async def test_a_running_model_whose_signer_is_revoked_is_reported(
    plc: SimulatedPlc, example: Path, tmp_path: Path
) -> None:
    """A new CRL is read while the node runs: the model keeps serving, UpdateStatus and DeviceHealth say why."""
    pki = Pki(tmp_path, "Plant CA")
    author = pki.issue("Model author")
    pkg = build_package(
        example / "model.onnx",
        tmp_path / "p.uadipkg",
        name="pump-health",
        version="1.0.0",
        spec=PackageSpec.load(example / "spec.toml"),
        identity=author,
    ).path
    settings = edge_settings(tmp_path, pki.folder, trust_check_s=0.5)
    async with running_edge(settings) as node, Client(node.url) as client:
        assert "pump-health 1.0.0 installed" in await _install(client, pkg)
        su = await SoftwareUpdateClient.find(client)
        di = await client.get_namespace_index("http://opcfoundation.org/UA/DI/")
        health = await client.nodes.objects.get_child([f"{di}:DeviceSet", "1:edge-1", f"{di}:DeviceHealth"])
        assert await health.read_value() != DeviceHealth.MAINTENANCE_REQUIRED

        pki.revoke(author.certificate)

        async def reported() -> bool:
            return bool(await health.read_value() == DeviceHealth.MAINTENANCE_REQUIRED)

        await wait_for(reported, timeout=30, what="DeviceHealth MaintenanceRequired")
        text = await su.update_status()
        assert "pump-health 1.0.0 is no longer trusted" in text and "was revoked" in text, text
        assert node.slots["main"].pipeline.model is not None  # it keeps serving until a trusted one is installed


@pytest.mark.timeout(120)
async def test_install_checks_hash_and_version(plc: SimulatedPlc, v1: Path, signer: Signer, tmp_path: Path) -> None:
    async with running_edge(edge_settings(tmp_path, signer.trust_dir)) as node, Client(node.url) as client:
        su = await SoftwareUpdateClient.find(client)
        pending = await su.transfer(v1)
        installation = await su.update.get_child(f"{su.di}:Installation")
        method = await installation.get_child(f"{su.di}:InstallSoftwarePackage")

        async def call(uri: str, revision: str, digest: bytes) -> str:
            with pytest.raises(ua.UaStatusCodeError) as info:
                await installation.call_method(
                    method,
                    ua.Variant(uri, ua.VariantType.String),
                    ua.Variant(revision, ua.VariantType.String),
                    ua.Variant([], ua.VariantType.String),
                    ua.Variant(digest, ua.VariantType.ByteString),
                )
            return type(info.value).__name__

        assert await call(pending.manufacturer_uri, pending.revision, b"\x00" * 32) == "BadInvalidArgument"
        assert await call(pending.manufacturer_uri, "9.9.9", pending.hash) == "BadNotFound"
        assert await su.installation_state() is InstallationState.IDLE
        assert node.slots["main"].pipeline.model is None  # nothing was installed


@pytest.mark.timeout(120)
async def test_sample_mismatch_is_an_error_and_the_old_model_keeps_serving(
    plc: SimulatedPlc, v1: Path, signer: Signer, tmp_path: Path
) -> None:
    bad = with_wrong_samples(v1, tmp_path / "bad.uadipkg", signer, "1.1.0")
    async with running_edge(edge_settings(tmp_path, signer.trust_dir)) as node, Client(node.url) as client:
        await _install(client, v1)
        su = await SoftwareUpdateClient.find(client)
        pending = await su.transfer(bad)  # signature and hashes are fine: only running it shows the problem
        with pytest.raises(
            UpdateFailed, match="install of pump-health 1.1.0 failed: model does not reproduce its samples"
        ) as refused:
            await su.install(pending)
        assert_documented(str(refused.value), "failed: model does not reproduce")
        assert await su.installation_state() is InstallationState.ERROR
        assert node.slots["main"].pipeline.model.manifest.version == "1.0.0"
        assert (await su.version(SoftwareVersionFileType.CURRENT)).revision == "1.0.0"
        await su.resume()
        assert await su.installation_state() is InstallationState.IDLE


@pytest.mark.timeout(120)
async def test_unconfirmed_install_reverts_to_the_fallback(
    plc: SimulatedPlc, v1: Path, v2: Path, signer: Signer, tmp_path: Path
) -> None:
    async with running_edge(edge_settings(tmp_path, signer.trust_dir)) as node, Client(node.url) as client:
        await _install(client, v1)
        su = await SoftwareUpdateClient.find(client)
        await _install(client, v2, confirm_within=1.0, confirm=False)
        assert (await su.version(SoftwareVersionFileType.CURRENT)).revision == "2.0.0"
        assert (await su.version(SoftwareVersionFileType.FALLBACK)).revision == "1.0.0"
        confirmation = await (await su.update.get_child(f"{su.di}:Confirmation")).get_child("0:CurrentState")
        assert (await confirmation.read_value()).Text == "WaitingForConfirm"

        async def reverted() -> bool:
            return (await su.version(SoftwareVersionFileType.CURRENT)).revision == "1.0.0"

        await wait_for(reverted, timeout=10, what="revert to 1.0.0")
        assert "not confirmed within 1 s; reverted to 1.0.0" in await su.update_status()
        assert (await confirmation.read_value()).Text == "NotWaitingForConfirm"
        assert node.slots["main"].pipeline.model.manifest.version == "1.0.0"
        with pytest.raises(UpdateFailed, match="Confirm refused: BadInvalidState"):
            await su.confirm()


@pytest.mark.timeout(120)
async def test_confirmed_install_stays_and_read_back_matches(
    plc: SimulatedPlc, v1: Path, v2: Path, signer: Signer, tmp_path: Path
) -> None:
    async with running_edge(edge_settings(tmp_path, signer.trust_dir)) as node, Client(node.url) as client:
        await _install(client, v1)
        await _install(client, v2, confirm_within=1.0)
        su = await SoftwareUpdateClient.find(client)
        await asyncio.sleep(1.5)  # past the confirmation timeout: a confirmed install must not revert
        assert (await su.version(SoftwareVersionFileType.CURRENT)).revision == "2.0.0"
        transfer = await su.update.get_child([f"{su.di}:Loading", f"{su.di}:FileTransfer"])
        for kind, package in ((0, v2), (2, v1)):  # Current, Fallback
            file_id, handle, _ = await transfer.call_method(
                await transfer.get_child("0:GenerateFileForRead"), ua.Variant(kind, ua.VariantType.Int32)
            )
            file_node = client.get_node(file_id)
            read = await file_node.get_child("0:Read")
            data = b""
            while chunk := await file_node.call_method(
                read, ua.Variant(handle, ua.VariantType.UInt32), ua.Variant(1 << 16, ua.VariantType.Int32)
            ):
                data += chunk
            await file_node.call_method(await file_node.get_child("0:Close"), ua.Variant(handle, ua.VariantType.UInt32))
            assert data == package.read_bytes()
        with pytest.raises(ua.UaStatusCodeError, match="BadNotFound"):
            await transfer.call_method(
                await transfer.get_child("0:GenerateFileForRead"), ua.Variant(1, ua.VariantType.Int32)
            )


@pytest.mark.timeout(120)
async def test_restarted_node_serves_current_without_a_gateway(
    plc: SimulatedPlc, v1: Path, signer: Signer, tmp_path: Path, example: Path
) -> None:
    import json

    settings = edge_settings(tmp_path, signer.trust_dir)
    async with running_edge(settings) as node, Client(node.url) as client:
        await _install(client, v1)
        await set_binding(client, "main", json.dumps(plc.binding()))
    await plc.write_all(HEALTHY)
    async with running_edge(settings) as node, Client(node.url) as client:  # same data folder, nobody installs
        expected = direct_prediction(example, HEALTHY)

        async def serving() -> bool:
            dv = await _read(client, "anomaly_score")
            return dv.StatusCode.is_good() and dv.Value.Value == expected["anomaly_score"]

        await wait_for(serving, what="predictions after restart")
        assert node.slots["main"].pipeline.model.manifest.version == "1.0.0"


@pytest.mark.timeout(120)
async def test_restart_while_waiting_for_confirm_reverts(
    plc: SimulatedPlc, v1: Path, v2: Path, signer: Signer, tmp_path: Path
) -> None:
    settings = edge_settings(tmp_path, signer.trust_dir)
    async with running_edge(settings) as node, Client(node.url) as client:
        await _install(client, v1)
        await _install(client, v2, confirm_within=600, confirm=False)
    async with running_edge(settings) as node, Client(node.url) as client:
        su = await SoftwareUpdateClient.find(client)
        assert (await su.version(SoftwareVersionFileType.CURRENT)).revision == "1.0.0"
        assert "restarted before the install was confirmed" in await su.update_status()
        assert node.slots["main"].pipeline.model.manifest.version == "1.0.0"


@pytest.mark.timeout(120)
async def test_upgrade_under_changing_tags_gives_no_bad_output(
    plc: SimulatedPlc, v1: Path, v2: Path, signer: Signer, tmp_path: Path
) -> None:
    import json

    async with running_edge(edge_settings(tmp_path, signer.trust_dir)) as node, Client(node.url) as client:
        await _install(client, v1)
        await set_binding(client, "main", json.dumps(plc.binding()))
        await plc.write_all(HEALTHY)
        await wait_for(lambda: _good(client), what="first good prediction")

        seen: list[ua.DataValue] = []

        class Collector:
            def datachange_notification(self, node: object, value: object, data: ua.DataChangeNotification) -> None:
                seen.append(data.monitored_item.Value)

        sub = await client.create_subscription(10, Collector())
        await sub.subscribe_data_change(await output_node(client, "main", "remaining_life"))
        stop = asyncio.Event()

        async def keep_changing() -> int:
            n = 0
            while not stop.is_set():
                await plc.write("speed", 1470.0 + (n % 10))
                n += 1
                await asyncio.sleep(0.01)
            return n

        writer = asyncio.create_task(keep_changing())
        try:
            await _install(client, v2)
            await wait_for(lambda: _version(node, "2.0.0"), what="2.0.0 serving")
            before = node.slots["main"].pipeline.status.inference_count
            await wait_for(lambda: _more(node, before + 5), what="inferences with 2.0.0")
        finally:
            stop.set()
            writes = await writer
        await sub.delete()
        assert writes > 20 and len(seen) > 10
        assert [dv.StatusCode.name for dv in seen if not dv.StatusCode.is_good()] == []


async def _good(client: Client) -> bool:
    return (await _read(client, "remaining_life")).StatusCode.is_good()


async def _version(node: object, version: str) -> bool:
    model = node.slots["main"].pipeline.model  # type: ignore[attr-defined]
    return model is not None and model.manifest.version == version


async def _more(node: object, count: int) -> bool:
    return node.slots["main"].pipeline.status.inference_count >= count  # type: ignore[attr-defined]


@pytest.mark.timeout(120)
async def test_roles_decide_who_may_change_what(plc: SimulatedPlc, v1: Path, signer: Signer, tmp_path: Path) -> None:
    from sdk.opcua.users import hash_password

    users = tmp_path / "users.toml"
    users.write_text(
        f'anonymous = "Observer"\n[users.op]\nrole = "Operator"\npassword = "{hash_password("operator-pw")}"\n'
        f'[users.eng]\nrole = "Engineer"\npassword = "{hash_password("engineer-pw")}"\n'
    )
    settings = edge_settings(tmp_path, signer.trust_dir, anonymous_role="Observer", users_file=users)
    async with running_edge(settings) as node:
        async with Client(node.url) as anonymous:  # reads, but changes nothing
            su = await SoftwareUpdateClient.find(anonymous)
            assert (await su.version(SoftwareVersionFileType.CURRENT)).empty
            with pytest.raises(UpdateFailed, match="BadUserAccessDenied"):
                await su.transfer(v1)
            with pytest.raises(UpdateFailed, match="BadUserAccessDenied"):
                await su.set_confirmation_timeout(5)
            with pytest.raises(errors.UsageError, match="BadUserAccessDenied"):
                await set_binding(anonymous, "main", "")
        operator = Client(node.url)
        operator.set_user("op")
        operator.set_password("operator-pw")
        async with operator:
            su = await SoftwareUpdateClient.find(operator)
            with pytest.raises(UpdateFailed, match="BadUserAccessDenied"):
                await su.transfer(v1)
            with pytest.raises(ua.UaStatusCodeError, match="BadInvalidState"):  # allowed to Resume, nothing to resume
                await su.resume()
        engineer = Client(node.url)
        engineer.set_user("eng")
        engineer.set_password("engineer-pw")
        async with engineer:
            await _install(engineer, v1, confirm_within=10)
        wrong = Client(node.url)
        wrong.set_user("eng")
        wrong.set_password("nope")
        with pytest.raises(ua.UaStatusCodeError):
            await wrong.connect()
        assert node.slots["main"].state.current is not None


@pytest.mark.timeout(120)
async def test_two_slots_side_by_side_with_a_binding_from_the_config(
    plc: SimulatedPlc, v1: Path, signer: Signer, tmp_path: Path, example: Path
) -> None:
    import json

    binding_file = tmp_path / "pump2.json"
    binding_file.write_text(json.dumps(plc.binding()))
    settings = edge_settings(tmp_path, signer.trust_dir, slots=["pump1", "pump2"], bindings={"pump2": binding_file})
    async with running_edge(settings) as node, Client(node.url) as client:
        health = await client.nodes.objects.get_child(["2:DeviceSet", "1:edge-1", "2:DeviceHealth"])
        for slot in ("pump1", "pump2"):
            su = await SoftwareUpdateClient.find(client, slot=slot)
            await su.install(await su.transfer(v1))
            loading = await su.update.get_child(f"{su.di}:Loading")
            behavior = await loading.call_method(
                f"{su.di}:GetUpdateBehavior",
                ua.Variant("", ua.VariantType.String),
                ua.Variant("", ua.VariantType.String),
                ua.Variant([], ua.VariantType.String),
            )
            assert behavior == 1  # KeepsParameters: no power cycle, no reboot, no disconnect
        assert node.slots["pump2"].pipeline.binding is not None  # from the config, at start
        assert node.slots["pump1"].pipeline.binding is None

        async def health_is(value: int) -> bool:
            return await health.read_value() == value

        await wait_for(lambda: health_is(2), what="DeviceHealth CHECK_FUNCTION while pump1 is unbound")
        await set_binding(client, "pump1", json.dumps(plc.binding()))
        await plc.write_all(HEALTHY)
        await wait_for(lambda: health_is(0), what="DeviceHealth NORMAL")
        expected = direct_prediction(example, HEALTHY)["remaining_life"]
        for slot in ("pump1", "pump2"):

            async def predicted(slot: str = slot) -> bool:
                dv = await (await output_node(client, slot, "remaining_life")).read_data_value(
                    raise_on_bad_status=False
                )
                return dv.StatusCode.is_good() and dv.Value.Value == expected

            await wait_for(predicted, what=f"{slot} prediction")
        await plc.write("speed", 9999.0)
        await wait_for(lambda: health_is(3), what="DeviceHealth OFF_SPEC while inputs are out of range")
        await plc.write_all(HEALTHY)  # the PLC is shared by this module's tests


@pytest.mark.timeout(120)
async def test_a_revert_restores_model_and_binding_and_two_rollbacks_alternate(
    plc: SimulatedPlc, v1: Path, v2: Path, signer: Signer, tmp_path: Path, example: Path
) -> None:
    import json

    v3 = build_pump(example, signer, tmp_path / "pump-3.0.0.uadipkg", "3.0.0").path
    one, two = plc.binding(), plc.binding(mode="tag", tag="speed")
    bad = plc.binding()
    bad["inputs"]["speed"] = {"endpoint": plc.url, "node_id": "ns=2;s=NoSuchTag"}
    await plc.write_all(HEALTHY)
    async with running_edge(edge_settings(tmp_path, signer.trust_dir)) as node, Client(node.url) as client:
        su = await SoftwareUpdateClient.find(client)
        pipeline = node.slots["main"].pipeline

        async def serving(version: str, binding: dict[str, object]) -> bool:
            bound = pipeline.binding is not None and json.loads(pipeline.binding.to_json()) == json.loads(
                json.dumps(binding)
            )
            return bound and await _version(node, version) and await _good(client)

        await _install(client, v1)
        await set_binding(client, "main", json.dumps(one))
        await _install(client, v2)
        await set_binding(client, "main", json.dumps(two))
        await wait_for(lambda: serving("2.0.0", two), what="2.0.0 Good with its binding")

        await _install(client, v3, confirm_within=2.0, confirm=False)
        await set_binding(client, "main", json.dumps(bad))  # the binding the install is tried with

        async def bad_outputs() -> bool:
            return (await _read(client, "remaining_life")).StatusCode.name == "BadNodeIdUnknown"

        await wait_for(bad_outputs, what="Bad outputs from the broken binding")
        await wait_for(lambda: serving("2.0.0", two), timeout=15, what="2.0.0 Good with its binding after the revert")
        assert "not confirmed within 2 s; reverted to 2.0.0" in await su.update_status()
        assert (await su.version(SoftwareVersionFileType.FALLBACK)).revision == "1.0.0"

        await su.set_confirmation_timeout(0)  # a Rollback, as the gateway's: nothing to confirm
        for version, binding, fallback in (("1.0.0", one, "2.0.0"), ("2.0.0", two, "1.0.0")):  # two rollbacks
            await su.install(await su.version(SoftwareVersionFileType.FALLBACK))
            await wait_for(lambda v=version, b=binding: serving(v, b), what=f"rollback to {version} Good")
            assert (await su.version(SoftwareVersionFileType.FALLBACK)).revision == fallback


@pytest.mark.timeout(120)
async def test_restart_while_waiting_for_confirm_restores_the_binding(
    plc: SimulatedPlc, v1: Path, v2: Path, signer: Signer, tmp_path: Path
) -> None:
    import json

    settings = edge_settings(tmp_path, signer.trust_dir)
    bad = plc.binding()
    bad["inputs"]["speed"] = {"endpoint": plc.url, "node_id": "ns=2;s=NoSuchTag"}
    await plc.write_all(HEALTHY)
    async with running_edge(settings) as node, Client(node.url) as client:
        await _install(client, v1)
        await set_binding(client, "main", json.dumps(plc.binding()))
        await _install(client, v2, confirm_within=600, confirm=False)
        await set_binding(client, "main", json.dumps(bad))
    async with running_edge(settings) as node, Client(node.url) as client:
        assert await _version(node, "1.0.0")
        binding = node.slots["main"].pipeline.binding
        assert binding is not None and json.loads(binding.to_json())["inputs"]["speed"]["node_id"] == plc.node_id(
            "speed"
        )
        await wait_for(lambda: _good(client), what="Good outputs after the restart")


@pytest.mark.timeout(120)
async def test_a_full_disk_refuses_transfers_and_installs_with_how_much_is_missing(
    plc: SimulatedPlc, v1: Path, v2: Path, signer: Signer, tmp_path: Path
) -> None:
    settings = edge_settings(tmp_path, signer.trust_dir, disk_reserve_bytes=30_000_000)
    async with running_edge(settings) as node, Client(node.url) as client:
        slot = node.slots["main"]
        transfers = slot.store.root / "transfers"
        su = await SoftwareUpdateClient.find(client)
        error_message = await su.update.get_child([f"{su.di}:Loading", f"{su.di}:ErrorMessage"])
        await _install(client, v1)

        slot.free_space = lambda folder: 12_000_000  # less than the reserve: GenerateFileForWrite is refused
        with pytest.raises(errors.DiskFull, match="no disk space for the package: needs 30 MB, 12 MB free"):
            await su.transfer(v2)
        assert (await error_message.read_value()).Text == "needs 30 MB, 12 MB free"
        assert await su.update_status() == "transfer refused: needs 30 MB, 12 MB free"
        assert list(transfers.iterdir()) == []

        size = v2.stat().st_size  # room for the reserve, not for the package: the first Write is refused
        slot.free_space = lambda folder: 30_000_000 + size // 2
        with pytest.raises(errors.DiskFull, match="no disk space for the package: needs 30 MB, 30 MB free"):
            await su.transfer(v2)
        assert list(transfers.iterdir()) == []  # released at once, not when the session ends

        slot.free_space = free_bytes  # a real check: the package fits now
        pending = await su.transfer(v2)
        slot.free_space = lambda folder: 1_000  # no room to unpack it
        with pytest.raises(UpdateFailed, match=r"install of pump-health 2.0.0 failed: needs \d+ kB, 1 kB free") as info:
            await su.install(pending)
        assert_documented(str(info.value), "failed: needs")
        await su.resume()
        assert await _version(node, "1.0.0")  # the old model keeps serving
        assert (await su.version(SoftwareVersionFileType.CURRENT)).revision == "1.0.0"
