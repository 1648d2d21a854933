"""One translation of ModelLine errors into OPC UA method results."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec

from asyncua import ua

from sdk.errors import ModelLineError

_log = logging.getLogger(__name__)
P = ParamSpec("P")


class StatusError(ModelLineError):
    """A method refusal with a specific StatusCode (for codes that have no ModelLineError subclass)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.code = status


def status_of(exc: ModelLineError) -> int:
    """The StatusCode value an error maps to."""
    return exc.code if isinstance(exc, StatusError) else exc.status


def status_on_error(func: Callable[P, Awaitable[Any]]) -> Callable[P, Awaitable[Any]]:
    """Return the error's StatusCode instead of raising (asyncua would send BadUnexpectedError)."""

    @functools.wraps(func)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
        try:
            return await func(*args, **kwargs)
        except ModelLineError as exc:
            code = status_of(exc)
            _log.info("%s refused: %s (%s)", func.__name__, exc, ua.StatusCode(ua.UInt32(code)).name)
            return ua.StatusCode(ua.UInt32(code))

    return wrapper


def arg(
    args: tuple[Any, ...], index: int, kinds: tuple[ua.VariantType, ...], name: str, *, optional: bool = False
) -> Any:
    """The value of input argument ``index``, checked against the allowed Variant types.

    asyncua does not check method arguments against InputArguments: a missing or
    wrongly typed one reaches the handler. Methods bound with ``sdk.opcua.methods.bind_method``
    are checked before their handler runs; this is for handlers linked directly.
    """
    if index >= len(args):
        if optional:
            return None
        raise StatusError(ua.StatusCodes.BadArgumentsMissing, f"argument {name} is missing")
    value = args[index]
    if not isinstance(value, ua.Variant):
        return value
    if value.VariantType == ua.VariantType.Null and optional:
        return None
    if value.VariantType not in kinds or value.is_array:
        raise StatusError(
            ua.StatusCodes.BadTypeMismatch,
            f"argument {name} must be {' or '.join(k.name for k in kinds)}, not {value.VariantType.name}",
        )
    return value.Value


def expect_args(args: tuple[Any, ...], names: tuple[str, ...]) -> None:
    """Refuse a call whose argument count differs from the method's declared InputArguments ``names``.

    OPC 10000-4 5.11.2 (Call): too many arguments answer Bad_TooManyArguments, too few
    Bad_ArgumentsMissing; asyncua passes whatever the client sent.
    """
    if len(args) > len(names):
        expected = f"{len(names)} expected ({', '.join(names)})" if names else "none expected"
        raise StatusError(ua.StatusCodes.BadTooManyArguments, f"{len(args)} arguments given, {expected}")
    if len(args) < len(names):
        raise StatusError(ua.StatusCodes.BadArgumentsMissing, f"argument {names[len(args)]} is missing")
