"""A stopped server leaves nothing of itself in memory: not through log records, not through sessions.

Found by the soak (bench/RESULTS.md): each in-process gateway restart kept the stopped gateway alive
(14 MiB), through asyncua log records that pytest's log capture keeps and whose arguments were Nodes.
"""

from __future__ import annotations

import gc
import logging
import weakref
from contextlib import AsyncExitStack, suppress

import pytest
from asyncua import Client

from sdk.opcua.service import new_server, render_asyncua_records, start_listening
from tests.opcua_servers import free_port


class _Thing:
    def __str__(self) -> str:
        return "a thing"


def test_asyncua_records_keep_their_text_not_their_arguments() -> None:
    render_asyncua_records()
    render_asyncua_records()  # idempotent: one factory, not two
    kept: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            kept.append(record)

    handler = Keep()
    for name in ("asyncua.common.xmlimporter", "modelline.other"):
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        logger.setLevel(logging.WARNING)
    try:
        thing = _Thing()
        gone = weakref.ref(thing)
        logging.getLogger("asyncua.common.xmlimporter").warning("%s has path %s", thing, [thing])
        ours = _Thing()
        logging.getLogger("modelline.other").warning("%s", ours)
        del thing
        gc.collect()
        assert gone() is None, "the kept record holds the object it was logged with"
        assert kept[0].getMessage().startswith("a thing has path [<")  # the text as it would have been
        assert kept[0].args is None
        assert kept[1].args == (ours,)  # other loggers' records are left as they are
    finally:
        for name in ("asyncua.common.xmlimporter", "modelline.other"):
            logging.getLogger(name).removeHandler(handler)


async def _server() -> tuple[AsyncExitStack, str, weakref.ref[object]]:
    endpoint = f"opc.tcp://127.0.0.1:{free_port()}/x/"
    server, _, _ = await new_server(endpoint=endpoint, name="x", application_uri="urn:test:x", product="x")
    stack = AsyncExitStack()
    await start_listening(stack, server, endpoint)
    return stack, endpoint, weakref.ref(server.iserver)


async def test_a_stopped_server_is_released_while_pytest_keeps_its_log_records(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """new_server's nodeset import logs warnings with the server's Nodes (asyncua 2.1); caplog keeps them."""
    caplog.set_level(logging.WARNING, logger="asyncua")
    stack, _, iserver = await _server()
    await stack.aclose()
    gc.collect()
    assert iserver() is None, "the stopped server is still in memory"


async def test_a_stopped_server_closes_the_sessions_whose_link_was_lost() -> None:
    """A session with a Subscription outlives its lost connection (OPC 10000-4 §6.7), not its server."""
    stack, endpoint, iserver = await _server()
    client = Client(endpoint)
    await client.connect()
    sub = await client.create_subscription(100, None)
    await sub.subscribe_data_change([client.nodes.server_state])
    assert client.uaclient.protocol is not None and client.uaclient.protocol.transport is not None
    client.uaclient.protocol.transport.abort()  # the link is lost; the session is not closed
    server = iserver()
    assert server is not None and len(server._external_sessions) == 1  # type: ignore[attr-defined]
    del server
    await stack.aclose()
    with suppress(Exception):  # its link is gone
        await client.disconnect()
    gc.collect()
    assert iserver() is None, "a left-over session keeps the stopped server in memory"
