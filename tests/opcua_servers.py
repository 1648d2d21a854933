"""Real asyncua servers and clients on loopback ports chosen when a test runs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sdk.opcua.ports import free_port
from tests.tls import Client

__all__ = ["client", "free_port"]


@asynccontextmanager
async def client(url: str) -> AsyncIterator[Client]:
    """A connected asyncua client; disconnected on exit."""
    c = Client(url, timeout=10)
    await c.connect()
    try:
        yield c
    finally:
        await c.disconnect()
