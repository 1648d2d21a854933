"""The README's guides, run as written: every `modelline` command they show, in their order.

The guides describe a small plant: an engineering PC (keys, packages, cloud pulls, installs and
rollouts), two edge devices (pump-station-3 and pump-station-4), the gateway's machine
(model-manager) and a PLC (plc-line3). Here each machine is a folder and every server listens on
127.0.0.1: a command's absolute paths (/etc/modelline, /var/lib/modelline) are taken inside its
machine's folder, and each host:port it names (0.0.0.0 meaning the machine itself) becomes a free
loopback port. Nothing else of a command changes, and the example files are used as shipped,
with the same two substitutions. The PLC serves exactly the tags that the example binding names;
S3 and SageMaker Model Registry are moto in server mode. Error messages the README quotes are
provoked along the way and compared with what the commands print.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import shutil
import signal
import zipfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncua
import pytest
from asyncua import Node, Server, ua

from sdk.binding import Binding
from sdk.examples import example_dir
from sdk.opcua.security import SECURE_POLICIES
from sdk.opcua.shelf import init_server
from tests import readme
from tests.aws_harness import (
    AWS_VARIABLES_TO_CLEAR,
    REGION,
    aws_client,
    offline_aws_env,
    register_model_group,
    reset_moto,
    tarball,
)
from tests.edge_harness import HEALTHY, PLC_URI, plc_certificate, wait_for
from tests.opcua_servers import free_port
from tests.processes import MODELLINE
from tests.tls import Client, trust_ca

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

PASSWORD = "pump-station-secret"
PC = "engineering-pc"
URL = re.compile(r"opc\.tcp://([\w.-]+):(\d+)")
ABSOLUTE = re.compile(r"(?<![\w./~-])(/etc/modelline|/var/lib/modelline)")


@dataclass
class Result:
    code: int
    out: str
    err: str


@dataclass
class Plant:
    """The README's machines as folders on this host, with their ports on 127.0.0.1."""

    root: Path
    moto_url: str
    ports: dict[tuple[str, int], int] = field(default_factory=dict)
    servers: dict[str, asyncio.subprocess.Process] = field(default_factory=dict)
    ran: set[str] = field(default_factory=set)
    machines: set[str] = field(default_factory=set)

    def port(self, host: str, port: int) -> int:
        return self.ports.setdefault((host, port), free_port())

    def url(self, host: str, port: int, path: str) -> str:
        return f"opc.tcp://127.0.0.1:{self.port(host, port)}{path}"

    def folder(self, machine: str) -> Path:
        path = self.root / machine
        if machine not in self.machines:
            self.machines.add(machine)
            path.mkdir(parents=True, exist_ok=True)
            for source in example_dir().parent.rglob("*"):  # the shipped examples, localized for this machine
                target = path / "examples" / source.relative_to(example_dir().parent)
                if source.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                elif source.suffix == ".toml":
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_text(self.localize(source.read_text(encoding="utf-8"), machine), encoding="utf-8")
                else:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(source, target)
        return path

    def localize(self, text: str, machine: str) -> str:
        """The text as it reads on ``machine`` of this one-host plant."""
        text = URL.sub(
            lambda m: f"opc.tcp://127.0.0.1:{self.port(machine if m[1] == '0.0.0.0' else m[1], int(m[2]))}", text
        )
        return ABSOLUTE.sub(lambda m: f"{self.root / machine}{m[1]}", text)

    def path(self, machine: str, path: str) -> Path:
        return Path(self.localize(path, machine))

    def env(self, machine: str, **extra: str) -> dict[str, str]:
        env = {
            k: v for k, v in os.environ.items() if k not in AWS_VARIABLES_TO_CLEAR and not k.startswith("MODELLINE_")
        }
        env |= offline_aws_env(str(self.root)) | {"AWS_ENDPOINT_URL": self.moto_url}
        env["XDG_CONFIG_HOME"] = str(self.root / machine / ".config")  # the machine's home: the CLI's certificate
        if machine == PC:
            env["MODELLINE_PASSWORD"] = PASSWORD
        return env | extra

    def argv(self, command: readme.Command | list[str], machine: str) -> list[str]:
        if isinstance(command, readme.Command):
            self.ran.add(command.text)
            command = command.argv
        return [MODELLINE, *(self.localize(arg, machine) for arg in command)]

    async def run(
        self,
        command: readme.Command | list[str],
        machine: str = PC,
        stdin: str = "",
        env: dict[str, str] | None = None,
        expect: int = 0,
    ) -> Result:
        proc = await asyncio.create_subprocess_exec(
            *self.argv(command, machine),
            cwd=self.folder(machine),
            env=env or self.env(machine),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,  # no controlling terminal: prompts read stdin
        )
        out, err = await asyncio.wait_for(proc.communicate(stdin.encode()), 180)
        result = Result(proc.returncode or 0, out.decode(), err.decode())
        assert result.code == expect, (
            f"{command}: exit {result.code}, not {expect}\n{result.out[-2000:]}\n{result.err[-2000:]}"
        )
        return result

    async def start(self, name: str, command: readme.Command, machine: str, url: str, **env: str) -> None:
        """Start a server command and wait until it answers at ``url``."""
        log = (self.folder(machine) / f"{name}.log").open("wb")
        proc = await asyncio.create_subprocess_exec(
            *self.argv(command, machine),
            cwd=self.folder(machine),
            env=self.env(machine, **env),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
        self.servers[f"{machine}/{name}"] = proc

        async def up() -> bool:
            assert proc.returncode is None, f"{name} exited with {proc.returncode}: {self.log(name)}"
            try:
                await asyncua.Client(url, timeout=2).connect_and_get_server_endpoints()  # listening
            except (OSError, TimeoutError, ua.UaError):
                return False
            return True

        await wait_for(up, timeout=90, what=f"{name} to listen at {url}")

    def log(self, name: str) -> str:
        return "\n".join(p.read_text(errors="replace")[-3000:] for p in self.root.glob(f"*/{name}.log"))

    async def stop_all(self) -> dict[str, int | None]:
        """SIGTERM every server; their exit codes (None if one had to be killed)."""
        codes: dict[str, int | None] = {}
        for name, proc in self.servers.items():
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
            try:
                codes[name] = await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()
                await proc.wait()
                codes[name] = None
        return codes


@asynccontextmanager
async def plc_serving(plant: Plant, binding_file: Path) -> AsyncIterator[None]:
    """The PLC plc-line3: every tag the binding names, as Double, with healthy values that keep moving."""
    binding = Binding.load(binding_file)
    server = Server()
    await init_server(server)
    endpoints = {ref.endpoint for ref in binding.inputs.values()}
    assert len(endpoints) == 1, endpoints
    server.set_endpoint(endpoints.pop())
    cert, key = plc_certificate()  # a current PLC: secure endpoints, any client certificate accepted
    await server.set_application_uri(PLC_URI)
    await server.load_certificate(str(cert))
    await server.load_private_key(str(key))
    server.set_security_policy([ua.SecurityPolicyType.NoSecurity, *SECURE_POLICIES])
    nodes = {}
    for name, ref in binding.inputs.items():
        nodeid = ua.NodeId.from_string(ref.node_id)
        while len(await server.get_namespace_array()) <= nodeid.NamespaceIndex:  # a PLC's namespaces, up to this one
            await server.register_namespace(f"urn:plc-line3:ns{len(await server.get_namespace_array())}")
        nodes[name] = await server.nodes.objects.add_variable(nodeid, f"{nodeid.NamespaceIndex}:{name}", HEALTHY[name])
    await server.start()

    async def keep_moving() -> None:
        rng = random.Random(7)
        while True:
            for name, node in nodes.items():
                await node.write_value(HEALTHY[name] * (1 + rng.uniform(-0.01, 0.01)))
            await asyncio.sleep(0.3)

    mover = asyncio.create_task(keep_moving())
    try:
        yield
    finally:
        mover.cancel()
        with suppress(asyncio.CancelledError):
            await mover
        await server.stop()


async def child(node: Node, path: str) -> Node:
    """The node at a browse path of names (any namespace) below ``node``."""
    for name in path.split("/"):
        for candidate in await node.get_children():
            if (await candidate.read_browse_name()).Name == name:
                node = candidate
                break
        else:
            raise AssertionError(f"no {name!r} on the way to {path!r}")
    return node


def tampered(package: Path, out: Path, change: str) -> Path:
    """A copy of ``package`` with its model changed in one byte, or with an extra file."""
    with zipfile.ZipFile(package) as src, zipfile.ZipFile(out, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if change == "byte" and item.filename == "CONTENT/model.onnx":
                data = data[:-1] + bytes([data[-1] ^ 1])
            dst.writestr(item, data)
        if change == "extra":
            dst.writestr("SUPPLEMENT/payload.sh", b"#!/bin/sh\n")
    return out


def built_as(out: str, *left_out: str) -> list[str]:
    """The guide's build command writing ``out``, without the options (and their values) in ``left_out``."""
    argv = readme.command("Package a model from a file", "package", "build").argv
    argv = [a for a in argv if a not in left_out]
    argv[argv.index("pump-health-1.0.0.uadipkg")] = out
    return argv


async def status(plant: Plant) -> dict[str, Any]:
    gateway = readme.command("Roll a model out", "status")
    result = await plant.run([*gateway.argv, "--json"])
    return dict(json.loads(result.out))


async def settled(plant: Plant, deployment: str, serving: dict[str, str] | None = None) -> dict[str, Any]:
    """The status once ``deployment`` is Active and, when given, the devices report serving these versions
    (a device's ActiveVersion follows its own subscription, a moment after the deployment's state)."""

    async def done() -> dict[str, Any] | None:
        now = await status(plant)
        row = next((d for d in now["deployments"] if d["id"] == deployment), None)
        assert row is not None, f"no {deployment}: {now}"
        assert row["State"] != "Failed", f"{deployment} failed: {row['LastError']}\n{plant.log('gateway')}"
        seen = {d["id"]: d["ActiveVersion"] for d in now["devices"] if serving and d["id"] in serving}
        return now if row["State"] == "Active" and (not serving or seen == serving) else None

    return await wait_for(done, timeout=150, what=f"{deployment} to become Active")


@pytest.mark.timeout(600)
async def test_every_guide_command_works_as_written(tmp_path: Path, moto_url: str) -> None:
    reset_moto(moto_url)  # moto keeps its state per process: start from none, whatever ran before on this worker
    plant = Plant(tmp_path, moto_url)
    pc = plant.folder(PC)
    try:
        await _walk_through(plant, pc)
    finally:
        codes = await plant.stop_all()
    assert codes == {"pump-station-3/edge": 0, "pump-station-4/edge": 0, "model-manager/gateway": 0}, codes
    shown = {c.text for c in readme.commands()}
    assert shown - plant.ran == set(), "README guide commands that no test ran"


async def _walk_through(plant: Plant, pc: Path) -> None:
    # Create a signing key; package a model from a file; look inside and verify.
    await plant.run(readme.command("Create a signing key", "keys", "generate"))
    assert (pc / "keys/signing.key").stat().st_mode & 0o777 == 0o600
    await plant.run(readme.command("Package a model from a file", "package", "build"))
    inspect = await plant.run(readme.command("Look inside", "package", "inspect"))
    assert "pump-health" in inspect.out and "anomaly_score" in inspect.out
    verify = readme.command("Look inside", "package", "verify")
    await plant.run(verify)

    # The refusals the README quotes, as verify prints them.
    await plant.run(built_as("unsigned.uadipkg", "--cert", "keys/signing.pem", "--key", "keys/signing.key"))
    refused = await plant.run(["package", "verify", "unsigned.uadipkg", "--trust", "keys/"], expect=3)
    readme.assert_documented(refused.err, "package is not signed (no META-INF/ASiCManifest001.xml)")
    readme.assert_documented(refused.err, "package rejected: package is not signed")
    await plant.run(["keys", "generate", "--out", "other-keys"])
    refused = await plant.run(["package", "verify", "pump-health-1.0.0.uadipkg", "--trust", "other-keys/"], expect=3)
    readme.assert_documented(refused.err, "package rejected: signer … does not chain")
    readme.assert_documented(refused.err, "does not chain to a trusted root at signing time (…); trusted roots: …")
    changed = tampered(pc / "pump-health-1.0.0.uadipkg", pc / "changed.uadipkg", "byte")
    refused = await plant.run(["package", "verify", changed.name, "--trust", "keys/"], expect=3)
    readme.assert_documented(refused.err, "(changed after signing)")
    readme.assert_documented(refused.err, "package rejected: file 'model.onnx'")
    extra = tampered(pc / "pump-health-1.0.0.uadipkg", pc / "extra.uadipkg", "extra")
    refused = await plant.run(["package", "verify", extra.name, "--trust", "keys/"], expect=3)
    readme.assert_documented(refused.err, "payload.sh")

    # Approve a package for the plant: refused where approval is required until approved.
    approval = [c for c in readme.commands() if c.section.startswith("Approve a package")]
    await plant.run(approval[0])  # the approver's certificate
    required = [*approval[2].argv[:2], "pump-health-1.0.0.uadipkg", *approval[2].argv[3:]]
    refused = await plant.run(required, expect=3)
    readme.assert_documented(refused.err, "approval required and not given: …")
    readme.assert_documented(refused.err, "package rejected: approval required")
    await plant.run(approval[1])
    approved = await plant.run(approval[2])
    assert "approved by O=Example Plant OT,CN=plant-approver" in approved.out

    # The package format: the signature checked with openssl alone, by the README's own lines.
    shutil.copyfile(pc / "pump-health-1.0.0.uadipkg", pc / "pkg.uadipkg")
    script = re.search(r"\n  ```bash\n(.*?)\n  ```", readme.text(), re.S)
    assert script, "README shows no openssl check"
    proc = await asyncio.create_subprocess_exec(
        "bash",
        "-euo",
        "pipefail",
        "-c",
        script[1],
        cwd=pc,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    assert proc.returncode == 0 and b"CMS Verification successful" in out, out.decode()
    assert out.count(b"OK ") == 4, out.decode()  # metadata, manifest, model, model card
    shutil.copyfile(changed, pc / "pkg.uadipkg")  # the same lines on a changed package: the model's digest differs
    proc = await asyncio.create_subprocess_exec(
        "bash", "-euo", "pipefail", "-c", script[1], cwd=pc,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await proc.communicate()
    assert proc.returncode != 0 and b"CHANGED CONTENT/model.onnx" in out, out.decode()

    # Package a model from SageMaker Model Registry or S3 (moto; AWS_ENDPOINT_URL points there).
    model = (example_dir() / "model.onnx").read_bytes()
    statuses = ["Approved", "PendingManualApproval", "Approved", "Approved", "Approved", "Approved", "Approved"]
    register_model_group(
        plant.moto_url,
        "pump-health",
        [("pump-health/model.tar.gz", tarball({"model.onnx": model}), s) for s in statuses],
    )
    for pull in [c for c in readme.commands() if c.argv[0] == "pull"]:
        await plant.run(pull)
        assert (pc / pull.argv[pull.argv.index("-o") + 1]).is_file()
    refused = await plant.run(
        "pull sagemaker --group pump-health --version 2 --cert keys/signing.pem --key keys/signing.key -o p2.uadipkg".split(),
        expect=2,
    )
    readme.assert_documented(refused.err, "PendingManualApproval")
    no_credentials = {
        k: v for k, v in plant.env(PC).items() if not k.startswith("AWS_ACCESS") and not k.startswith("AWS_SECRET")
    }
    refused = await plant.run(
        readme.command("Package a model from Sage", "pull", "sagemaker", "--group", "pump-health", "--version"),
        env=no_credentials,
        expect=5,
    )
    readme.assert_documented(refused.err, "no AWS credentials found")

    async with plc_serving(plant, pc / "examples/pump_health/binding.toml"):
        await _edge_nodes_and_gateway(plant, pc)


async def _edge_nodes_and_gateway(plant: Plant, pc: Path) -> None:
    # Run an edge node: pump-station-3 with flags, pump-station-4 from the example settings file.
    users = [
        readme.command("Run an edge node", "users", "add", "--file", "/etc/modelline/users.toml", "--name", n)
        for n in ("alice", "model-manager")
    ]
    edge_flags = readme.command("Run an edge node", "edge", "--trust")
    edge_config = readme.command("Run an edge node", "edge", "--config")
    for machine in ("pump-station-3", "pump-station-4"):
        trust = plant.path(machine, "/etc/modelline/trust")
        trust.mkdir(parents=True)
        shutil.copyfile(pc / "keys/signing.pem", trust / "signing.pem")
        plant.path(machine, "/etc/modelline").chmod(0o700)
        for user in users:
            await plant.run(user, machine, stdin=f"{PASSWORD}\n{PASSWORD}\n")
        trust_ca(plant.path(machine, "/var/lib/modelline/edge") / "pki")  # for this test's own client (tests/tls.py)
    station3 = plant.url("pump-station-3", 4841, "/modelline/edge/")
    await plant.start("edge", edge_flags, "pump-station-3", station3)
    await plant.start(
        "edge",
        edge_config,
        "pump-station-4",
        plant.url("pump-station-4", 4841, "/modelline/edge/"),
        MODELLINE_EDGE_DEVICE_ID="pump-station-4",
    )

    # Security: the PC's certificate, made by the CLI, copied to the edge nodes and approved there.
    guide = "Security"

    def edge_cert(machine: str) -> Path:
        return plant.path(machine, "/var/lib/modelline/edge") / "pki/own/cert.der"

    shown_own = await plant.run(readme.command(guide, "trust", "show", "own"))
    assert "urn:modelline:cli" in shown_own.out
    pc_cert = pc / ".config/modelline/pki/own/cert.der"
    pc_approves = readme.command(guide, "trust", "approve", "pump-station-3.der")
    for machine in ("pump-station-3", "pump-station-4"):
        shutil.copyfile(pc_cert, plant.folder(machine) / "engineering-pc.der")
        await plant.run(
            readme.command(guide, "trust", "approve", "--data-dir", "/var/lib/modelline/edge", "engineering-pc.der"),
            machine,
        )
        # and the PC trusts the node: its cert.der, copied to the PC and approved there.
        shutil.copyfile(edge_cert(machine), pc / f"{machine}.der")
        await plant.run(pc_approves if machine == "pump-station-3" else [*pc_approves.argv[:-1], f"{machine}.der"])

    # Install a model on an edge node: refused without a login, done with one.
    install = readme.command("Install a model", "install")
    anonymous = [a for a in install.argv if a not in ("--user", "alice")]
    refused = await plant.run(anonymous, expect=6)
    readme.assert_documented(refused.err, "(BadUserAccessDenied)")
    await plant.run(install)

    # Read predictions: the NodeId and browse paths the README gives, on the running node.
    async with Client(station3, timeout=10) as client:
        shown = re.search(
            r"\(`urn:modelline:edge:<device id>`\), e\.g\. `(ns=1;s=[^`]+)`", readme.section("Run an edge node")
        )
        assert shown, "README shows no example NodeId"
        assert (await client.get_namespace_array())[1] == "urn:modelline:edge:pump-station-3"
        prediction = client.get_node(shown[1])

        async def good() -> bool:
            value = await prediction.read_data_value(raise_on_bad_status=False)
            return bool(value.StatusCode.is_good() and value.Value.Value is not None)

        await wait_for(good, timeout=30, what=f"a Good prediction at {shown[1]}")
        names = {"<device id>": "pump-station-3", "<slot>": "pump1", "<input>": "speed", "<output>": "anomaly_score"}
        for row in readme.table("Run an edge node"):
            path = re.sub(r"<[^>]+>", lambda m: names[m[0]], row[0].strip("`"))
            node = await child(client.nodes.objects, path)
            for name in re.findall(r"`(\w+)`", row[1]):
                await child(node, name)

    # Run a gateway and store packages in it.
    gateway_machine = "model-manager"
    trust = plant.path(gateway_machine, "/etc/modelline/trust")
    trust.mkdir(parents=True)
    shutil.copyfile(pc / "keys/signing.pem", trust / "signing.pem")
    await plant.run(readme.command("Run a gateway", "users", "add"), gateway_machine, stdin=f"{PASSWORD}\n{PASSWORD}\n")
    login = plant.path(gateway_machine, "/etc/modelline/edge-login.pw")
    login.write_text(PASSWORD + "\n")
    login.chmod(0o600)
    await plant.start(
        "gateway",
        readme.command("Run a gateway", "gateway"),
        gateway_machine,
        plant.url(gateway_machine, 4840, "/modelline/"),
    )
    # Security: the gateway trusts the PC; each edge node trusts the gateway.
    shutil.copyfile(pc_cert, plant.folder(gateway_machine) / "engineering-pc.der")
    await plant.run(
        readme.command(guide, "trust", "approve", "--data-dir", "/var/lib/modelline/gateway", "engineering-pc.der"),
        gateway_machine,
    )
    gateway_cert = plant.path(gateway_machine, "/var/lib/modelline/gateway") / "pki/own/cert.der"
    gateway_approves = readme.command(
        guide, "trust", "approve", "--data-dir", "/var/lib/modelline/gateway", "pump-station-3.der"
    )
    for machine in ("pump-station-3", "pump-station-4"):
        shutil.copyfile(gateway_cert, plant.folder(machine) / "model-manager.der")
        await plant.run(
            readme.command(guide, "trust", "approve", "--data-dir", "/var/lib/modelline/edge", "model-manager.der"),
            machine,
        )
        shutil.copyfile(edge_cert(machine), plant.folder(gateway_machine) / f"{machine}.der")
        await plant.run(
            gateway_approves if machine == "pump-station-3" else [*gateway_approves.argv[:-1], f"{machine}.der"],
            gateway_machine,
        )
    shutil.copyfile(gateway_cert, pc / "model-manager.der")  # the PC trusts the gateway too
    await plant.run([*pc_approves.argv[:-1], "model-manager.der"])
    listed = await plant.run(readme.command(guide, "trust", "list"), gateway_machine)
    assert "urn:modelline:cli" in listed.out and "trusted" in listed.out
    pushes = [c for c in readme.commands() if c.argv[0] == "push"]
    for push in pushes:
        await plant.run(push)
    elsewhere = [
        a if not a.startswith("opc.tcp://") else f"opc.tcp://127.0.0.1:{free_port()}/modelline/" for a in pushes[0].argv
    ]
    refused = await plant.run(elsewhere, expect=7)
    readme.assert_documented(refused.err, "cannot connect to")
    await plant.run(built_as("other.uadipkg", "--spec", "examples/pump_health/spec.toml"))  # other content, 1.0.0
    refused = await plant.run(["push", "other.uadipkg", *pushes[0].argv[2:]], expect=2)
    readme.assert_documented(refused.err, "versions cannot change")

    # Roll a model out to edge devices, and back.
    for add in [c for c in readme.commands() if c.argv[:2] == ["devices", "add"]]:
        await plant.run(add)
    deploys = [c for c in readme.commands() if c.argv[0] == "deploy"]
    assert len(deploys) == 2
    first = await plant.run(deploys[0])
    assert "deploy-0001" in first.out
    await settled(plant, "deploy-0001")
    assert "deploy-0002" in (await plant.run(deploys[1])).out
    upgraded = {"pump-station-3": "1.2.0", "pump-station-4": "1.2.0"}
    now = await settled(plant, "deploy-0002", upgraded)
    assert {d["id"]: d["ActiveVersion"] for d in now["devices"]} == upgraded
    table = await plant.run(readme.command("Roll a model out", "status"))
    assert "deploy-0002" in table.out and "pump-station-4" in table.out
    rollback = await plant.run(readme.command("Roll a model out", "rollback"))
    back = re.search(r"deploy-\d{4}", rollback.out)
    assert back, rollback.out
    returned = {"pump-station-3": "1.0.0", "pump-station-4": "1.0.0"}
    now = await settled(plant, back[0], returned)
    assert {d["id"]: d["ActiveVersion"] for d in now["devices"]} == returned
    assert next(d for d in now["deployments"] if d["id"] == "deploy-0002")["State"] == "RolledBack"

    # Audit trail: the edge node's own, the gateway's, and what the gateway collected from the edge node.
    audit = [c for c in readme.commands() if c.argv[0] == "audit"]
    assert len(audit) == 3
    edge_trail = await plant.run(audit[0])
    assert "install" in edge_trail.out and "alice" in edge_trail.out, edge_trail.out
    gateway_trail = await plant.run(audit[1])
    assert "rollback" in gateway_trail.out and "deploy" in gateway_trail.out, gateway_trail.out

    async def collected_trail() -> list[Any] | None:
        records = json.loads((await plant.run(audit[2])).out)
        records = records.get("records", records) if isinstance(records, dict) else records
        return records if any(r.get("action") == "install" for r in records) else None

    await wait_for(collected_trail, timeout=30, what="the gateway to collect pump-station-3's audit trail")

    # Users and roles: the same command as on the devices, run once more on its own.
    await plant.run(
        readme.command("Users and roles", "users", "add"), "model-manager", stdin=f"{PASSWORD}\n{PASSWORD}\n"
    )

    # Watch a model: the monitor's table from the PC, the records exported on the gateway's machine (while it
    # runs) as CSV and as Parquet uploaded to S3 (moto).
    async def collected() -> dict[str, Any] | None:
        shown = await plant.run([*readme.command("Watch a model", "monitor", "--gateway").argv, "--json"])
        rows = json.loads(shown.out)["devices"]
        return rows if any(isinstance(r["inferences"], int) and r["inferences"] > 0 for r in rows) else None

    rows = await wait_for(collected, timeout=60, what="the Model Monitor to count predictions")
    assert {r["device"] for r in rows} == {"pump-station-3", "pump-station-4"}
    table = await plant.run(readme.command("Watch a model", "monitor", "--gateway"))
    assert "pump-station-3" in table.out and "Active alarms" in table.out
    guide = "Watch a model"
    csv_export = await plant.run(
        readme.command(
            guide, "monitor", "export", "--data-dir", "/var/lib/modelline/gateway", "-o", "pump-health-records.csv"
        ),
        gateway_machine,
    )
    written = plant.folder(gateway_machine) / "pump-health-records.csv"
    lines = written.read_text().splitlines()
    assert "input.speed" in lines[0] and len(lines) > 1 and f"{len(lines) - 1} record(s)" in csv_export.out
    s3 = aws_client("s3", plant.moto_url)
    s3.create_bucket(Bucket="retraining", CreateBucketConfiguration={"LocationConstraint": REGION})
    parquet = readme.command(
        guide, "monitor", "export", "--data-dir", "/var/lib/modelline/gateway", "-o", "pump-health-records.parquet"
    )
    uploaded = await plant.run(parquet, gateway_machine)
    assert "s3://retraining/pump-health/pump-health-records.parquet" in uploaded.out.replace("\n", "")
    body = s3.get_object(Bucket="retraining", Key="pump-health/pump-health-records.parquet")["Body"].read()
    assert body == (plant.folder(gateway_machine) / "pump-health-records.parquet").read_bytes()

    # Back up, restore and recover the gateway's database: a backup while it serves, then the database lost.
    guide = "Back up, restore and recover"
    made = await plant.run(readme.command(guide, "gateway", "backup"), gateway_machine)
    backup = Path(re.findall(r" to (/\S+\.sqlite3) \(", made.out)[0])
    gateway = plant.servers[f"{gateway_machine}/gateway"]
    gateway.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(gateway.wait(), 30) == 0
    database = plant.path(gateway_machine, "/var/lib/modelline/gateway/gateway.sqlite3")
    database.unlink()
    refused = await plant.run(readme.command("Run a gateway", "gateway"), gateway_machine, expect=8)
    readme.assert_documented(refused.err, "is missing, but its package store holds")
    recovered = await plant.run(readme.command(guide, "gateway", "recover"), gateway_machine)
    assert "recovered 2 model version(s) from 2 package(s)" in recovered.out.splitlines()[-1]
    restore = readme.command(guide, "gateway", "restore")
    shown = plant.path(gateway_machine, restore.argv[restore.argv.index("--from") + 1])
    shutil.copyfile(backup, shown)  # the README names a backup by an example time
    restored = await plant.run(restore, gateway_machine)
    assert "the replaced database was kept as" in restored.out
    await plant.start(
        "gateway",
        readme.command("Run a gateway", "gateway"),
        gateway_machine,
        plant.url(gateway_machine, 4840, "/modelline/"),
    )
    table = await plant.run(readme.command("Roll a model out", "status"))
    assert "pump-station-3" in table.out and "deploy-0002" in table.out  # devices and deployments are back
