"""Device links connect in bounded batches, and an offline device costs no certificate work."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from gateway.opcua.device_link import DeviceLink
from sdk.opcua.ports import free_port


async def test_links_connect_at_most_the_shared_limit_at_once() -> None:
    """Five links to an endpoint that accepts TCP and then never answers the OPC UA Hello: with a limit of two,
    only two handshakes are under way at any time (the others wait), and no more than two ever are."""
    talking: set[asyncio.StreamWriter] = set()
    most = 0

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal most
        if await reader.read(8):  # a Hello (the links' TCP probe closes without a byte)
            talking.add(writer)
            most = max(most, len(talking))
            with contextlib.suppress(ConnectionError):
                await reader.read()  # until the client gives up
            talking.discard(writer)
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    limit = asyncio.Semaphore(2)
    links = [DeviceLink(f"d{n}", f"opc.tcp://127.0.0.1:{port}/", connecting=limit) for n in range(5)]
    tasks = [asyncio.create_task(link.run()) for link in links]
    try:
        await asyncio.sleep(1.5)
        assert len(talking) == 2
        assert most == 2
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        server.close()


async def test_an_offline_device_is_tried_without_loading_the_certificate(tmp_path: Path) -> None:
    """A refused TCP connection ends the attempt before the secure client loads (or here: makes) the gateway's
    certificate and key, which cost tens of milliseconds of CPU per attempt."""
    link = DeviceLink("offline", f"opc.tcp://127.0.0.1:{free_port()}/", pki_dir=tmp_path / "pki", backoff=(0.05, 0.05))
    task = asyncio.create_task(link.run())
    try:
        await asyncio.sleep(0.5)  # several attempts
        assert not link.online
        assert "unreachable" in link.view.reason
        assert not (tmp_path / "pki" / "own").exists()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
