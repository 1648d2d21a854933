"""Methods called by their type's method NodeId, and methods called on the wrong object.

OPC 10000-4 5.11.2 (Call) lets a client name as MethodId either the object's own method or the
method of the object's type (or a supertype); generic clients read a type's methods once and call
them on every instance. asyncua runs the callback linked to the MethodId node and hands it ObjectId
as ``parent`` (``MethodService._call`` in asyncua/server/address_space.py); a type's method nodes
have no callback, so such a call answers BadNothingToDo. ``serve`` links each type method node, once
per server, to a dispatcher that finds the handler serving ObjectId. asyncua also never checks that
MethodId belongs to ObjectId, so ``bound_to`` guards an instance's own method nodes.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from weakref import WeakKeyDictionary

from asyncua import Server, ua

from sdk.opcua.ids import node_id

_log = logging.getLogger(__name__)

Handler = Callable[..., Awaitable[Any]]
"""An asyncua method callback: ``(parent, *args)``."""

# Per server: the type's method NodeId -> (ObjectId -> the handler serving that object).
_served: WeakKeyDictionary[Server, dict[ua.NodeId, dict[ua.NodeId, Handler]]] = WeakKeyDictionary()


def serve(server: Server, object_id: ua.NodeId, handlers: Mapping[int, Handler]) -> Callable[[], None]:
    """Answer calls of the standard type methods ``handlers`` (ns=0 ids) on ``object_id``; returns a
    function that stops serving them (call it before the object is deleted)."""
    by_method = _served.setdefault(server, {})
    keys = []
    for number, handler in handlers.items():
        method_id = node_id(number)
        if method_id not in by_method:
            by_method[method_id] = {}
            server.link_method(server.get_node(method_id), _dispatcher(server, by_method[method_id]))
        by_method[method_id][object_id] = handler
        keys.append(method_id)

    def stop() -> None:
        for method_id in keys:
            by_method[method_id].pop(object_id, None)

    return stop


def _dispatcher(server: Server, objects: dict[ua.NodeId, Handler]) -> Handler:
    async def dispatch(parent: ua.NodeId, *args: Any) -> Any:
        handler = objects.get(parent)
        if handler is not None:
            return await handler(parent, *args)
        if server.iserver.aspace.get(parent) is None:
            return _status(ua.StatusCodes.BadNodeIdUnknown)
        # The object exists but is no file or transfer object we serve: the method is not its method.
        return _status(ua.StatusCodes.BadMethodInvalid)

    return dispatch


def _status(code: int) -> ua.StatusCode:
    return ua.StatusCode(ua.UInt32(code))


def bound_to(object_id: ua.NodeId, handler: Handler) -> Handler:
    """``handler`` for an instance's own method node: calls naming another object answer BadMethodInvalid."""

    @functools.wraps(handler)  # keeps what the handler needs (users.required_role)
    async def call(parent: ua.NodeId, *args: Any) -> Any:
        if parent != object_id:
            return _status(ua.StatusCodes.BadMethodInvalid)
        return await handler(parent, *args)

    return call
