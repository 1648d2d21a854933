"""Which client session is calling a method, and when a session ends.

asyncua 2.1 passes a method handler only the object NodeId and the arguments
(``MethodService._run_method`` in asyncua/server/address_space.py), yet OPC
10000-20 ties file handles to the session that opened them and asks that they be
released when that session ends. ``install()`` wraps two InternalSession methods
once per process: ``call`` records the session in a ContextVar that async
handlers can read, and ``close_session`` (run on CloseSession, time-out and
transport loss) tells the listeners.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any

from asyncua import Server, ua
from asyncua.server.internal_session import InternalSession

_log = logging.getLogger(__name__)

_current: ContextVar[InternalSession | None] = ContextVar("modelline_opcua_session", default=None)
_listeners: list[Callable[[ua.NodeId], Awaitable[None]]] = []
_installed = False


def install() -> None:
    """Wrap InternalSession.call and close_session (idempotent)."""
    global _installed
    if _installed:
        return
    original_call = InternalSession.call
    original_close = InternalSession.close_session

    @functools.wraps(original_call)
    async def call(self: InternalSession, params: Any) -> Any:
        token = _current.set(self)
        try:
            return await original_call(self, params)
        finally:
            _current.reset(token)

    @functools.wraps(original_close)
    async def close_session(self: InternalSession, delete_subs: bool = True) -> None:
        await original_close(self, delete_subs)
        for listener in list(_listeners):
            try:
                await listener(self.session_id)
            except Exception:
                _log.exception("session %s: close listener failed", self.session_id)

    InternalSession.call = call  # type: ignore[method-assign]
    InternalSession.close_session = close_session  # type: ignore[method-assign]
    _installed = True


async def close_left_over(server: Server) -> int:
    """Close the sessions a stopped server still holds; returns how many.

    asyncua 2.1 keeps a session with Subscriptions after its connection is lost, so that its client
    can transfer them to a new SecureChannel (OPC 10000-4 §6.7), until the session times out (up to
    10 min), and ``Server.stop`` leaves such sessions open: each one's time-out task then keeps the
    stopped server and its whole address space in memory. No client can come back to a stopped server."""
    left = list(server.iserver._external_sessions.values())  # asyncua keeps no public list
    for session in left:
        await session.close_session(True)
    return len(left)


def current_session_id() -> ua.NodeId | None:
    """The session of the method call being handled, or None outside a client call."""
    session = _current.get()
    return session.session_id if session is not None else None


def current_session() -> InternalSession | None:
    """The asyncua session of the method call being handled, or None outside a client call."""
    return _current.get()


def current_user() -> Any:
    """The asyncua User of the calling session, or None outside a client call."""
    session = _current.get()
    return session.user if session is not None else None


def on_session_closed(listener: Callable[[ua.NodeId], Awaitable[None]]) -> Callable[[], None]:
    """Call ``listener(session_id)`` whenever a session ends; returns a function that unregisters it."""
    install()
    _listeners.append(listener)

    def remove() -> None:
        if listener in _listeners:
            _listeners.remove(listener)

    return remove
