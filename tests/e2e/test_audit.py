"""The audit trail against real servers: records and AuditEvents, read by `modelline audit` and by a client."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from asyncua import Node, ua

from sdk.opcua.users import hash_password
from tests.conftest import Signer
from tests.e2e.test_gateway_rollout import _gateway_settings, plant
from tests.edge_harness import HEALTHY, SimulatedPlc, build_pump, edge_settings, running_edge, wait_for
from tests.opcua_servers import free_port
from tests.processes import ServerProcess, run_modelline
from tests.readme import assert_documented
from tests.tls import Client

pytestmark = pytest.mark.e2e


class _Events:
    """AuditEvents received by a subscription to the Server object."""

    def __init__(self) -> None:
        self.received: list[Any] = []

    def event_notification(self, event: Any) -> None:
        self.received.append(event)


async def _subscribe_audit(client: Client) -> _Events:
    events = _Events()
    sub = await client.create_subscription(50, events)
    await sub.subscribe_events(
        client.nodes.server,
        [
            ua.ObjectIds.AuditUpdateMethodEventType,
            ua.ObjectIds.AuditWriteUpdateEventType,
            ua.ObjectIds.AuditActivateSessionEventType,
            ua.ObjectIds.AuditEventType,
        ],
    )
    return events


async def _child(node: Node, name: str) -> Node:
    """The child with this BrowseName in whichever namespace (devices and slots are in the instance namespace)."""
    for child in await node.get_children():
        if (await child.read_browse_name()).Name == name:
            return child
    raise AssertionError(f"no {name} under {node}")


async def _audit(*argv: str) -> list[dict[str, Any]]:
    code, out, err = await run_modelline("audit", *argv, "--json")
    assert code == 0, err
    return list(json.loads(out)["records"])


def _find(records: list[dict[str, Any]], action: str, outcome: str) -> dict[str, Any]:
    found = [r for r in records if r["action"] == action and r["outcome"] == outcome]
    assert found, f"no {action} {outcome} in {[(r['action'], r['outcome']) for r in records]}"
    return found[-1]


@pytest.mark.timeout(300)
async def test_edge_audit_trail_survives_sigkill(
    tmp_path: Path, signer: Signer, other_signer: Signer, example: Path
) -> None:
    plc = await SimulatedPlc().start()
    package = build_pump(example, signer, tmp_path / "pump.mlpkg").path
    untrusted = build_pump(example, other_signer, tmp_path / "untrusted.mlpkg", "9.0.0").path
    binding = tmp_path / "binding.json"
    binding.write_text(json.dumps(plc.binding()))
    users = tmp_path / "users.toml"
    users.write_text(
        f'anonymous = "Observer"\n[users.eng]\nrole = "Engineer"\npassword = "{hash_password("s3cret")}"\n'
    )
    (tmp_path / "pw").write_text("s3cret\n")
    login = ["--user", "eng", "--password-file", str(tmp_path / "pw")]
    url = f"opc.tcp://127.0.0.1:{free_port()}/edge/"
    argv = ["edge", "--endpoint", url, "--device-id", "line3", "--data-dir", str(tmp_path / "data")]
    argv += ["--users-file", str(users), "--trust", str(signer.trust_dir)]
    edge = ServerProcess("edge", argv, tmp_path / "edge.log", dict(os.environ))
    await edge.start(url)
    try:
        async with Client(url) as observer:  # anonymous: Observer
            events = await _subscribe_audit(observer)
            await plc.write_all(HEALTHY)  # the install is confirmed only after a Good prediction
            install = ["install", str(package), "--edge", url, "--binding", str(binding), "--confirm-within", "30"]
            code, _, err = await run_modelline(*install, *login)
            assert code == 0, err
            code, _, err = await run_modelline("install", str(untrusted), "--edge", url, *login)
            assert code != 0
            # An Observer calling InstallSoftwarePackage is refused, and that is recorded too.
            di = await observer.get_namespace_index("http://opcfoundation.org/UA/DI/")
            device = await _child(await observer.nodes.objects.get_child(f"{di}:DeviceSet"), "line3")
            slot = await _child(device, "main")
            installation = await slot.get_child([f"{di}:SoftwareUpdate", f"{di}:Installation"])
            with pytest.raises(ua.uaerrors.BadUserAccessDenied):
                await installation.call_method(
                    f"{di}:InstallSoftwarePackage",
                    ua.Variant("urn:modelline:model:pump-health", ua.VariantType.String),
                    ua.Variant("1.0.0", ua.VariantType.String),
                    ua.Variant([], ua.VariantType.String),
                    ua.Variant(b"", ua.VariantType.ByteString),
                )
            # A wrong password is refused, and recorded with the client's address.
            (tmp_path / "wrong").write_text("guess\n")
            code, _, err = await run_modelline(
                "audit", "--edge", url, "--user", "eng", "--password-file", str(tmp_path / "wrong")
            )
            assert code == 2, err
            assert_documented(err, "refused the login of user")
            # Reading the trail needs Engineer: an anonymous reader is refused.
            code, _, err = await run_modelline("audit", "--edge", url)
            assert code != 0 and "Engineer" in err, err

            records = await _audit("--edge", url, *login)
            upload = _find(records, "upload", "ok")
            assert upload["who"] == "eng" and upload["address"].startswith("127.0.0.1:") and upload["target"] == "main"
            timeouts = [r for r in records if r["action"] == "confirmation timeout" and r["outcome"] == "ok"]
            assert any(r["detail"].endswith("-> 30000 ms") and r["who"] == "eng" for r in timeouts), timeouts
            assert _find(records, "install", "ok")["who"] == "eng"
            assert _find(records, "confirm", "ok")["who"] == "eng"
            assert _find(records, "binding", "ok")["who"] == "eng"
            assert "untrusted" in _find(records, "upload", "refused")["detail"].lower()
            refused = _find(records, "install", "refused")
            assert refused["who"] == "anonymous" and "Engineer role" in refused["detail"]
            assert refused["address"].startswith("127.0.0.1:")
            assert _find(records, "fetch audit records", "refused")["who"] == "anonymous"
            wrong = _find(records, "login", "refused")
            assert wrong["who"] == "eng" and wrong["address"].startswith("127.0.0.1:"), wrong
            assert _find(records, "login", "ok")["who"] == "eng"
            seqs = [r["seq"] for r in records]
            assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)

            async def raised() -> bool:
                messages = [str(e.Message.Text) for e in events.received]
                return any(m.startswith("install refused") for m in messages) and any(
                    m.startswith("install ok") for m in messages
                )

            await wait_for(raised, what="AuditEvents of the install and of the refused call")
            refused_event = next(e for e in events.received if str(e.Message.Text).startswith("install refused"))
            assert refused_event.EventType == ua.NodeId(ua.ObjectIds.AuditUpdateMethodEventType)
            assert refused_event.Status is False and refused_event.ClientUserId == "anonymous"
            assert refused_event.SourceName == "Attribute/Call"
            assert refused_event.ServerId == "urn:modelline:edge:line3"
            assert refused_event.ClientAuditEntryId == f"audit:{refused['seq']}"
            ok_event = next(e for e in events.received if str(e.Message.Text).startswith("install ok"))
            assert ok_event.Status is True and ok_event.ClientUserId == "eng"
            login_event = next(e for e in events.received if str(e.Message.Text).startswith("login refused"))
            assert login_event.EventType == ua.NodeId(ua.ObjectIds.AuditActivateSessionEventType)
            assert login_event.SourceName == "Session/ActivateSession" and login_event.Status is False
            timeout_event = next(e for e in events.received if "confirmation timeout" in str(e.Message.Text))
            assert timeout_event.EventType == ua.NodeId(ua.ObjectIds.AuditWriteUpdateEventType)

        await edge.kill()  # SIGKILL: no clean-up
        await edge.start(url)
        after = await _audit("--edge", url, *login)
        assert after[: len(records)] == records  # nothing lost, nothing changed
        assert after[-1]["seq"] > records[-1]["seq"]  # numbering goes on after the restart
        assert (tmp_path / "data" / "audit" / "audit.jsonl").exists()
        async with Client(url) as client:  # the Audit object shows the newest sequence at once after a restart
            ml = await client.get_namespace_index("http://modelline.io/UA/")
            shown = await client.nodes.objects.get_child([f"{ml}:Audit", f"{ml}:LastSequence"])
            assert await shown.read_value() >= after[-1]["seq"]
    finally:
        await edge.stop()
        await plc.stop()


@pytest.mark.timeout(300)
async def test_gateway_audits_deploy_and_rollback_and_collects_device_records(
    tmp_path: Path, signer: Signer, example: Path
) -> None:
    settings = _gateway_settings(tmp_path, signer).model_copy(update={"audit_collect_s": 0.5})
    async with plant(tmp_path, signer, settings) as p:
        events = await _subscribe_audit(p.client)
        for version in ("1.0.0", "2.0.0"):
            await p.push(build_pump(example, signer, tmp_path / f"{version}.mlpkg", version).path)
        await p.settled(await p.deploy("1.0.0", ["edge-a"]), "Active")
        upgrade = await p.deploy("2.0.0", ["edge-a"])
        await p.settled(upgrade, "Active")
        back = str(
            await p.call("Rollback", ua.Variant(upgrade, ua.VariantType.String), ua.Variant("", ua.VariantType.String))
        )
        await p.settled(back, "Active")
        with pytest.raises(ua.uaerrors.BadNotFound):
            await p.call(
                "Deploy",
                ua.Variant("pump-health", ua.VariantType.String),
                ua.Variant("7.7.7", ua.VariantType.String),
                ua.Variant(["edge-a"], ua.VariantType.String),
                ua.Variant("", ua.VariantType.String),
            )

        url = p.gateway.url
        records = await _audit("--gateway", url)
        deploy = _find(records, "deploy", "ok")
        assert deploy["who"] == "anonymous" and deploy["address"].startswith("127.0.0.1:")
        assert _find(records, "rollback", "ok")["target"] == upgrade
        assert "7.7.7" in _find(records, "deploy", "refused")["detail"]
        assert len([r for r in records if r["action"] == "upload" and r["outcome"] == "ok"]) == 2
        assert all(r["device"] == "" for r in records)

        async def collected() -> list[dict[str, Any]] | None:
            device = await _audit("--gateway", url, "--device", "edge-a")
            installs = [r for r in device if r["action"] in ("install", "revert") and r["outcome"] == "ok"]
            return device if len(installs) >= 3 else None

        device_records = await wait_for(collected, timeout=60, what="edge-a's audit records on the gateway")
        assert all(r["device"] == "edge-a" for r in device_records)
        assert _find(device_records, "revert", "ok")  # the rollback brought edge-a's Fallback back
        # Collecting never empties the device's own trail.
        own = await p.edges["edge-a"].audit.log.fetch("", 0, 1000)
        assert len([r for r in own if r.action in ("install", "revert")]) >= 3

        async def raised() -> bool:
            return any(str(e.Message.Text).startswith("rollback ok") for e in events.received)

        await wait_for(raised, what="the rollback's AuditEvent")


@pytest.mark.timeout(180)
async def test_an_install_not_confirmed_in_time_is_reverted_and_audited(
    tmp_path: Path, signer: Signer, example: Path
) -> None:
    first = build_pump(example, signer, tmp_path / "1.mlpkg").path
    second = build_pump(example, signer, tmp_path / "2.mlpkg", "2.0.0").path
    async with running_edge(edge_settings(tmp_path, signer.trust_dir)) as node:
        code, _, err = await run_modelline("install", str(first), "--edge", node.url, "--no-confirm")
        assert code == 0, err
        # Without a binding no prediction can show the model works: the CLI does not confirm, the node reverts.
        code, _, err = await run_modelline("install", str(second), "--edge", node.url, "--confirm-within", "2")
        assert code == 6 and "not confirmed" in err, err

        async def reverted() -> list[dict[str, Any]] | None:
            records = await _audit("--edge", node.url)
            return records if any(r["action"] == "revert" for r in records) else None

        records = await wait_for(reverted, timeout=30, what="the automatic revert's audit record")
    revert = _find(records, "revert", "ok")
    assert revert["who"] == "" and revert["address"] == ""  # the node's own decision
    assert "not confirmed within 2 s" in revert["detail"] and "reverted to 1.0.0" in revert["detail"]
    installs = [r for r in records if r["action"] == "install" and r["outcome"] == "ok"]
    assert [i["detail"].split(" (")[0] for i in installs] == ["pump-health 1.0.0", "pump-health 2.0.0"]
