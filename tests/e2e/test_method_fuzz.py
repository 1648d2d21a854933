"""Every method of a running edge node and gateway, called with generated arguments (hypothesis).

The methods are found the way any client finds them: by browsing Objects for
Method nodes and reading each one's InputArguments. Each gets argument lists of
random length, of its declared types with edge values (empty and huge strings,
NaN and infinities, arrays, nulls) and of random other Variant types. Every call
must be answered with Good or a specific Bad status, never BadInternalError or
BadUnexpectedError (an exception in a handler); afterwards the bound pipeline
still predicts and the gateway still answers.

Hypothesis runs in a worker thread and hands each call to the event loop the
servers and the client run on.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from asyncua import Node, ua
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_node.app import EdgeNode
from gateway.app import Gateway
from nodesets.ids import DeploymentState
from sdk.file_client import upload
from sdk.opcua.methods import ArgumentSpec, read_signature
from tests.conftest import Signer
from tests.edge_harness import HEALTHY, WORN, SimulatedPlc, build_pump, edge_settings, output_node, wait_for
from tests.opcua_servers import free_port
from tests.tls import Client, GatewaySettings

pytestmark = pytest.mark.e2e

ML = "http://modelline.io/UA/"
S = ua.VariantType.String
EXAMPLES_PER_METHOD = 50  # about 30 methods: the whole test stays well under a minute
NEVER = {"BadInternalError", "BadUnexpectedError"}

HUGE = "x" * 100_000
STRINGS = [
    "",
    " ",
    "\x00",
    "\n",
    HUGE,
    "é" * 1000,
    "main",
    "aux",
    "edge-a.State",
    "pump-health",
    "1.0.0",
    "1.0.0-x.1.2.3",
    "deploy-0001",
    "deploy-9999",
    "%2E",
    "{}",
    "[]",
    "null",
    '{"inputs": {}}',
    '{"confirmation_timeout_s": 1e999}',
    '{"waves": 0}',
    '{"start_at": "9999-01-01T00:00:00+00:00"}',
    "opc.tcp://::::/",
    "opc.tcp://127.0.0.1:1/",
    "urn:modelline:model:pump-health",
]

_INTS = {
    ua.VariantType.SByte: (-(2**7), 2**7 - 1),
    ua.VariantType.Byte: (0, 2**8 - 1),
    ua.VariantType.Int16: (-(2**15), 2**15 - 1),
    ua.VariantType.UInt16: (0, 2**16 - 1),
    ua.VariantType.Int32: (-(2**31), 2**31 - 1),
    ua.VariantType.UInt32: (0, 2**32 - 1),
    ua.VariantType.Int64: (-(2**63), 2**63 - 1),
    ua.VariantType.UInt64: (0, 2**64 - 1),
}


def _values(kind: ua.VariantType) -> st.SearchStrategy[Any]:
    """Values of one Variant type, edge values included."""
    if kind in _INTS:
        low, high = _INTS[kind]
        return st.one_of(st.sampled_from([low, high, 0, 1, -1 if low else 2]), st.integers(low, high))
    if kind == ua.VariantType.Boolean:
        return st.booleans()
    if kind == ua.VariantType.Float:
        return st.floats(width=32)
    if kind == ua.VariantType.Double:
        return st.one_of(st.sampled_from([math.inf, -math.inf, math.nan, 1e308, -0.0, 1e999]), st.floats())
    if kind == ua.VariantType.String:
        return st.one_of(st.sampled_from(STRINGS), st.text(max_size=40))
    if kind == ua.VariantType.ByteString:
        return st.one_of(st.sampled_from([b"", b"\x00" * 32, b"\xff" * 70_000]), st.binary(max_size=64))
    if kind == ua.VariantType.DateTime:
        return st.datetimes(min_value=datetime(1601, 1, 2), max_value=datetime(9999, 1, 1), timezones=st.just(UTC))
    if kind == ua.VariantType.Guid:
        return st.uuids()
    if kind == ua.VariantType.NodeId:
        return st.builds(ua.NodeId, st.integers(0, 2**32 - 1), st.integers(0, 4))
    if kind == ua.VariantType.LocalizedText:
        return st.builds(ua.LocalizedText, st.text(max_size=20))
    if kind == ua.VariantType.QualifiedName:
        return st.builds(ua.QualifiedName, st.text(max_size=20), st.integers(0, 4))
    raise AssertionError(kind)


KINDS = [*_INTS, *(getattr(ua.VariantType, n) for n in ("Boolean", "Float", "Double", "String", "ByteString"))]
KINDS += [getattr(ua.VariantType, n) for n in ("DateTime", "Guid", "NodeId", "LocalizedText", "QualifiedName")]


@st.composite
def _variant(draw: st.DrawFn, kinds: list[ua.VariantType]) -> ua.Variant:
    kind = draw(st.sampled_from(kinds))
    shape = draw(st.sampled_from(["scalar", "scalar", "array", "null"]))
    if shape == "null":
        return ua.Variant()
    if shape == "array":
        return ua.Variant(draw(st.lists(_values(kind), max_size=4)), kind)
    return ua.Variant(draw(_values(kind)), kind)


def _declared(spec: ArgumentSpec) -> st.SearchStrategy[ua.Variant]:
    kinds = sorted((k for k in spec.kinds if k in KINDS), key=int) or KINDS
    return _variant(kinds)


def _arguments(signature: list[ArgumentSpec]) -> st.SearchStrategy[list[ua.Variant]]:
    """Argument lists of random length: declared types mostly, any type sometimes, missing or extra ones too."""

    @st.composite
    def draw_list(draw: st.DrawFn) -> list[ua.Variant]:
        count = draw(st.integers(0, len(signature) + 2) | st.just(len(signature)))
        args = []
        for i in range(count):
            anything = i >= len(signature) or draw(st.integers(0, 4)) == 0
            args.append(draw(_variant(KINDS) if anything else _declared(signature[i])))
        return args

    return draw_list()


@dataclass
class _Method:
    where: str
    object_id: ua.NodeId
    method_id: ua.NodeId
    signature: list[ArgumentSpec]


async def _methods(client: Client, server: str, skip: set[ua.NodeId]) -> list[_Method]:
    """Every Method node under Objects outside namespace 0 (asyncua's own Server object), with its parent."""
    found: list[_Method] = []
    pending: list[tuple[Node, str]] = [(client.nodes.objects, f"{server}:Objects")]
    seen: set[ua.NodeId] = set()
    while pending:
        node, path = pending.pop()
        for child in await node.get_children(refs=ua.ObjectIds.HierarchicalReferences):
            if child.nodeid in seen or child.nodeid.NamespaceIndex == 0:
                continue
            seen.add(child.nodeid)
            name = (await child.read_browse_name()).Name
            node_class = await child.read_node_class()
            if node_class == ua.NodeClass.Method:
                if child.nodeid not in skip:
                    signature = await read_signature(child)
                    found.append(_Method(f"{path}/{name}", node.nodeid, child.nodeid, signature))
            elif node_class == ua.NodeClass.Object:
                pending.append((child, f"{path}/{name}"))
    return found


@dataclass
class _Plant:
    edge: EdgeNode
    gateway: Gateway
    plc: SimulatedPlc
    edge_client: Client
    spare_client: Client
    gateway_client: Client


async def _plant(stack: AsyncExitStack, root: Path, signer: Signer, example: Path) -> _Plant:
    """A PLC, edge nodes edge-a and edge-b, and a gateway that deployed a model to edge-a with a binding."""
    plc = await SimulatedPlc().start()
    stack.push_async_callback(plc.stop)
    edge = await stack.enter_async_context(
        EdgeNode(edge_settings(root / "edge-a", signer.trust_dir, device_id="edge-a"))
    )
    spare = await stack.enter_async_context(
        EdgeNode(edge_settings(root / "edge-b", signer.trust_dir, device_id="edge-b"))
    )
    gateway = await stack.enter_async_context(
        Gateway(
            GatewaySettings(
                endpoint=f"opc.tcp://127.0.0.1:{free_port()}/gateway/",
                data_dir=root / "gateway",
                trust_dir=signer.trust_dir,
                anonymous_role="Engineer",
            )
        )
    )
    gateway_client = await stack.enter_async_context(Client(gateway.url))
    edge_client = await stack.enter_async_context(Client(edge.url))
    spare_client = await stack.enter_async_context(Client(spare.url))
    ml = await gateway_client.get_namespace_index(ML)
    manager = await gateway_client.nodes.objects.get_child(f"{ml}:ModelManager")
    package = build_pump(example, signer, root / "v1.mlpkg").path
    await upload(gateway_client, await manager.get_child(f"{ml}:Upload"), package.read_bytes(), ua.Variant())
    for device, node in (("edge-a", edge), ("edge-b", spare)):
        await manager.call_method(f"{ml}:RegisterDevice", ua.Variant(device, S), ua.Variant(node.url, S))
    options = {"binding": plc.binding(), "confirmation_timeout_s": 30, "health_check_s": 15}
    await plc.write_all(HEALTHY)
    deployment = str(
        await manager.call_method(
            f"{ml}:Deploy",
            ua.Variant("pump-health", S),
            ua.Variant("1.0.0", S),
            ua.Variant(["edge-a"], S),
            ua.Variant(json.dumps(options), S),
        )
    )

    async def active() -> bool:
        (record,) = await gateway.store.deployments()
        assert record.state not in (DeploymentState.FAILED, DeploymentState.ROLLED_BACK), record.last_error
        return record.state is DeploymentState.ACTIVE

    await wait_for(active, timeout=60, what=f"{deployment} Active")
    return _Plant(edge, gateway, plc, edge_client, spare_client, gateway_client)


async def _call(client: Client, method: _Method, args: list[ua.Variant]) -> str:
    request = ua.CallMethodRequest(ObjectId=method.object_id, MethodId=method.method_id, InputArguments=args)
    (result,) = await client.uaclient.call([request])
    return str(result.StatusCode.name)


def _fuzz(loop: asyncio.AbstractEventLoop, client: Client, method: _Method, answers: dict[str, set[str]]) -> None:
    """Runs in a worker thread: hypothesis draws, the event loop calls."""

    @settings(
        max_examples=EXAMPLES_PER_METHOD,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
    )
    @given(_arguments(method.signature))
    def call(args: list[ua.Variant]) -> None:
        status = asyncio.run_coroutine_threadsafe(_call(client, method, args), loop).result(timeout=30)
        answers.setdefault(method.where, set()).add(status)
        shown = [f"{a.VariantType.name}{'[]' if a.is_array else ''}={str(a.Value)[:40]!r}" for a in args]
        assert status not in NEVER, f"{method.where}({', '.join(shown)}) answered {status}"

    call()


async def _predicting(p: _Plant, since: datetime) -> bool:
    dv = await (await output_node(p.edge_client, "main", "remaining_life")).read_data_value(raise_on_bad_status=False)
    return dv.StatusCode.is_good() and dv.ServerTimestamp is not None and dv.ServerTimestamp > since


@pytest.fixture
async def plant(tmp_path: Path, signer: Signer, example: Path) -> AsyncIterator[_Plant]:
    async with AsyncExitStack() as stack:
        yield await _plant(stack, tmp_path, signer, example)


@pytest.mark.timeout(240)
async def test_every_method_answers_generated_calls_with_a_clean_status(plant: _Plant) -> None:
    p = plant
    ml = await p.edge_client.get_namespace_index(ML)
    main_binding = await p.edge_client.nodes.objects.get_child(
        [f"{ml}:InferenceServer", f"{ml}:Pipelines", "1:main", f"{ml}:SetBinding"]
    )
    # edge-a's binding feeds the check below (an empty BindingJson clears it, as documented);
    # edge-b's SetBinding, the same handler, is fuzzed instead.
    edge_methods = await _methods(p.edge_client, "edge-a", skip={main_binding.nodeid})
    spare_methods = await _methods(p.spare_client, "edge-b", skip=set())
    gateway_methods = await _methods(p.gateway_client, "gateway", skip=set())
    everything = edge_methods + spare_methods + gateway_methods
    names = {m.where.rsplit("/", 1)[1] for m in everything}
    assert {"SetBinding", "InstallSoftwarePackage", "Confirm", "Resume", "GetUpdateBehavior"} <= names
    assert {"FetchRecords", "AcknowledgeRecords"} <= names
    assert {"Deploy", "Undeploy", "Rollback", "RegisterDevice", "GenerateFileForWrite", "Open", "Read"} <= names
    assert "SubmitFeedback" in names

    loop = asyncio.get_running_loop()
    answers: dict[str, set[str]] = {}
    for client, methods in (
        (p.edge_client, edge_methods),
        (p.spare_client, spare_methods),
        (p.gateway_client, gateway_methods),
    ):
        for method in methods:
            await asyncio.to_thread(_fuzz, loop, client, method, answers)
    assert set(answers) == {m.where for m in everything}

    # still serving: a fresh tag change gives a fresh Good prediction, and the gateway answers
    since = datetime.now(UTC)
    await p.plc.write_all(WORN)
    await wait_for(lambda: _predicting(p, since), timeout=15, what="a Good prediction after the fuzzing")
    ml_gw = await p.gateway_client.get_namespace_index(ML)
    devices = await p.gateway_client.nodes.objects.get_child([f"{ml_gw}:ModelManager", f"{ml_gw}:Devices"])
    assert "edge-a" in {(await d.read_browse_name()).Name for d in await devices.get_children()}
    assert [d.id for d in await p.gateway.store.deployments()][:1] == ["deploy-0001"]
