"""Keep-alives for subscriptions that publish on change (publishing interval 0) on an asyncua server.

OPC 10000-4 5.13.2.2 has a server revise a requested publishing interval of 0 to the fastest it supports;
asyncua keeps 0 and then runs no publishing timer: each change is published at once, which is what a
subscriber of predictions wants, but with no timer a quiet subscription never sends the keep-alive
(5.13.1.1: after MaxKeepAliveCount publishing cycles without a notification) that tells its client it lives,
and clients that watch for keep-alives (asyncua's own recreates a subscription silent for a second) take it
for lost. ``keep_alive_on_change`` gives such subscriptions a cycle of KEEP_ALIVE_CYCLE_S for keep-alives and
lifetime only: notifications still go out the moment they are queued.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from asyncua import Server, ua

_log = logging.getLogger(__name__)

KEEP_ALIVE_CYCLE_S = 0.05
"""The cycle a publish-on-change subscription counts keep-alives and lifetime in."""
MAX_KEEP_ALIVE_COUNT = 10
"""Most cycles without a notification before a keep-alive: at most half a second of silence."""


def keep_alive_on_change(server: Server) -> None:
    """Make ``server``'s publishing-interval-0 subscriptions send keep-alives (call before it starts)."""
    service = server.iserver.subscription_service
    original = service.create_subscription
    tasks: set[asyncio.Task[None]] = set()

    async def create_subscription(
        params: ua.CreateSubscriptionParameters, callback: Any, session_id: ua.NodeId, request_callback: Any = None
    ) -> ua.CreateSubscriptionResult:
        result: ua.CreateSubscriptionResult = await original(params, callback, session_id, request_callback)
        sub = service.subscriptions.get(result.SubscriptionId)
        if sub is not None and result.RevisedPublishingInterval <= 0:
            count = min(max(result.RevisedMaxKeepAliveCount, 1), MAX_KEEP_ALIVE_COUNT)
            result.RevisedMaxKeepAliveCount = count  # the same object the subscription keeps (sub.data)
            task = asyncio.get_running_loop().create_task(_cycle(service, sub), name=f"keep-alive {sub}")
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        return result

    service.create_subscription = create_subscription  # type: ignore[method-assign]


async def _cycle(service: Any, sub: Any) -> None:
    """Count one publishing cycle every KEEP_ALIVE_CYCLE_S until the subscription is gone."""
    try:
        while service.subscriptions.get(sub.data.SubscriptionId) is sub:
            await asyncio.sleep(KEEP_ALIVE_CYCLE_S)
            # Sends what is queued (a Publish request was missing when it was queued), or a keep-alive when due.
            await sub.publish_results()
    except asyncio.CancelledError:
        raise
    except Exception:  # a broken session: its subscription goes with it
        _log.debug("keep-alive cycle of %s ended", sub, exc_info=True)
