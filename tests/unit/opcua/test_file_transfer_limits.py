"""File transfer against clients that misbehave: abandoned transfers, oversized writes and messages,
calls by the type's method NodeIds and wrong argument counts. A real asyncua server and client on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import os
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from asyncua import Client, Server, ua
from asyncua.common.instantiate_util import instantiate
from asyncua.ua.ua_binary import uatcp_to_binary

from edge_node.settings import EdgeSettings
from gateway.settings import GatewaySettings
from sdk.diskspace import free_bytes
from sdk.opcua.file_transfer import TemporaryFileTransfer
from sdk.opcua.filetype import READ, WRITE, FileNode, new_file_object
from sdk.opcua.ids import node_id
from sdk.opcua.service import new_server
from sdk.opcua.shelf import init_server
from sdk.opcua.transport import set_limits
from tests.opcua_servers import client, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

B, U32, I32, BS = ua.VariantType.Byte, ua.VariantType.UInt32, ua.VariantType.Int32, ua.VariantType.ByteString
MAX_BYTE_STRING = 4096
MAX_PACKAGE = 5 * MAX_BYTE_STRING - 100
QUICK_TIMEOUT_S = 0.3


@dataclass
class Rig:
    url: str
    data_path: Path
    transfer: TemporaryFileTransfer  # ClientProcessingTimeout 120 s, packages up to MAX_PACKAGE
    quick: TemporaryFileTransfer  # ClientProcessingTimeout QUICK_TIMEOUT_S
    work: Path
    quick_work: Path
    server: Server
    ns: int


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def rig(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Rig]:
    tmp = tmp_path_factory.mktemp("limits")
    server = Server()
    await init_server(server)
    url = f"opc.tcp://127.0.0.1:{free_port()}/limits/"
    server.set_endpoint(url)
    await set_limits(server, MAX_BYTE_STRING)
    ns = await server.register_namespace("urn:test:limits")
    objects = server.nodes.objects
    data_path = tmp / "data.bin"
    data_path.write_bytes(bytes(range(256)) * 40)
    data = await new_file_object(server, objects, node_id("Data", ns), ua.QualifiedName("Data", ns))
    await FileNode(server, data, data_path, writable=True, max_byte_string=MAX_BYTE_STRING).bind()
    transfer_type = server.get_node(ua.ObjectIds.TemporaryFileTransferType)

    async def transfer_object(name: str) -> Any:
        return (await instantiate(objects, transfer_type, nodeid=node_id(name, ns), bname=f"{ns}:{name}"))[0]

    async def commit(path: Path, options: Any, digest: Any) -> None:
        pass

    async def read_source(options: Any) -> Path:
        return data_path

    transfer = await TemporaryFileTransfer(
        server,
        await transfer_object("Transfer"),
        tmp / "work",
        commit=commit,
        read_source=read_source,
        max_byte_string=MAX_BYTE_STRING,
        max_package_bytes=MAX_PACKAGE,
    ).bind()
    quick = await TemporaryFileTransfer(
        server,
        await transfer_object("Quick"),
        tmp / "quick",
        commit=commit,
        client_processing_timeout_s=QUICK_TIMEOUT_S,
        max_byte_string=MAX_BYTE_STRING,
    ).bind()
    async with server:
        yield Rig(url, data_path, transfer, quick, tmp / "work", tmp / "quick", server, ns)
        await transfer.release()
        await quick.release()


DATA, TRANSFER, QUICK = "ns=2;s=Data", "ns=2;s=Transfer", "ns=2;s=Quick"
OPTIONS = ua.Variant(0, I32)


async def _call(c: Client, obj_id: ua.NodeId | str, name: str, *args: ua.Variant) -> Any:
    obj = c.get_node(obj_id)
    return await obj.call_method((await obj.get_child(f"0:{name}")).nodeid, *args)


async def _status(c: Client, obj_id: ua.NodeId | str, name: str, *args: ua.Variant) -> str:
    with pytest.raises(ua.UaStatusCodeError) as info:
        await _call(c, obj_id, name, *args)
    return type(info.value).__name__


def _open_descriptors() -> list[str]:
    """Where each of this process's open descriptors points."""
    links = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            links.append(os.readlink(f"/proc/self/fd/{fd}"))
        except FileNotFoundError:  # the descriptor listdir itself used
            pass
    return links


async def _until(condition: Any, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


# --- leaks -------------------------------------------------------------------------------------------


async def test_abandoned_transfers_leave_no_descriptors_and_no_files(rig: Rig) -> None:
    before = _open_descriptors()
    # 100 abandoned by clients that disconnect without committing (4 sessions of 25)...
    for _ in range(4):
        async with client(rig.url) as c:
            for _ in range(25):
                file_id, handle = await _call(c, TRANSFER, "GenerateFileForWrite", OPTIONS)
                await _call(c, file_id, "Write", ua.Variant(handle, U32), ua.Variant(b"x" * 4000, BS))
            assert rig.transfer.active == 25
    assert rig.transfer.active == 0
    # ...and 100 by a client that stays connected but goes silent.
    async with client(rig.url) as c:
        for _ in range(100):
            file_id, handle = await _call(c, QUICK, "GenerateFileForWrite", OPTIONS)
            await _call(c, file_id, "Write", ua.Variant(handle, U32), ua.Variant(b"x" * 4000, BS))
        # Abandoned by the timeout watch: gone from the count first, then released and deleted.
        await _until(lambda: rig.quick.active == 0 and not any(rig.quick_work.iterdir()))
    links = _open_descriptors()
    ours = (str(rig.work), str(rig.quick_work))
    assert [link for link in links if link.startswith(ours)] == []  # "<path> (deleted)" before the fix
    assert [link for link in links if link.endswith("(deleted)") and link not in before] == []
    assert len(links) <= len(before) + 2, links  # 200 more before the fix
    assert list(rig.work.iterdir()) == [] and list(rig.quick_work.iterdir()) == []


async def test_client_processing_timeout_abandons_a_silent_transfer(rig: Rig) -> None:
    async with client(rig.url) as c:
        file_id, handle = await _call(c, QUICK, "GenerateFileForWrite", OPTIONS)
        await _call(c, file_id, "Write", ua.Variant(handle, U32), ua.Variant(b"half", BS))
        assert rig.quick.active == 1 and len(list(rig.quick_work.iterdir())) == 1
        await asyncio.sleep(QUICK_TIMEOUT_S + 0.3)  # no call of any kind meanwhile
        assert rig.quick.active == 0 and list(rig.quick_work.iterdir()) == []
        assert await _status(c, QUICK, "CloseAndCommit", ua.Variant(handle, U32)) == "BadInvalidArgument"


async def test_closing_the_temporary_file_instead_of_committing_releases_it(rig: Rig) -> None:
    async with client(rig.url) as c:
        file_id, handle = await _call(c, TRANSFER, "GenerateFileForWrite", OPTIONS)
        await _call(c, file_id, "Write", ua.Variant(handle, U32), ua.Variant(b"abc", BS))
        await _call(c, file_id, "Close", ua.Variant(handle, U32))
        assert rig.transfer.active == 0 and list(rig.work.iterdir()) == []
        assert await _status(c, TRANSFER, "CloseAndCommit", ua.Variant(handle, U32)) == "BadInvalidArgument"


# --- limits ------------------------------------------------------------------------------------------


async def test_write_over_max_byte_string_is_refused_and_the_server_serves_on(rig: Rig) -> None:
    async with client(rig.url) as c:
        assert await c.get_node(ua.ObjectIds.Server_ServerCapabilities_MaxByteStringLength).read_value() == 4096
        assert await c.get_node(ua.ObjectIds.Server_ServerCapabilities_MaxStringLength).read_value() == 4096
        assert await c.get_node(ua.ObjectIds.Server_ServerCapabilities_MaxArrayLength).read_value() == 4096
        h = await _call(c, DATA, "Open", ua.Variant(WRITE, B))
        too_long = ua.Variant(b"y" * (MAX_BYTE_STRING + 1), BS)
        assert await _status(c, DATA, "Write", ua.Variant(h, U32), too_long) == "BadEncodingLimitsExceeded"
        await _call(c, DATA, "Write", ua.Variant(h, U32), ua.Variant(b"y" * MAX_BYTE_STRING, BS))
        await _call(c, DATA, "Close", ua.Variant(h, U32))
    assert rig.data_path.read_bytes()[: MAX_BYTE_STRING + 1] == b"y" * MAX_BYTE_STRING + b"\x00"


async def test_package_over_max_package_bytes_is_refused_and_its_file_removed_at_once(rig: Rig) -> None:
    chunk = ua.Variant(b"z" * MAX_BYTE_STRING, BS)
    async with client(rig.url) as c:
        file_id, handle = await _call(c, TRANSFER, "GenerateFileForWrite", OPTIONS)
        for _ in range(MAX_PACKAGE // MAX_BYTE_STRING):
            await _call(c, file_id, "Write", ua.Variant(handle, U32), chunk)
        assert await _status(c, file_id, "Write", ua.Variant(handle, U32), chunk) == "BadResourceUnavailable"
        assert rig.transfer.active == 0 and list(rig.work.iterdir()) == []
        assert await _status(c, TRANSFER, "CloseAndCommit", ua.Variant(handle, U32)) == "BadInvalidArgument"
        # The next transfer is served as usual.
        file_id, handle = await _call(c, TRANSFER, "GenerateFileForWrite", OPTIONS)
        await _call(c, file_id, "Write", ua.Variant(handle, U32), chunk)
        await _call(c, TRANSFER, "CloseAndCommit", ua.Variant(handle, U32))


async def test_a_full_disk_refuses_the_transfer_and_releases_its_file_at_once(rig: Rig) -> None:
    chunk = ua.Variant(b"d" * 1000, BS)
    reserve = rig.transfer.reserve_bytes
    refusals: list[str] = []

    async def refused(reason: str) -> None:
        refusals.append(reason)

    def free(written_allowed: int) -> Any:
        # A disk with room for the reserve plus ``written_allowed`` bytes, less what transfers wrote so far.
        return lambda folder: reserve + written_allowed - sum(f.stat().st_size for f in rig.work.iterdir())

    rig.transfer._on_refused = refused
    try:
        async with client(rig.url) as c:
            rig.transfer.free_space = free(-12_000_000)  # not even the reserve
            assert await _status(c, TRANSFER, "GenerateFileForWrite", OPTIONS) == "BadOutOfMemory"
            assert refusals == [f"needs {reserve // 1_000_000} MB, {(reserve - 12_000_000) // 1_000_000} MB free"]
            assert rig.transfer.active == 0 and list(rig.work.iterdir()) == []

            rig.transfer.free_space = free(1500)  # the reserve and one chunk
            file_id, handle = await _call(c, TRANSFER, "GenerateFileForWrite", OPTIONS)
            await _call(c, file_id, "Write", ua.Variant(handle, U32), chunk)
            assert await _status(c, file_id, "Write", ua.Variant(handle, U32), chunk) == "BadOutOfMemory"
            assert rig.transfer.active == 0 and list(rig.work.iterdir()) == []  # released at once
            assert len(refusals) == 2 and refusals[1].startswith("needs ")
    finally:
        rig.transfer.free_space = free_bytes
        rig.transfer._on_refused = None


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full, a device that is always full")
async def test_a_write_the_filesystem_refuses_for_space_is_disk_full_and_reported_first(rig: Rig) -> None:
    reasons: list[str] = []

    async def no_space(file: FileNode, reason: str) -> None:
        reasons.append(reason)

    node = await new_file_object(
        rig.server, rig.server.nodes.objects, node_id("Full", rig.ns), ua.QualifiedName("Full", rig.ns)
    )
    full = await FileNode(rig.server, node, Path("/dev/full"), writable=True, on_no_space=no_space).bind()
    try:
        async with client(rig.url) as c:
            handle = await _call(c, node.nodeid, "Open", ua.Variant(WRITE, B))
            assert (
                await _status(c, node.nodeid, "Write", ua.Variant(handle, U32), ua.Variant(b"x", BS))
                == "BadOutOfMemory"
            )
            assert reasons == ["the disk filled up at 1 bytes (No space left on device)"]
            await _call(c, node.nodeid, "Close", ua.Variant(handle, U32))
    finally:
        await full.release()


async def test_message_over_the_max_size_is_refused_and_the_server_serves_on(rig: Rig) -> None:
    c = Client(rig.url, timeout=5)
    await c.connect()
    try:
        h = await _call(c, DATA, "Open", ua.Variant(READ, B))
        # 16 chunks: within asyncua's default 100 MB, over this server's 2 * 4096 + 64 KiB. The server
        # answers with an Error message and closes the connection after holding no more than that.
        with pytest.raises(ua.uaerrors.BadRequestTooLarge):
            await _call(c, DATA, "Write", ua.Variant(h, U32), ua.Variant(b"w" * (1 << 20), BS))
    finally:
        try:
            await c.disconnect()
        except (TimeoutError, ua.UaError, ConnectionError):
            pass  # the server dropped the connection
    async with client(rig.url) as c2:
        h = await _call(c2, DATA, "Open", ua.Variant(READ, B))
        assert await _call(c2, DATA, "Read", ua.Variant(h, U32), ua.Variant(4, I32)) == rig.data_path.read_bytes()[:4]


def _rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


async def test_huge_chunk_from_a_client_that_never_logged_in_costs_no_memory(rig: Rig) -> None:
    """A chunk header announcing 256 MiB is refused as soon as it arrives; its body is never buffered."""
    body = bytes(32 << 20)  # allocated before the baseline: only the server's growth counts
    host, port = "127.0.0.1", int(rig.url.split(":")[2].split("/")[0])
    reader, writer = await asyncio.open_connection(host, port)
    hello = ua.Hello()
    hello.EndpointUrl = ua.String(rig.url)
    hello.ReceiveBufferSize = hello.SendBufferSize = ua.UInt32(65535)
    writer.write(uatcp_to_binary(ua.MessageType.Hello, hello))  # type: ignore[arg-type]
    assert (await asyncio.wait_for(reader.read(1 << 16), 5))[:3] == b"ACK"
    before = _rss_bytes()
    writer.write(b"MSGF" + struct.pack("<I", 256 << 20) + body[:1024])
    reply = await asyncio.wait_for(reader.read(1 << 16), 5)
    assert reply[:3] == b"ERR"
    assert struct.unpack("<I", reply[8:12])[0] == ua.StatusCodes.BadTcpMessageTooLarge
    assert await asyncio.wait_for(reader.read(1 << 16), 5) == b""  # and the connection closed
    with contextlib.suppress(ConnectionError):  # the rest of the body goes nowhere
        writer.write(body)
        await asyncio.wait_for(writer.drain(), 5)
    writer.close()
    assert _rss_bytes() - before < 8 << 20
    async with client(rig.url) as c:  # still serving
        assert await c.get_node(ua.ObjectIds.Server_ServerStatus_State).read_value() == ua.ServerState.Running


# --- calls by the type's method NodeIds ------------------------------------------------------------------


async def test_filetype_methods_called_by_the_type_nodeids(rig: Rig) -> None:
    async with client(rig.url) as c:
        data = c.get_node(DATA)
        h = await data.call_method(node_id(ua.ObjectIds.FileType_Open), ua.Variant(READ, B))
        read = node_id(ua.ObjectIds.FileType_Read)
        assert await data.call_method(read, ua.Variant(h, U32), ua.Variant(3, I32)) == rig.data_path.read_bytes()[:3]
        await data.call_method(node_id(ua.ObjectIds.FileType_Close), ua.Variant(h, U32))
        with pytest.raises(ua.UaStatusCodeError) as info:  # closed: the handle is gone
            await data.call_method(read, ua.Variant(h, U32), ua.Variant(3, I32))
        assert type(info.value).__name__ == "BadInvalidArgument"


async def test_transfer_methods_called_by_the_type_nodeids(rig: Rig) -> None:
    async with client(rig.url) as c:
        transfer = c.get_node(TRANSFER)
        file_id, handle = await transfer.call_method(
            node_id(ua.ObjectIds.TemporaryFileTransferType_GenerateFileForWrite), OPTIONS
        )
        await c.get_node(file_id).call_method(
            node_id(ua.ObjectIds.FileType_Write), ua.Variant(handle, U32), ua.Variant(b"by type", BS)
        )
        await transfer.call_method(
            node_id(ua.ObjectIds.TemporaryFileTransferType_CloseAndCommit), ua.Variant(handle, U32)
        )
        assert rig.transfer.active == 0 and list(rig.work.iterdir()) == []


async def test_methods_called_on_objects_we_do_not_serve(rig: Rig) -> None:
    async with client(rig.url) as c:
        with pytest.raises(ua.UaStatusCodeError) as info:  # the Server object is no file
            await c.get_node(ua.ObjectIds.Server).call_method(node_id(ua.ObjectIds.FileType_Open), ua.Variant(READ, B))
        assert type(info.value).__name__ == "BadMethodInvalid"
        open_of_data = await c.get_node(DATA).get_child("0:Open")
        with pytest.raises(ua.UaStatusCodeError) as info:  # one file's own method named on another object
            await c.get_node(TRANSFER).call_method(open_of_data.nodeid, ua.Variant(READ, B))
        assert type(info.value).__name__ == "BadMethodInvalid"


# --- argument counts ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("obj", "method", "args", "error"),
    [
        (TRANSFER, "GenerateFileForWrite", (), "BadArgumentsMissing"),
        (TRANSFER, "GenerateFileForWrite", (OPTIONS, OPTIONS), "BadTooManyArguments"),
        (TRANSFER, "GenerateFileForRead", (), "BadArgumentsMissing"),
        (TRANSFER, "GenerateFileForRead", (OPTIONS, OPTIONS), "BadTooManyArguments"),
        (TRANSFER, "CloseAndCommit", (), "BadArgumentsMissing"),
        (TRANSFER, "CloseAndCommit", (ua.Variant(1, U32), OPTIONS), "BadTooManyArguments"),
        (DATA, "Open", (ua.Variant(READ, B), ua.Variant(READ, B)), "BadTooManyArguments"),
        (DATA, "Read", (ua.Variant(1, U32),), "BadArgumentsMissing"),
        (DATA, "Write", (ua.Variant(1, U32), ua.Variant(b"", BS), OPTIONS), "BadTooManyArguments"),
        (DATA, "GetPosition", (), "BadArgumentsMissing"),
        (DATA, "SetPosition", (ua.Variant(1, U32),), "BadArgumentsMissing"),
        (DATA, "Close", (ua.Variant(1, U32), OPTIONS), "BadTooManyArguments"),
    ],
)
async def test_argument_counts(rig: Rig, obj: str, method: str, args: tuple[ua.Variant, ...], error: str) -> None:
    async with client(rig.url) as c:
        assert await _status(c, obj, method, *args) == error
    assert rig.transfer.active == 0 and list(rig.work.iterdir()) == []


# --- every ModelLine server ----------------------------------------------------------------------------


async def test_every_server_gets_limits_from_its_settings() -> None:
    settings = EdgeSettings(max_byte_string=1 << 20)
    assert settings.max_package_bytes == GatewaySettings().max_package_bytes == 512 << 20
    server, _, _ = await new_server(
        endpoint=f"opc.tcp://127.0.0.1:{free_port()}/x/",
        name="x",
        application_uri="urn:test:x",
        product="x",
        max_byte_string=settings.max_byte_string,
    )
    assert server.limits.max_message_size == 2 * (1 << 20) + (64 << 10)
    assert server.limits.max_recv_buffer == 65535
    assert server.limits.max_chunk_count * (65535 - 1024) >= server.limits.max_message_size
    capabilities = ua.ObjectIds.Server_ServerCapabilities_MaxByteStringLength
    assert await server.get_node(node_id(capabilities)).read_value() == 1 << 20
