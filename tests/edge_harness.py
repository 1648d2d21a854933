"""Real parts for edge node tests: a simulated PLC, edge nodes, packages, and waiting for conditions."""

from __future__ import annotations

import asyncio
import functools
import json
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import onnxruntime as ort
from asyncua import Server, ua

from edge_node.app import EdgeNode
from sdk.opcua.security import SECURE_POLICIES
from sdk.opcua.sessions import close_left_over
from sdk.opcua.shelf import init_server
from sdk.package.build import BuildResult, build_package
from sdk.package.manifest import MANIFEST_NAME, SIGNATURE_NAME
from sdk.package.signature import sign_manifest
from sdk.package.spec import PackageSpec
from tests.conftest import Signer, read_members, resign_di, write_members
from tests.opcua_servers import free_port
from tests.tls import Client, EdgeSettings, issue

T = TypeVar("T")

FEATURES = ["vibration_rms", "bearing_temperature", "discharge_pressure", "flow_rate", "speed"]
HEALTHY = {
    "vibration_rms": 2.1,
    "bearing_temperature": 51.0,
    "discharge_pressure": 4.6,
    "flow_rate": 118.0,
    "speed": 1475.0,
}
WORN = {
    "vibration_rms": 9.4,
    "bearing_temperature": 70.5,
    "discharge_pressure": 4.2,
    "flow_rate": 111.0,
    "speed": 1476.0,
}


async def wait_for(check: Callable[[], Awaitable[T]], timeout: float = 10.0, what: str = "condition") -> T:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    last: Any = None
    while asyncio.get_running_loop().time() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")


PLC_URI = "urn:test:plc:server"


@functools.cache
def plc_certificate() -> tuple[Path, Path]:
    """The simulated PLCs' certificate and key (issued by the test CA; a PLC trusts any client)."""
    return issue(Path(tempfile.mkdtemp(prefix="modelline-test-plc-")), PLC_URI, "Simulated PLC")


class SimulatedPlc:
    """An OPC UA server with one pump's tags as Double variables ns=2;s=Pump1.<feature>."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"opc.tcp://127.0.0.1:{self.port}/plc/"
        self.server: Server | None = None
        self.nodes: dict[str, Any] = {}

    def node_id(self, feature: str) -> str:
        return f"ns=2;s=Pump1.{feature}"

    async def start(self) -> SimulatedPlc:
        server = Server()
        await init_server(server)
        server.set_endpoint(self.url)
        # As a PLC with a certificate: secure endpoints beside the unencrypted one, any client accepted.
        cert, key = plc_certificate()
        await server.set_application_uri(PLC_URI)
        await server.load_certificate(str(cert))
        await server.load_private_key(str(key))
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity, *SECURE_POLICIES])
        ns = await server.register_namespace("urn:test:plc")
        assert ns == 2
        pump = await server.nodes.objects.add_object(ua.NodeId("Pump1", ns), "2:Pump1")
        for feature in FEATURES:
            node = await pump.add_variable(
                ua.NodeId(f"Pump1.{feature}", ns), f"2:{feature}", ua.Variant(0.0, ua.VariantType.Double)
            )
            await node.set_writable()
            self.nodes[feature] = node
        self.text = await pump.add_variable(ua.NodeId("Pump1.Text", ns), "2:Text", "hello")
        await server.start()
        self.server = server
        return self

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop()
            await close_left_over(self.server)  # else the stopped server stays in memory until they time out
            self.server = None

    async def write(self, feature: str, value: float, status: int = 0, source_time: datetime | None = None) -> None:
        assert self.server is not None
        dv = ua.DataValue(
            ua.Variant(value, ua.VariantType.Double),
            StatusCode=ua.StatusCode(status),
            SourceTimestamp=source_time or datetime.now(UTC),
            ServerTimestamp=datetime.now(UTC),
        )
        await self.server.write_attribute_value(self.nodes[feature].nodeid, dv)

    async def write_all(self, values: dict[str, float], source_time: datetime | None = None) -> None:
        for feature, value in values.items():
            await self.write(feature, value, source_time=source_time)

    def binding(self, **trigger: Any) -> dict[str, Any]:
        return {
            "inputs": {f: {"endpoint": self.url, "node_id": self.node_id(f)} for f in FEATURES},
            "trigger": trigger or {"mode": "any_change"},
            "publishing_interval_ms": 20,
        }


@asynccontextmanager
async def running_plc() -> AsyncIterator[SimulatedPlc]:
    plc = await SimulatedPlc().start()
    try:
        yield plc
    finally:
        await plc.stop()


def edge_settings(root: Path, trust_dir: Path, **overrides: Any) -> EdgeSettings:
    values: dict[str, Any] = {
        "device_id": "edge-1",
        "endpoint": f"opc.tcp://127.0.0.1:{free_port()}/edge/",
        "data_dir": root / "edge-data",
        "trust_dir": trust_dir,
        "anonymous_role": "Engineer",  # tests drive installs without logging in; roles are tested on their own
    }
    values.update(overrides)
    return EdgeSettings(**values)


@asynccontextmanager
async def running_edge(settings: EdgeSettings) -> AsyncIterator[EdgeNode]:
    async with EdgeNode(settings) as node:
        yield node


def build_pump(example: Path, signer: Signer, out: Path, version: str = "1.0.0") -> BuildResult:
    return build_package(
        example / "model.onnx",
        out,
        name="pump-health",
        version=version,
        spec=PackageSpec.load(example / "spec.toml"),
        **({"private_key": signer.private_key} if out.suffix == ".mlpkg" else {"identity": signer.identity}),
    )


def with_wrong_samples(package: Path, out: Path, signer: Signer, version: str) -> Path:
    """A validly signed package whose recorded sample outputs the model does not reproduce."""
    members = read_members(package)
    di = "mimetype" in members
    name = "CONTENT/" + MANIFEST_NAME if di else MANIFEST_NAME
    manifest = json.loads(members[name])
    manifest["version"] = version
    manifest["samples"][0]["outputs"]["remaining_life"] = [[99999.0]]
    manifest_bytes = json.dumps(manifest, indent=2).encode()
    members[name] = manifest_bytes
    if di:
        metadata = json.loads(members["META/package_metadata.json"])
        metadata.update(PackageRevision=version, SoftwareRevision=version)
        members["META/package_metadata.json"] = json.dumps(metadata).encode()
        return write_members(out, list(resign_di(members, signer.identity).items()))
    members[SIGNATURE_NAME] = sign_manifest(manifest_bytes, signer.private_key).to_bytes()
    return write_members(out, list(members.items()))


def direct_prediction(example: Path, values: dict[str, float]) -> dict[str, float]:
    """What onnxruntime itself returns for these tag values (float32, as the model takes them)."""
    session = ort.InferenceSession(str(example / "model.onnx"), providers=["CPUExecutionProvider"])
    row = np.asarray([[values[f] for f in FEATURES]], dtype=np.float32)
    score, life = session.run(None, {"sensors": row})
    return {"anomaly_score": float(score[0, 0]), "remaining_life": float(life[0, 0])}


async def output_node(client: Client, pipeline: str, output: str) -> Any:
    ml = await client.get_namespace_index("http://modelline.io/UA/")
    server = await client.nodes.objects.get_child(f"{ml}:InferenceServer")
    return await _find(server, ml, pipeline, output)


async def _find(server: Any, ml: int, pipeline: str, output: str) -> Any:
    folder = await server.get_child(f"{ml}:Pipelines")
    for child in await folder.get_children():
        if (await child.read_browse_name()).Name == pipeline:
            outputs = await child.get_child(f"{ml}:Outputs")
            for out in await outputs.get_children():
                if (await out.read_browse_name()).Name == output:
                    return out
    raise AssertionError(f"no output {output} in pipeline {pipeline}")
