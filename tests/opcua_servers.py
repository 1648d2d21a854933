"""Real asyncua servers and clients on loopback ports chosen when a test runs."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from asyncua import Client


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@asynccontextmanager
async def client(url: str) -> AsyncIterator[Client]:
    """A connected asyncua client; disconnected on exit."""
    c = Client(url, timeout=10)
    await c.connect()
    try:
        yield c
    finally:
        await c.disconnect()
