"""write_together: a subscriber at publishing interval 0 gets a batch of writes in one notification."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from asyncua import Client, Server, ua

from sdk.opcua.batch import write_together
from sdk.opcua.shelf import init_server
from tests.opcua_servers import free_port


@pytest.fixture
async def served() -> AsyncIterator[tuple[Server, str, list[ua.NodeId]]]:
    endpoint = f"opc.tcp://127.0.0.1:{free_port()}/batch/"
    server = Server()
    await init_server(server)
    server.set_endpoint(endpoint)
    ns = await server.register_namespace("urn:test:batch")
    ids = []
    for i in range(4):
        node = await server.nodes.objects.add_variable(ua.NodeId(f"v{i}", ns), f"{ns}:v{i}", 0.0)
        ids.append(node.nodeid)
    await server.start()
    try:
        yield server, endpoint, ids
    finally:
        await server.stop()


async def _responses(
    endpoint: str, ids: list[ua.NodeId], interval_ms: float, write: Callable[[float], Awaitable[None]]
) -> list[int]:
    """Subscribe to ``ids`` at ``interval_ms``, call ``write`` three times; how many items each response carried."""
    client = Client(endpoint)
    await client.connect()
    try:
        sizes: list[int] = []
        sub = await client.create_subscription(interval_ms, None)  # iterator mode
        await sub.subscribe_data_change([client.get_node(n) for n in ids], queuesize=1)
        for _ in range(len(ids)):  # the initial values
            await asyncio.wait_for(sub.next_event(timeout=5), 5)
        callbacks = client.uaclient.session._subscription_callbacks  # where each Publish response goes (asyncua 2.1)
        original = callbacks[sub.subscription_id]

        async def counting(result: ua.PublishResult) -> None:
            for data in result.NotificationMessage.NotificationData:
                if isinstance(data, ua.DataChangeNotification):
                    sizes.append(len(data.MonitoredItems))
            await original(result)

        callbacks[sub.subscription_id] = counting
        for value in (1.0, 2.0, 3.0):
            await write(value)
            for _ in range(len(ids)):
                await asyncio.wait_for(sub.next_event(timeout=5), 5)
        return sizes
    finally:
        await client.disconnect()


async def test_a_batch_arrives_in_one_notification_at_interval_0(
    served: tuple[Server, str, list[ua.NodeId]],
) -> None:
    server, endpoint, ids = served

    async def batched(value: float) -> None:
        await write_together(server, [(n, ua.DataValue(ua.Variant(value + i))) for i, n in enumerate(ids)])

    assert await _responses(endpoint, ids, 0, batched) == [len(ids)] * 3
    assert (await server.get_node(ids[-1]).read_value()) == 3.0 + len(ids) - 1


async def test_writes_one_by_one_at_interval_0_arrive_apart(served: tuple[Server, str, list[ua.NodeId]]) -> None:
    """What write_together is for: asyncua publishes a subscription at 0 from inside each write."""
    server, endpoint, ids = served

    async def one_by_one(value: float) -> None:
        for i, n in enumerate(ids):
            await server.write_attribute_value(n, ua.DataValue(ua.Variant(value + i)))

    sizes = await _responses(endpoint, ids, 0, one_by_one)
    assert max(sizes) < len(ids)
    assert sum(sizes) == 3 * len(ids)
