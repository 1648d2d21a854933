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
    try:
        await client.connect()
    except ua.uaerrors.BadCertificateUntrusted:
        raise ConnectionError(refused_by_server(client)) from None
    _no_stale_subscription_watchdog(client)
    connected()
    try:
        yield lost
    finally:
        try:
            await asyncio.wait_for(client.disconnect(), 2.0)
        except Exception:  # the peer may be gone already
            _log.debug("%s: disconnect failed", what, exc_info=True)


def refused_by_server(client: Client) -> str:
    """Why a server refused ``client``'s application certificate, and how to have it trusted there."""
    from sdk.opcua.pki import common_name, load_certificate, thumbprint

    url = client.server_url.geturl()
    der = getattr(client.security_policy, "host_certificate", None)
    if not der:
        return f"{url} does not trust this client's certificate"
    cert = load_certificate(bytes(der))
    return (
        f"{url} does not trust this client's certificate {common_name(cert)!r} [{thumbprint(cert)}] yet "
        f"(Bad_CertificateUntrusted; it waits in that server's rejected list): approve it there ('modelline trust "
        f"approve --data-dir DIR {thumbprint(cert)[:16]}' on a ModelLine node; a PLC or other server: in its own "
        "trust list), then try again"
    )


def _no_stale_subscription_watchdog(client: Client) -> None:
    """Stop asyncua's stale-subscription watchdog on a kept-open session.

    That watchdog re-creates a subscription (a new SubscriptionId, its monitored items sending their current
    values again) when no Publish response came within 1.5 keep-alive periods (at least 1 s). On a busy machine a
    keep-alive is that late without anything being wrong: the re-created subscription then delivered unchanged
    tag values as new data changes (one more prediction with the same source timestamps), and the old
    subscription's responses still in flight were logged as "Received data for unknown subscription".
    A quiet subscription is alive as long as its keep-alives come (OPC 10000-4 5.13.1.1); a lost link is found by
    the session watchdog (``connection_lost_callback``), and the link then reconnects with a new session, the old
    one closed with its subscriptions deleted (CloseSession deleteSubscriptions=True, OPC 10000-4 5.6.4).
    A link that must notice a subscription the server dropped while the session lives checks its keep-alives
    itself (see ``edge_node.opcua.inputs``)."""
    task = getattr(client, "_stale_watchdog_task", None)  # asyncua >= 2.1; no public switch
    if isinstance(task, asyncio.Task):
        task.cancel()


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
