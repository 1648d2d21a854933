"""Audit records of client calls: who and from where come from the calling session (sdk.opcua.sessions)."""

from __future__ import annotations

import functools
import weakref
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any, Concatenate, ParamSpec, TypeVar

from sdk import audit
from sdk.audit import Outcome
from sdk.audit_log import on_disk
from sdk.errors import ModelLineError
from sdk.opcua import sessions

P = ParamSpec("P")
# Holds the owner weakly: the context of the task that started a service outlives the service (a test that
# starts gateways one after another in one task kept the last one in memory).
_scope: ContextVar[weakref.ref[Any] | None] = ContextVar("modelline_audit_scope", default=None)
S = TypeVar("S")


def record_call(action: str, outcome: Outcome, *, target: str = "", detail: str = "") -> audit.AuditRecord:
    """Record an action of the calling client (the server's own outside a client call)."""
    return audit.record(
        action,
        outcome,
        who=sessions.current_who(),
        address=sessions.current_address(),
        target=target,
        detail=detail,
    )


def audited(
    action: str, target: Callable[[Any], str] = lambda self: "", *, record_ok: bool = True
) -> Callable[[Callable[Concatenate[S, P], Awaitable[Any]]], Callable[Concatenate[S, P], Awaitable[Any]]]:
    """Record a method handler's call: "ok" when it returns, "refused" (with the reason) when it raises a
    ModelLineError; the call is answered once the record is on disk. ``target(self)`` names what it acts on;
    ``record_ok=False`` when the service records the success itself (with what it did). Put it under
    ``requires``: a caller without the role is recorded there."""

    def decorate(func: Callable[Concatenate[S, P], Awaitable[Any]]) -> Callable[Concatenate[S, P], Awaitable[Any]]:
        @functools.wraps(func)
        async def wrapper(self: S, /, *args: P.args, **kwargs: P.kwargs) -> Any:
            try:
                result = await func(self, *args, **kwargs)
            except ModelLineError as exc:
                record_call(action, "refused", target=target(self), detail=str(exc))
                await on_disk()
                raise
            if record_ok:
                record_call(action, "ok", target=target(self))
            await on_disk()  # answered only once its audit record is on disk
            return result

        return wrapper

    return decorate


def scoped_to(owner: Any) -> Callable[[], bool]:
    """Mark the current context, and every task and connection started from it, as ``owner``'s (a service
    whose ``server`` attribute is its asyncua Server once made); returns the predicate its AuditWriter uses
    to take only its own records when several services share one process (tests do): a client call's
    record belongs to the server of the calling session, any other to the scope it was made in."""
    _scope.set(weakref.ref(owner))

    def accepts() -> bool:
        session = sessions.current_session()
        server = getattr(owner, "server", None)
        if session is not None and server is not None:
            return session.iserver is server.iserver
        scope = _scope.get()
        return scope is None or scope() in (None, owner)

    return accepts
