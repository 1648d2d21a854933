"""FileType and TemporaryFileTransferType served by sdk.opcua, driven by a real asyncua client."""

from __future__ import annotations

import asyncio
import hashlib
import io
import shutil
import zipfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from asyncua import Client, Node, Server, ua
from asyncua.common.instantiate_util import instantiate

from sdk import errors
from sdk.opcua.file_transfer import TemporaryFileTransfer
from sdk.opcua.filetype import APPEND, ERASE_EXISTING, READ, WRITE, FileNode, new_file_object
from sdk.opcua.shelf import init_server
from sdk.package.archive import FileDigest
from sdk.package.stream import Received
from tests.opcua_servers import client, free_port

# One server for the module (asyncua builds its standard address space in about 2.5 s); ``rig`` resets it per test.
pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

B, U32, I32, U64, BS = (
    ua.VariantType.Byte,
    ua.VariantType.UInt32,
    ua.VariantType.Int32,
    ua.VariantType.UInt64,
    ua.VariantType.ByteString,
)


@dataclass
class Rig:
    url: str
    server: Server
    file_path: Path
    readonly_path: Path
    file_node: FileNode
    transfer: TemporaryFileTransfer
    zip_node: FileNode
    committed: list[tuple[bytes, Any]] = field(default_factory=list)
    digests: list[FileDigest | None] = field(default_factory=list)
    reject_with: errors.ModelLineError | None = None


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def shared_rig(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Rig]:
    tmp_path = tmp_path_factory.mktemp("files")
    server = Server()
    await init_server(server)
    url = f"opc.tcp://127.0.0.1:{free_port()}/files/"
    server.set_endpoint(url)
    ns = await server.register_namespace("urn:test:files")
    objects = server.nodes.objects
    file_path = tmp_path / "data.bin"
    file_path.write_bytes(b"")
    readonly_path = tmp_path / "ro.bin"
    readonly_path.write_bytes(b"read only")
    rw = await new_file_object(server, objects, ua.NodeId("Data", ns), ua.QualifiedName("Data", ns))
    ro = await new_file_object(server, objects, ua.NodeId("ReadOnly", ns), ua.QualifiedName("ReadOnly", ns))
    transfer_type = server.get_node(ua.ObjectIds.TemporaryFileTransferType)
    transfer_node = (
        await instantiate(objects, transfer_type, nodeid=ua.NodeId("Transfer", ns), bname=f"{ns}:Transfer")
    )[0]

    rig_holder: dict[str, Rig] = {}

    async def commit(path: Path, options: Any, received: Received | None) -> None:
        current = rig_holder["rig"]
        if current.reject_with is not None:
            raise current.reject_with
        current.committed.append((await asyncio.to_thread(path.read_bytes), options))
        current.digests.append(received.digest if received else None)

    async def read_source(options: Any) -> Path:
        if options == 9:
            raise errors.NotFound("no such version")
        return readonly_path

    file_node = await FileNode(server, rw, file_path, writable=True, max_byte_string=4096).bind()
    zipped = await new_file_object(server, objects, ua.NodeId("Zip", ns), ua.QualifiedName("Zip", ns))
    zip_node = await FileNode(
        server, zipped, tmp_path / "upload.zip", writable=True, max_byte_string=1 << 16, follow_zip=True
    ).bind()
    await FileNode(server, ro, readonly_path, writable=False).bind()
    transfer = await TemporaryFileTransfer(
        server, transfer_node, tmp_path / "work", commit=commit, read_source=read_source, max_byte_string=4096
    ).bind()
    rig = Rig(url, server, file_path, readonly_path, file_node, transfer, zip_node)
    rig_holder["rig"] = rig
    async with server:
        yield rig
        await transfer.release()


@pytest_asyncio.fixture(loop_scope="module")
async def rig(shared_rig: Rig) -> Rig:
    """The shared server with its files and records as new."""
    shared_rig.file_path.write_bytes(bytes(range(256)) * 40)  # 10240 bytes
    shared_rig.committed.clear()
    shared_rig.digests.clear()
    shared_rig.reject_with = None
    entries = shared_rig.zip_node.entries_dir
    if entries.is_dir():
        shutil.rmtree(entries)
    entries.unlink(missing_ok=True)
    await shared_rig.file_node.refresh()
    return shared_rig


async def _method(obj: Node, name: str) -> Node:
    return await obj.get_child(f"0:{name}")


async def _call(c: Client, obj_id: ua.NodeId | str, name: str, *args: ua.Variant) -> Any:
    obj = c.get_node(obj_id)
    return await obj.call_method(await _method(obj, name), *args)


async def _status(c: Client, obj_id: ua.NodeId | str, name: str, *args: ua.Variant) -> str:
    with pytest.raises(ua.UaStatusCodeError) as info:
        await _call(c, obj_id, name, *args)
    return type(info.value).__name__


DATA = "ns=2;s=Data"
ZIP = "ns=2;s=Zip"
RO = "ns=2;s=ReadOnly"


async def test_read_whole_file_in_clipped_chunks_and_empty_at_end(rig: Rig) -> None:
    async with client(rig.url) as c:
        handle = await _call(c, DATA, "Open", ua.Variant(READ, B))
        chunks = []
        while True:
            data = await _call(c, DATA, "Read", ua.Variant(handle, U32), ua.Variant(1_000_000, I32))
            if not data:
                break
            chunks.append(data)
        assert data == b""  # an empty ByteString, not null, at the end
        assert max(len(x) for x in chunks) == 4096  # clipped to MaxByteStringLength, not refused
        assert b"".join(chunks) == rig.file_path.read_bytes()
        assert await c.get_node(DATA).get_child("0:MaxByteStringLength") is not None
        await _call(c, DATA, "Close", ua.Variant(handle, U32))


async def test_properties_are_kept_current(rig: Rig) -> None:
    async with client(rig.url) as c:
        node = c.get_node(DATA)

        async def prop(name: str) -> Any:
            return await (await node.get_child(f"0:{name}")).read_value()

        assert (await prop("Size"), await prop("Writable"), await prop("OpenCount")) == (10240, True, 0)
        assert await prop("MaxByteStringLength") == 4096
        h1 = await _call(c, DATA, "Open", ua.Variant(READ, B))
        h2 = await _call(c, DATA, "Open", ua.Variant(READ, B))
        assert h1 != h2 and await prop("OpenCount") == 2
        await _call(c, DATA, "Close", ua.Variant(h1, U32))
        await _call(c, DATA, "Close", ua.Variant(h2, U32))
        h = await _call(c, DATA, "Open", ua.Variant(WRITE | ERASE_EXISTING, B))
        await _call(c, DATA, "Write", ua.Variant(h, U32), ua.Variant(b"abc", BS))
        await _call(c, DATA, "Close", ua.Variant(h, U32))
        assert (await prop("Size"), await prop("OpenCount")) == (3, 0)
        assert await (await c.get_node(RO).get_child("0:Writable")).read_value() is False


@pytest.mark.parametrize(
    ("mode", "error"),
    [
        (0, "BadInvalidArgument"),
        (ERASE_EXISTING, "BadInvalidArgument"),
        (READ | APPEND, "BadInvalidArgument"),
        (0x10 | READ, "BadInvalidArgument"),
    ],
)
async def test_invalid_open_modes(rig: Rig, mode: int, error: str) -> None:
    async with client(rig.url) as c:
        assert await _status(c, DATA, "Open", ua.Variant(mode, B)) == error


async def test_wrong_argument_types_get_precise_codes(rig: Rig) -> None:
    async with client(rig.url) as c:
        assert await _status(c, DATA, "Open", ua.Variant("1", ua.VariantType.String)) == "BadTypeMismatch"
        assert await _status(c, DATA, "Open") == "BadArgumentsMissing"


async def test_read_only_file_refuses_writers(rig: Rig) -> None:
    async with client(rig.url) as c:
        assert await _status(c, RO, "Open", ua.Variant(WRITE, B)) == "BadNotWritable"


async def test_many_readers_one_writer(rig: Rig) -> None:
    async with client(rig.url) as a, client(rig.url) as b:
        r1 = await _call(a, DATA, "Open", ua.Variant(READ, B))
        await _call(b, DATA, "Open", ua.Variant(READ, B))
        assert await _status(b, DATA, "Open", ua.Variant(WRITE, B)) == "BadNotWritable"
        await _call(a, DATA, "Close", ua.Variant(r1, U32))
    async with client(rig.url) as a, client(rig.url) as b:
        w = await _call(a, DATA, "Open", ua.Variant(WRITE | APPEND, B))
        assert await _status(b, DATA, "Open", ua.Variant(READ, B)) == "BadNotReadable"
        assert await _status(b, DATA, "Open", ua.Variant(WRITE, B)) == "BadNotWritable"
        await _call(a, DATA, "Write", ua.Variant(w, U32), ua.Variant(b"tail", BS))
        await _call(a, DATA, "Close", ua.Variant(w, U32))
    assert rig.file_path.read_bytes().endswith(b"tail") and rig.file_path.stat().st_size == 10244


async def test_wrong_mode_for_read_or_write(rig: Rig) -> None:
    async with client(rig.url) as c:
        r = await _call(c, DATA, "Open", ua.Variant(READ, B))
        assert await _status(c, DATA, "Write", ua.Variant(r, U32), ua.Variant(b"x", BS)) == "BadInvalidState"
        assert await _status(c, DATA, "Read", ua.Variant(r, U32), ua.Variant(0, I32)) == "BadInvalidArgument"
        await _call(c, DATA, "Close", ua.Variant(r, U32))
        w = await _call(c, DATA, "Open", ua.Variant(WRITE, B))
        assert await _status(c, DATA, "Read", ua.Variant(w, U32), ua.Variant(10, I32)) == "BadInvalidState"
        await _call(c, DATA, "Close", ua.Variant(w, U32))


async def test_positions(rig: Rig) -> None:
    async with client(rig.url) as c:
        h = await _call(c, DATA, "Open", ua.Variant(READ, B))
        await _call(c, DATA, "SetPosition", ua.Variant(h, U32), ua.Variant(256, U64))
        assert await _call(c, DATA, "GetPosition", ua.Variant(h, U32)) == 256
        assert await _call(c, DATA, "Read", ua.Variant(h, U32), ua.Variant(3, I32)) == b"\x00\x01\x02"
        await _call(c, DATA, "SetPosition", ua.Variant(h, U32), ua.Variant(10**9, U64))
        assert await _call(c, DATA, "GetPosition", ua.Variant(h, U32)) == 10240  # clamped to the end
        assert await _call(c, DATA, "Read", ua.Variant(h, U32), ua.Variant(10, I32)) == b""


async def test_unknown_and_foreign_handles(rig: Rig) -> None:
    async with client(rig.url) as a, client(rig.url) as b:
        h = await _call(a, DATA, "Open", ua.Variant(READ, B))
        assert await _status(b, DATA, "Read", ua.Variant(h, U32), ua.Variant(10, I32)) == "BadInvalidArgument"
        assert await _status(b, DATA, "Close", ua.Variant(h, U32)) == "BadInvalidArgument"
        assert await _status(a, DATA, "Close", ua.Variant(h + 1000, U32)) == "BadInvalidArgument"
        assert await _call(a, DATA, "Read", ua.Variant(h, U32), ua.Variant(2, I32)) == b"\x00\x01"


async def test_handles_are_released_when_the_session_ends(rig: Rig) -> None:
    async with client(rig.url) as a:
        await _call(a, DATA, "Open", ua.Variant(WRITE, B))
        assert rig.file_node.open_count == 1
    assert rig.file_node.open_count == 0
    async with client(rig.url) as b:
        h = await _call(b, DATA, "Open", ua.Variant(WRITE, B))  # no longer locked
        await _call(b, DATA, "Close", ua.Variant(h, U32))


TRANSFER = "ns=2;s=Transfer"


async def _upload(c: Client, payload: bytes, options: ua.Variant, chunk: int = 1000) -> tuple[ua.NodeId, int]:
    file_id, handle = await _call(c, TRANSFER, "GenerateFileForWrite", options)
    for start in range(0, len(payload), chunk):
        await _call(c, file_id, "Write", ua.Variant(handle, U32), ua.Variant(payload[start : start + chunk], BS))
    return file_id, handle


async def test_temporary_write_transfer_commits_and_cleans_up(rig: Rig) -> None:
    payload = bytes(range(256)) * 13
    async with client(rig.url) as c:
        file_id, handle = await _upload(c, payload, ua.Variant(1, ua.VariantType.Int32))
        transfer_children = {n.nodeid for n in await c.get_node(TRANSFER).get_children()}
        assert file_id not in transfer_children  # not browsable
        await _call(c, TRANSFER, "CloseAndCommit", ua.Variant(handle, U32))
        assert rig.committed == [(payload, 1)]
        with pytest.raises(ua.UaStatusCodeError):
            await c.get_node(file_id).read_browse_name()  # the temporary node is gone
    assert rig.transfer.active == 0
    assert list((rig.file_path.parent / "work").iterdir()) == []


async def test_commit_gets_the_hash_of_the_bytes_as_they_arrived(rig: Rig) -> None:
    payload = bytes(range(256)) * 17
    async with client(rig.url) as c:
        _, handle = await _upload(c, payload, ua.Variant(1, ua.VariantType.Int32), chunk=999)
        await _call(c, TRANSFER, "CloseAndCommit", ua.Variant(handle, U32))
    assert rig.digests == [FileDigest(len(payload), hashlib.sha256(payload).hexdigest())]


def _zip_with_model(model: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr(zipfile.ZipInfo("mimetype"), b"application/vnd.etsi.asic-e+zip")
        with zf.open(zipfile.ZipInfo("CONTENT/model.onnx"), "w", force_zip64=True) as dst:
            dst.write(model)
    return buffer.getvalue()


async def _write_all(c: Client, node_id: str, data: bytes, chunk: int) -> None:
    handle = await _call(c, node_id, "Open", ua.Variant(WRITE | ERASE_EXISTING, B))
    for start in range(0, len(data), chunk):
        await _call(c, node_id, "Write", ua.Variant(handle, U32), ua.Variant(data[start : start + chunk], BS))
    await _call(c, node_id, "Close", ua.Variant(handle, U32))


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def test_a_zip_written_in_order_is_hashed_and_its_model_copied_aside_as_it_arrives(rig: Rig) -> None:
    model = bytes(range(256)) * 5000  # over the 1 MiB a stored entry needs to be copied aside
    data = _zip_with_model(model)
    async with client(rig.url) as c:
        await _write_all(c, ZIP, data, 1 << 16)
    received = rig.zip_node.received
    assert received is not None and received.digest == FileDigest(len(data), _sha(data))
    copies = [e for e in received.entries if e.copy is not None]
    assert [(e.name, e.sha256) for e in copies] == [("CONTENT/model.onnx", _sha(model))]
    assert copies[0].copy is not None and copies[0].copy.read_bytes() == model


async def test_a_zip_whose_model_cannot_be_copied_aside_still_arrives_whole(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    rig.zip_node.entries_dir.write_bytes(b"")  # a file where the copies' folder goes: the copy fails
    model = bytes(range(256)) * 5000
    data = _zip_with_model(model)
    async with client(rig.url) as c:
        await _write_all(c, ZIP, data, 1 << 16)
    received = rig.zip_node.received
    assert received is not None and received.digest == FileDigest(len(data), _sha(data))
    assert all(e.copy is None for e in received.entries)  # the follower was dropped: the owner unpacks the model
    assert rig.zip_node.path.read_bytes() == data
    assert "not following the zip further" in caplog.text


async def test_a_write_out_of_order_leaves_the_hash_to_the_owner(rig: Rig) -> None:
    async with client(rig.url) as c:
        file_id, handle = await _upload(c, b"abcdef", ua.Variant(1, ua.VariantType.Int32))
        await _call(c, file_id, "SetPosition", ua.Variant(handle, U32), ua.Variant(2, U64))
        await _call(c, file_id, "Write", ua.Variant(handle, U32), ua.Variant(b"X", BS))  # overwrites 'c'
        await _call(c, TRANSFER, "CloseAndCommit", ua.Variant(handle, U32))
    assert rig.committed == [(b"abXdef", 1)]
    assert rig.digests == [None]  # the hash of what arrived is not the file's: not passed on


async def test_rejected_commit_returns_the_reason_code_and_leaves_nothing(rig: Rig) -> None:
    rig.reject_with = errors.SignatureInvalid("tampered")
    async with client(rig.url) as c:
        _, handle = await _upload(c, b"evil", ua.Variant(None, ua.VariantType.Null))
        assert await _status(c, TRANSFER, "CloseAndCommit", ua.Variant(handle, U32)) == "BadSecurityChecksFailed"
        assert await _status(c, TRANSFER, "CloseAndCommit", ua.Variant(handle, U32)) == "BadInvalidArgument"
    assert rig.committed == [] and rig.transfer.active == 0
    assert list((rig.file_path.parent / "work").iterdir()) == []


async def test_transfer_abandoned_when_its_session_ends(rig: Rig) -> None:
    async with client(rig.url) as c:
        await _upload(c, b"half a package", ua.Variant(1, ua.VariantType.Int32))
        assert rig.transfer.active == 1
    assert rig.transfer.active == 0
    assert list((rig.file_path.parent / "work").iterdir()) == []


async def test_only_the_owning_session_can_commit(rig: Rig) -> None:
    async with client(rig.url) as a, client(rig.url) as b:
        file_id, handle = await _upload(a, b"abc", ua.Variant(1, ua.VariantType.Int32))
        assert await _status(b, TRANSFER, "CloseAndCommit", ua.Variant(handle, U32)) == "BadInvalidArgument"
        assert await _status(b, file_id, "Write", ua.Variant(handle, U32), ua.Variant(b"x", BS)) == "BadInvalidArgument"
        await _call(a, TRANSFER, "CloseAndCommit", ua.Variant(handle, U32))
    assert rig.committed == [(b"abc", 1)]


async def test_generate_file_for_read(rig: Rig) -> None:
    async with client(rig.url) as c:
        file_id, handle, completion = await _call(
            c, TRANSFER, "GenerateFileForRead", ua.Variant(0, ua.VariantType.Int32)
        )
        assert completion.is_null()
        assert await _call(c, file_id, "Read", ua.Variant(handle, U32), ua.Variant(100, I32)) == b"read only"
        await _call(c, file_id, "Close", ua.Variant(handle, U32))
        assert rig.transfer.active == 0
        assert await _status(c, TRANSFER, "GenerateFileForRead", ua.Variant(9, ua.VariantType.Int32)) == "BadNotFound"
