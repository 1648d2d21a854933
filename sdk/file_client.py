"""Client side of OPC UA file transfer (OPC 10000-20): upload through a TemporaryFileTransfer object,
download from a FileType object, in chunks of the server's MaxByteStringLength."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from pathlib import Path

from asyncua import Client, Node, ua

from sdk.errors import ModelLineError
from sdk.opcua.ids import node_id

Progress = Callable[[int, int | None], None]
MAX_CHUNK = 1 << 20


async def max_chunk(client: Client) -> int:
    """The largest ByteString the server accepts and sends, capped at 1 MiB (64 KiB when unknown)."""
    node = client.get_node(node_id(ua.ObjectIds.Server_ServerCapabilities_MaxByteStringLength))
    try:
        advertised = int(await node.read_value() or 0)
    except ua.UaStatusCodeError:
        advertised = 0
    return min(advertised, MAX_CHUNK) if advertised > 0 else 65536


def _unreadable(path: Path, exc: OSError) -> ModelLineError:
    return ModelLineError(f"cannot read {path}: {exc.strerror or exc}")


async def _size(path: Path) -> int:
    try:
        return (await asyncio.to_thread(path.stat)).st_size
    except OSError as exc:
        raise _unreadable(path, exc) from None


async def _chunks(data: bytes | Path, size: int) -> AsyncGenerator[bytes, None]:
    """``data`` in pieces of ``size`` bytes; a file is read one piece at a time, in a worker thread.

    A file that cannot be read is a ModelLineError naming it, not an OSError: callers take OSError
    for a lost connection, and retrying would not make the file readable."""
    if isinstance(data, bytes):
        for start in range(0, len(data), size):
            yield data[start : start + size]
        return
    try:
        file = await asyncio.to_thread(data.open, "rb")
    except OSError as exc:
        raise _unreadable(data, exc) from None
    try:
        while True:
            try:
                block = await asyncio.to_thread(file.read, size)
            except OSError as exc:
                raise _unreadable(data, exc) from None
            if not block:
                return
            yield block
    finally:
        await asyncio.to_thread(file.close)


async def upload(
    client: Client, transfer: Node, data: bytes | Path, options: ua.Variant, progress: Progress | None = None
) -> None:
    """GenerateFileForWrite, Write every chunk, CloseAndCommit. Raises UaStatusCodeError as the server answers.

    A Path is sent as it is read, one chunk at a time: a gateway sending a large package to a wave of
    devices holds one chunk per device, not one copy of the package per device."""
    total = len(data) if isinstance(data, bytes) else await _size(data)  # a missing file fails before the transfer
    generate = await transfer.get_child("0:GenerateFileForWrite")
    file_id, handle = await transfer.call_method(generate.nodeid, options)
    file_node = client.get_node(file_id)
    write = await file_node.get_child("0:Write")
    sent = 0
    async with aclosing(_chunks(data, await max_chunk(client))) as chunks:  # the file closes on any failure
        async for block in chunks:
            await file_node.call_method(
                write.nodeid,
                ua.Variant(handle, ua.VariantType.UInt32),
                ua.Variant(block, ua.VariantType.ByteString),
            )
            sent += len(block)
            if progress:
                progress(sent, total)
    commit = await transfer.get_child("0:CloseAndCommit")
    await transfer.call_method(commit.nodeid, ua.Variant(handle, ua.VariantType.UInt32))


async def download(client: Client, file_node: Node, progress: Progress | None = None) -> bytes:
    """Open for reading, Read until an empty ByteString, Close."""
    size = await (await file_node.get_child("0:Size")).read_value()
    handle = await file_node.call_method(
        (await file_node.get_child("0:Open")).nodeid, ua.Variant(1, ua.VariantType.Byte)
    )
    read = (await file_node.get_child("0:Read")).nodeid
    chunk = await max_chunk(client)
    data = bytearray()
    try:
        while block := await file_node.call_method(
            read, ua.Variant(handle, ua.VariantType.UInt32), ua.Variant(chunk, ua.VariantType.Int32)
        ):
            data += block
            if progress:
                progress(len(data), size)
    finally:
        await file_node.call_method(
            (await file_node.get_child("0:Close")).nodeid, ua.Variant(handle, ua.VariantType.UInt32)
        )
    return bytes(data)
