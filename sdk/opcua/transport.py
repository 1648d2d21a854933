"""What one client may send in one message, enforced before it costs memory, and advertised.

asyncua's defaults accept 100 MB messages from any client, logged in or not, and keep every chunk
of one in memory until it is complete (``SecureConnection._receive`` in asyncua/common/connection.py).
Worse, ``OPCUAProtocol.data_received`` (asyncua/server/binary_server_asyncio.py) buffers a whole
chunk, however large its header says it is, before anything looks at that size, and it does so by
concatenation, so a client declaring a 100 MB chunk costs 100 MB and quadratic copying. ``set_limits``
sizes the limits from MaxByteStringLength, and ``install`` refuses a chunk larger than the receive
buffer as soon as its header has arrived.
"""

from __future__ import annotations

import functools
import logging
import math

from asyncua import Server, ua
from asyncua.common.connection import TransportLimits
from asyncua.server.binary_server_asyncio import OPCUAProtocol
from asyncua.ua.ua_binary import uatcp_to_binary

from sdk.opcua.ids import node_id

_log = logging.getLogger(__name__)

CHUNK_BYTES = 65535  # asyncua's default send and receive buffer: the largest chunk either side sends
_HEADER_BYTES = 8  # MessageType (3), chunk type (1), MessageSize (4): OPC 10000-6 7.1.2.2
_installed = False


def transport_limits(max_byte_string: int) -> TransportLimits:
    """A Write request carrying one MaxByteStringLength chunk fits with room to spare, nothing much larger.

    A longer message, or one of more chunks, is refused by asyncua with Bad_RequestTooLarge: the
    server sends an Error message and closes the connection (``UaProcessor.process``), having held at
    most ``max_message_size`` for it. asyncua applies the limits to requests only, not to responses."""
    max_message = 2 * max_byte_string + (64 << 10)
    # A chunk's body is its size less headers, signature and padding; 1 KiB a chunk covers those.
    chunks = math.ceil(max_message / (CHUNK_BYTES - 1024)) + 1
    return TransportLimits(
        max_recv_buffer=CHUNK_BYTES, max_send_buffer=CHUNK_BYTES, max_chunk_count=chunks, max_message_size=max_message
    )


async def set_limits(server: Server, max_byte_string: int) -> None:
    """Apply ``transport_limits`` (before the server starts), refuse oversized chunks early (``install``)
    and advertise what clients may send.

    Advertised so clients size file transfer chunks to it (node-opcua reads MaxByteStringLength,
    INTEROP.md); asyncua leaves MaxStringLength and MaxArrayLength null, which clients read as no limit."""
    install()
    server.limits = transport_limits(max_byte_string)
    for number in (
        ua.ObjectIds.Server_ServerCapabilities_MaxByteStringLength,
        ua.ObjectIds.Server_ServerCapabilities_MaxStringLength,
        # The same bound for strings and arrays keeps any one such value well within one message.
        ua.ObjectIds.Server_ServerCapabilities_MaxArrayLength,
    ):
        await server.get_node(node_id(number)).write_value(ua.Variant(max_byte_string, ua.VariantType.UInt32))


def install() -> None:
    """Wrap OPCUAProtocol.data_received once per process: a chunk whose header declares more than the
    server's receive buffer is answered with Bad_TcpMessageTooLarge (OPC 10000-6 7.1.5) and the
    connection closed, before its body is read."""
    global _installed
    if _installed:
        return
    original = OPCUAProtocol.data_received

    @functools.wraps(original)
    def data_received(self: OPCUAProtocol, data: bytes) -> None:
        original(self, data)
        # What is left in the buffer is one incomplete chunk; its header tells how large it will be.
        pending = self._buffer
        if len(pending) < _HEADER_BYTES or self.transport is None:
            return
        size = int.from_bytes(pending[4:8], "little")
        if size <= self.limits.max_recv_buffer:
            return
        limit = self.limits.max_recv_buffer
        _log.warning("%s: a chunk of %d bytes announced, over the %d allowed: closing", self.peer_name, size, limit)
        self._buffer = b""
        error = ua.ErrorMessage(
            ua.StatusCode(ua.UInt32(ua.StatusCodes.BadTcpMessageTooLarge)), ua.String("chunk larger than the buffer")
        )
        self.transport.write(uatcp_to_binary(ua.MessageType.Error, error))  # type: ignore[arg-type]
        self.transport.close()

    OPCUAProtocol.data_received = data_received  # type: ignore[method-assign]
    _installed = True
