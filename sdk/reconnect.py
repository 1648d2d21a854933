"""One way to keep a connection: run a session, and when it ends, wait and run it again.

Used by every link that must come back by itself: an edge node's PLC sources, the gateway's
link to each edge device, an edge node's registration with its gateway. The wait doubles after
each failed try up to a cap, and starts over from the first delay as soon as a session reports
that it got connected, so a link that worked for a while and dropped is tried again quickly.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

_log = logging.getLogger(__name__)

Session = Callable[[Callable[[], None]], Awaitable[None]]
"""A coroutine function taking ``connected``: call it once the link is up; return when the work is done,
raise when the link fails or is lost."""


async def reconnecting(
    what: str,
    session: Session,
    backoff: tuple[float, float] = (0.5, 30.0),
    *,
    on_down: Callable[[str], Awaitable[None]] | None = None,
    logger: logging.Logger = _log,
) -> None:
    """Run ``session`` until it returns; after each failure, call ``on_down(reason)``, wait, and try again.

    Expected failures (a peer that is down or goes away) are logged as one WARNING line with the
    reason and the wait, never with a traceback; further tries that fail for the same reason are
    logged at DEBUG, so a peer that stays away for hours does not fill the log with one line per try.
    ``backoff`` is the first and the longest wait, in seconds."""
    first_s, cap_s = backoff
    delay = first_s
    reported = ""  # the reason last logged at WARNING in this outage
    while True:
        up = False

        def connected() -> None:
            nonlocal up
            up = True

        try:
            await session(connected)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # any failure of the peer or the link: report it, wait, retry
            reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        else:
            return
        if up:
            delay, reported = first_s, ""
        level = logging.DEBUG if reason == reported else logging.WARNING
        logger.log(level, "%s: %s; retrying in %.1f s", what, reason, delay)
        reported = reason
        if on_down is not None:
            await on_down(reason)
        await asyncio.sleep(delay)
        delay = min(delay * 2, cap_s)
