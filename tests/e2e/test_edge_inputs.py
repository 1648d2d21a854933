"""Tags in, predictions out: every kind of bad input gets a typed status, never a crash."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import pytest_asyncio
from asyncua import ua

from edge_node.app import EdgeNode
from nodesets.ids import PipelineState
from sdk.di_client import SoftwareUpdateClient, set_binding
from sdk.examples import example_dir
from tests.conftest import _signer
from tests.edge_harness import (
    HEALTHY,
    SimulatedPlc,
    build_pump,
    direct_prediction,
    edge_settings,
    output_node,
    wait_for,
)
from tests.opcua_servers import free_port
from tests.readme import assert_documented
from tests.tls import Client

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]


@dataclass
class Line:
    plc: SimulatedPlc
    node: EdgeNode
    client: Client

    @property
    def pipeline(self):  # noqa: ANN201
        return self.node.slots["main"].pipeline

    async def bind(self, **overrides: object) -> None:
        binding = self.plc.binding()
        binding.update(overrides)
        await set_binding(self.client, "main", json.dumps(binding))

    async def read(self, output: str = "remaining_life") -> ua.DataValue:
        return await (await output_node(self.client, "main", output)).read_data_value(raise_on_bad_status=False)

    async def status_becomes(self, name: str) -> ua.DataValue:
        async def check() -> ua.DataValue | None:
            dv = await self.read()
            return dv if dv.StatusCode.name == name else None

        return await wait_for(check, what=f"output status {name}")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def line(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Line]:
    root = tmp_path_factory.mktemp("line")
    signer = _signer(root, "release")
    package = build_pump(example_dir(), signer, root / "pump.mlpkg").path
    plc = await SimulatedPlc().start()
    async with EdgeNode(edge_settings(root, signer.trust_dir)) as node, Client(node.url) as client:
        su = await SoftwareUpdateClient.find(client)
        await su.install(await su.transfer(package))
        yield Line(plc, node, client)
    await plc.stop()


@pytest_asyncio.fixture(loop_scope="module")
async def healthy(line: Line) -> Line:
    """The line bound to the PLC with healthy values and Good predictions."""
    await line.plc.write_all(HEALTHY)
    await line.bind()
    await line.status_becomes("Good")
    return line


async def test_good_values_give_good_predictions(healthy: Line) -> None:
    expected = direct_prediction(example_dir(), HEALTHY)
    dv = await healthy.read()
    assert dv.Value.Value == expected["remaining_life"]
    assert healthy.pipeline.status.state is PipelineState.RUNNING


async def test_bad_status_at_the_source_is_passed_on(healthy: Line) -> None:
    errors_before = healthy.pipeline.status.error_count
    await healthy.plc.write("speed", 1475.0, status=ua.StatusCodes.BadSensorFailure)
    await healthy.status_becomes("BadSensorFailure")
    assert healthy.pipeline.status.state is PipelineState.DEGRADED
    assert healthy.pipeline.status.reason == "input 'speed' is Bad at its source"
    assert healthy.pipeline.status.error_count > errors_before
    mirror = await (
        await healthy.node.server.nodes.objects.get_child(  # the input mirror shows it too
            ["3:InferenceServer", "3:Pipelines", "1:main", "3:Inputs", "1:speed"]
        )
    ).read_data_value(raise_on_bad_status=False)
    assert mirror.StatusCode.name == "BadSensorFailure"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (math.nan, "input 'speed' is nan"),
        (math.inf, "input 'speed' is inf"),
        (5000.0, "input 'speed' = 5000 is outside its valid range 0..3600"),
        (-1.0, "input 'speed' = -1 is outside its valid range 0..3600"),
    ],
)
async def test_unusable_values_are_out_of_range(healthy: Line, value: float, reason: str) -> None:
    await healthy.plc.write("speed", value)
    dv = await healthy.status_becomes("BadOutOfRange")
    assert healthy.pipeline.status.reason == reason
    assert dv.Value.Value is None  # a Bad value carries no number a PLC could act on (OPC 10000-4 5.10.4)


async def test_wrong_type_is_a_type_mismatch(healthy: Line) -> None:
    binding = healthy.plc.binding()
    binding["inputs"]["speed"]["node_id"] = "ns=2;s=Pump1.Text"  # a String tag
    await set_binding(healthy.client, "main", json.dumps(binding))
    await healthy.status_becomes("BadTypeMismatch")
    assert healthy.pipeline.status.reason == "input 'speed' is str, not a number"


async def test_unknown_tag_and_silent_source(healthy: Line) -> None:
    binding = healthy.plc.binding()
    binding["inputs"]["speed"]["node_id"] = "ns=2;s=Pump1.NoSuchTag"
    await set_binding(healthy.client, "main", json.dumps(binding))
    await healthy.status_becomes("BadNodeIdUnknown")
    binding["inputs"]["speed"] = {"endpoint": f"opc.tcp://127.0.0.1:{free_port()}/nobody/", "node_id": "ns=2;s=X"}
    await set_binding(healthy.client, "main", json.dumps(binding))
    await healthy.status_becomes("BadWaitingForInitialData")
    assert healthy.pipeline.status.reason == "input 'speed' has no value yet"


async def test_binding_changes_need_no_reinstall(healthy: Line) -> None:
    await set_binding(healthy.client, "main", "")
    await healthy.status_becomes("BadConfigurationError")
    assert healthy.pipeline.status.state is PipelineState.UNBOUND
    partial = healthy.plc.binding()
    del partial["inputs"]["flow_rate"]
    await set_binding(healthy.client, "main", json.dumps(partial))
    assert healthy.pipeline.status.reason == "binding does not fit the model: input 'flow_rate' is not bound"
    assert_documented(healthy.pipeline.status.reason, "binding does not fit the model")
    await healthy.bind()
    await healthy.status_becomes("Good")
    shown = json.loads(
        await (
            await healthy.node.server.nodes.objects.get_child(
                ["3:InferenceServer", "3:Pipelines", "1:main", "3:Binding"]
            )
        ).read_value()
    )
    assert shown["inputs"]["speed"]["node_id"] == "ns=2;s=Pump1.speed"


async def test_invalid_binding_is_refused_with_a_reason(healthy: Line) -> None:
    pipeline = await healthy.client.nodes.objects.get_child(["3:InferenceServer", "3:Pipelines", "1:main"])
    method = await pipeline.get_child("3:SetBinding")
    for text in ("{not json", json.dumps({"inputs": {"speed": {"endpoint": "http://x", "node_id": "i=1"}}})):
        with pytest.raises(ua.UaStatusCodeError, match="BadInvalidArgument"):
            await pipeline.call_method(method, ua.Variant(text, ua.VariantType.String))
    # A wrong type is refused before the handler runs (OPC 10000-4 5.11.2): the operation answers
    # BadInvalidArgument and the argument's own result is BadTypeMismatch; no argument: BadArgumentsMissing.
    with pytest.raises(ua.UaStatusCodeError, match="BadInvalidArgument"):
        await pipeline.call_method(method, ua.Variant(5, ua.VariantType.Int32))
    with pytest.raises(ua.UaStatusCodeError, match="BadArgumentsMissing"):
        await pipeline.call_method(method)
    assert healthy.pipeline.binding is not None  # the old binding stays


async def test_tag_trigger_runs_only_on_its_tag(healthy: Line) -> None:
    await healthy.bind(trigger={"mode": "tag", "tag": "speed"})
    await healthy.plc.write("speed", 1474.0)
    await wait_for(lambda: _inferred_with(healthy, 1474.0), what="inference on speed change")
    await wait_for(lambda: _idle(healthy), what="the pipeline to finish what it was triggered for")
    count = healthy.pipeline.status.inference_count
    for value in (3.0, 3.1, 3.2):
        await healthy.plc.write("vibration_rms", value)
    await wait_for(lambda: _mirrored(healthy, "vibration_rms", 3.2), what="vibration reading arrives")
    assert healthy.pipeline.status.inference_count == count  # other tags do not trigger
    await healthy.plc.write("speed", 1473.0)
    await wait_for(lambda: _more(healthy, count), what="inference on the next speed change")


async def test_periodic_trigger(healthy: Line) -> None:
    await healthy.bind(trigger={"mode": "periodic", "interval_ms": 50})
    count = healthy.pipeline.status.inference_count
    await wait_for(lambda: _more(healthy, count + 5), what="periodic inferences without tag changes")


@pytest.mark.timeout(60)
async def test_a_quiet_plc_is_not_a_lost_link(healthy: Line, caplog: pytest.LogCaptureFixture) -> None:
    """Tags change for 2 s, then stay quiet: no more predictions, no new subscription, even when the machine is so
    busy that the loop stalls longer than a keep-alive period (OPC 10000-4 5.13.1.1: the keep-alive tells the
    client that a quiet subscription lives; the session watchdog finds a lost link)."""
    await healthy.bind()  # any_change, 20 ms publishing: a keep-alive every 200 ms
    records = healthy.node.records
    for i in range(20):
        await healthy.plc.write("speed", 1460.0 + i)
        await asyncio.sleep(0.1)
    await wait_for(lambda: _inferred_with(healthy, 1479.0), what="the last change inferred")
    await asyncio.sleep(0.5)
    counts = healthy.pipeline.status.inference_count, records.last_sequence("main")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="asyncua"):
        await asyncio.sleep(3.0)
        time.sleep(1.5)  # noqa: ASYNC251 - a busy machine: nothing on this loop (the PLC server too) runs for 1.5 s
        await asyncio.sleep(8.0)
    assert (healthy.pipeline.status.inference_count, records.last_sequence("main")) == counts
    noise = [r.getMessage() for r in caplog.records if "subscription" in r.getMessage().lower()]
    assert not [m for m in noise if "unknown subscription" in m or "stale" in m or "created" in m], noise
    assert (await healthy.read()).StatusCode.is_good()


async def test_source_restart_marks_values_stale_then_recovers(healthy: Line) -> None:
    # the healthy values are the last usable ones only once they were inferred (a busy machine lags)
    await wait_for(lambda: _inferred_with(healthy, HEALTHY["speed"]), timeout=20, what="the healthy prediction")
    await healthy.plc.stop()
    dv = await healthy.status_becomes("UncertainLastUsableValue")
    assert healthy.pipeline.status.reason.endswith("source disconnected")
    assert dv.Value.Value == pytest.approx(direct_prediction(example_dir(), HEALTHY)["remaining_life"])
    await healthy.plc.start()  # same port: the node reconnects and subscribes again
    await healthy.plc.write_all(HEALTHY)
    await healthy.plc.write("speed", 1480.0)
    expected = direct_prediction(example_dir(), {**HEALTHY, "speed": 1480.0})["remaining_life"]

    async def recovered() -> bool:
        dv = await healthy.read()
        return dv.StatusCode.is_good() and dv.Value.Value == expected

    await wait_for(recovered, timeout=20, what="recovery after the PLC restart")


async def _inferred_with(line: Line, speed: float) -> bool:
    expected = direct_prediction(example_dir(), {**HEALTHY, "speed": speed})["remaining_life"]
    dv = await line.read()
    return dv.StatusCode.is_good() and dv.Value.Value == expected


async def _mirrored(line: Line, feature: str, value: float) -> bool:
    node = await line.node.server.nodes.objects.get_child(
        ["3:InferenceServer", "3:Pipelines", "1:main", "3:Inputs", f"1:{feature}"]
    )
    dv = await node.read_data_value(raise_on_bad_status=False)
    print("MIRROR", dv.Value, dv.StatusCode)
    return dv.Value.Value == value


async def _idle(line: Line) -> bool:
    return bool(line.pipeline.idle)


async def _more(line: Line, count: int) -> bool:
    return line.pipeline.status.inference_count > count
