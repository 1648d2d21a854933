"""Publishing interval 0 end to end: a tag-triggered binding subscribes to its PLC at 0 by default, a subscriber at
0 gets each prediction whole (both outputs in one notification), the counters come at most once a second, and a
quiet PLC that sends no keep-alives is not taken for a lost one."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from asyncua import ua

from sdk.di_client import SoftwareUpdateClient, pipeline_binding, set_binding
from tests.conftest import Signer
from tests.edge_harness import HEALTHY, build_pump, edge_settings, output_node, running_edge, running_plc, wait_for
from tests.tls import Client

pytestmark = [pytest.mark.e2e]


class _Responses:
    """The data changes of each Publish response of one subscription, by client handle."""

    def __init__(self) -> None:
        self.responses: list[dict[int, Any]] = []

    def attach(self, client: Client, subscription_id: int) -> None:
        callbacks = client.uaclient.session._subscription_callbacks  # where each Publish response goes (asyncua 2.1)
        original = callbacks[subscription_id]

        async def counting(result: ua.PublishResult) -> None:
            for data in result.NotificationMessage.NotificationData:
                if isinstance(data, ua.DataChangeNotification):
                    self.responses.append({m.ClientHandle: m.Value for m in data.MonitoredItems})
            await original(result)

        callbacks[subscription_id] = counting


@pytest.mark.timeout(180)
async def test_publish_on_change_from_plc_to_subscriber(example: Path, signer: Signer, tmp_path: Path) -> None:
    package = build_pump(example, signer, tmp_path / "pump.mlpkg").path
    async with (
        running_plc() as plc,
        running_edge(edge_settings(tmp_path, signer.trust_dir)) as node,
        Client(node.url) as client,
    ):
        su = await SoftwareUpdateClient.find(client)
        await su.install(await su.transfer(package))
        binding = plc.binding()
        del binding["publishing_interval_ms"]  # the default for a tag-triggered binding
        await set_binding(client, "main", json.dumps(binding))
        assert json.loads(await pipeline_binding(client, "main"))["publishing_interval_ms"] == 0
        await plc.write_all(HEALTHY)
        pipeline = node.slots["main"].pipeline
        await wait_for(lambda: _made(pipeline, 1), what="a first prediction")
        (source,) = node.hub.sources.values()
        assert source.publishing_interval_ms == 0

        score = await output_node(client, "main", "anomaly_score")
        life = await output_node(client, "main", "remaining_life")
        inference_count = client.get_node(ua.NodeId("InferenceServer.Pipelines.main.InferenceCount", 1))
        seen = _Responses()
        sub = await client.create_subscription(0, None)  # publish on change, iterator mode
        seen.attach(client, sub.subscription_id)
        await sub.subscribe_data_change([score, life, inference_count], queuesize=1)
        by_node = {item.node.nodeid: handle for handle, item in sub._monitored_items.items()}  # client handles
        handles = [by_node[n.nodeid] for n in (score, life, inference_count)]
        await asyncio.sleep(0.5)
        seen.responses.clear()
        made_before = pipeline.status.inference_count
        for i in range(30):  # every write changes both outputs
            await plc.write("vibration_rms", 2.0 + i * 0.3)
            await wait_for(lambda t=made_before + i + 1: _made(pipeline, t), what=f"prediction {i}")
        await asyncio.sleep(0.3)
        outputs = [r for r in seen.responses if handles[0] in r or handles[1] in r]
        assert len(outputs) >= 25  # (a subscriber may fold two predictions into one response)
        assert all(handles[0] in r and handles[1] in r for r in outputs), "a prediction arrived in parts"
        # 30 predictions in well under 3 s: InferenceCount was written at most once a second (and once at the start).
        counter_changes = sum(1 for r in seen.responses if handles[2] in r)
        assert counter_changes <= 4

        # ... and eventually shows the count.
        async def shown() -> bool:
            return bool(await inference_count.read_value() == pipeline.status.inference_count)

        await wait_for(shown, timeout=5, what="InferenceCount")

        # A quiet PLC at publishing interval 0 sends no keep-alives: not a lost link (the session watchdog says so).
        made = pipeline.status.inference_count
        await asyncio.sleep(12)
        assert source.connected
        assert pipeline.status.inference_count == made  # no re-subscription delivered the values again
        await plc.write("vibration_rms", 3.3)
        await wait_for(lambda: _made(pipeline, made + 1), what="a prediction after the quiet")


async def _made(pipeline: Any, count: int) -> bool:
    return bool(pipeline.status.inference_count >= count)


@pytest.mark.timeout(60)
async def test_a_quiet_subscription_at_interval_0_gets_keep_alives(signer: Signer, tmp_path: Path) -> None:
    """asyncua's client (its stale-subscription watchdog left on) re-creates a subscription silent for a second."""
    async with running_edge(edge_settings(tmp_path, signer.trust_dir)) as node, Client(node.url) as client:
        sub = await client.create_subscription(0, None)
        first = sub.subscription_id
        await sub.subscribe_data_change(client.get_node(ua.NodeId("InferenceServer.Pipelines.main.Model", 1)))
        publishes = sub.last_publish_at
        await asyncio.sleep(3)  # nothing changes
        assert sub.subscription_id == first  # not re-created
        assert sub.last_publish_at is not None and publishes is not None and sub.last_publish_at > publishes + 2
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("keep-alive")]  # they end with the server
