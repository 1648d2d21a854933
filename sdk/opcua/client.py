"""A kept-open client session for the links that reconnect (sdk/reconnect.py): connected, watched, closed."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from asyncua import Client

_log = logging.getLogger(__name__)


@asynccontextmanager
async def watched_session(client: Client, connected: Callable[[], None], what: str) -> AsyncIterator[asyncio.Event]:
    """Connect ``client``, call ``connected()``, and yield an Event that is set when the connection is lost
    (asyncua's watchdog or the transport); on exit, disconnect within 2 s without raising (the peer may be gone)."""
    lost = asyncio.Event()

    async def on_lost(exc: Exception) -> None:
        lost.set()

    client.connection_lost_callback = on_lost
    await client.connect()
    connected()
    try:
        yield lost
    finally:
        try:
            await asyncio.wait_for(client.disconnect(), 2.0)
        except Exception:  # the peer may be gone already
            _log.debug("%s: disconnect failed", what, exc_info=True)
