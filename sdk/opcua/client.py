"""A kept-open client session for the links that reconnect (sdk/reconnect.py): connected, watched, closed."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from asyncua import Client, ua

_log = logging.getLogger(__name__)


@asynccontextmanager
async def watched_session(client: Client, connected: Callable[[], None], what: str) -> AsyncIterator[asyncio.Event]:
    """Connect ``client``, call ``connected()``, and yield an Event that is set when the connection is lost
    (asyncua's watchdog or the transport); on exit, disconnect within 2 s without raising (the peer may be gone)."""
    quiet_lost_links()
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


# asyncua loggers that report a lost link with a full traceback at ERROR ("Publish iteration crashed", ...).
_NOISY_LOGGERS = (
    "asyncua.client.ua_session.UaSession",
    "asyncua.client.ua_session",
    "asyncua.client.client",
    "asyncua.client.ua_client.UaClient",
    "asyncua.client.ua_client",
)
_LINK_ERRORS = (ConnectionError, OSError, TimeoutError)


class _LostLinkIsOneLine(logging.Filter):
    """A lost link is expected on a plant network: one WARNING line with the cause, no traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        lost = isinstance(exc, _LINK_ERRORS) or (
            isinstance(exc, ua.UaStatusCodeError) and int(exc.code) in _LINK_STATUSES
        )
        if exc is not None and lost and record.levelno > logging.WARNING:
            record.msg = f"{record.getMessage()}: {type(exc).__name__}: {exc}".rstrip(": ")
            record.args = None
            record.exc_info = None
            record.exc_text = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


_LINK_STATUSES = {
    ua.StatusCodes.BadConnectionClosed,
    ua.StatusCodes.BadSecureChannelClosed,
    ua.StatusCodes.BadSessionClosed,
    ua.StatusCodes.BadSessionIdInvalid,
    ua.StatusCodes.BadTimeout,
    ua.StatusCodes.BadServerNotConnected,
    ua.StatusCodes.BadNotConnected,
    ua.StatusCodes.BadCommunicationError,
    ua.StatusCodes.BadShutdown,
}
_filter = _LostLinkIsOneLine()


def quiet_lost_links() -> None:
    """Log asyncua's reports of a lost link as one WARNING line each (idempotent)."""
    for name in _NOISY_LOGGERS:
        logger = logging.getLogger(name)
        if _filter not in logger.filters:
            logger.addFilter(_filter)
