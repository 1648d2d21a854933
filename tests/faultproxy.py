"""A TCP proxy on loopback that cuts links on purpose: reset every connection, or swallow all traffic.

proxy = await FaultProxy(target_port).start()   # clients connect to proxy.port instead
proxy.reset_after(2_000_000)                     # reset every connection once 2 MB went upstream
proxy.blackhole = True                           # forward nothing either way (connections stay open)
proxy.blackhole_after(2_000_000)                 # the same, once 2 MB more went upstream
proxy.reset()                                    # reset every connection now
proxy.cut_answer_over(8_000)                     # reset halfway through the next answer of 8 kB or more
proxy.cut_answer_over(8_000, blackhole=True)     # or swallow it from its middle on
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct

from tests.opcua_servers import free_port


class FaultProxy:
    """Forwards 127.0.0.1:<port> to 127.0.0.1:<target_port>, with faults on demand."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.blackhole = False
        self.upstream_bytes = 0  # client -> server, over every connection so far
        self.resets = 0
        self._reset_at: int | None = None
        self._blackhole_at: int | None = None
        self._cut_over: tuple[int, bool] | None = None
        self.cuts = 0  # answers cut halfway
        self._pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> FaultProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        self.reset()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    def url(self, path: str = "/") -> str:
        """The opc.tcp:// URL that goes through the proxy."""
        return f"opc.tcp://127.0.0.1:{self.port}{path}"

    def reset_after(self, upstream_bytes: int) -> None:
        """Reset every connection once, when this many more bytes have gone upstream."""
        self._reset_at = self.upstream_bytes + upstream_bytes

    def blackhole_after(self, upstream_bytes: int) -> None:
        """Swallow all traffic once this many more bytes have gone upstream: a step held in mid-flight."""
        self._blackhole_at = self.upstream_bytes + upstream_bytes

    def cut_answer_over(self, size: int, blackhole: bool = False) -> None:
        """Once: forward half of the next chunk of at least ``size`` bytes coming back from the server (a big
        answer, such as a page of records), then reset every connection, or swallow all traffic."""
        self._cut_over = (size, blackhole)

    def reset(self) -> None:
        """Close every connection with a TCP reset (SO_LINGER 0), as a switch or firewall would."""
        for pair in list(self._pairs):
            for writer in pair:
                sock = writer.get_extra_info("socket")
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                writer.transport.abort()
        if self._pairs:
            self.resets += 1
        self._pairs.clear()

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            client_writer.transport.abort()
            return
        pair = (client_writer, server_writer)
        self._pairs.add(pair)
        for task in (
            asyncio.create_task(self._pump(client_reader, server_writer, upstream=True)),
            asyncio.create_task(self._pump(server_reader, client_writer, upstream=False)),
        ):
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, upstream: bool) -> None:
        try:
            while data := await reader.read(65536):
                if self.blackhole:
                    continue  # swallowed: the peer waits for an answer that never comes
                if upstream:
                    self.upstream_bytes += len(data)
                    if self._blackhole_at is not None and self.upstream_bytes >= self._blackhole_at:
                        self._blackhole_at = None
                        self.blackhole = True
                        continue
                    if self._reset_at is not None and self.upstream_bytes >= self._reset_at:
                        self._reset_at = None
                        self.reset()
                        return
                if not upstream and self._cut_over is not None and len(data) >= self._cut_over[0]:
                    blackhole, self._cut_over = self._cut_over[1], None
                    self.cuts += 1
                    writer.write(data[: len(data) // 2])
                    await writer.drain()
                    if blackhole:
                        self.blackhole = True
                        continue
                    self.reset()
                    return
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.transport.abort()
