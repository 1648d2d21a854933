"""Binding method handlers to method nodes, with the call checked against the node's InputArguments.

asyncua hands a Call's input arguments to the handler as they came: too many, too
few or of the wrong type. OPC 10000-4 5.11.2 (Call, tables 67 and 68) has the
server refuse such a call before the method runs:

- more arguments than declared: operation result Bad_TooManyArguments;
- fewer (some declared argument not given): Bad_ArgumentsMissing;
- an argument whose DataType or ValueRank differs from its declaration: operation
  result Bad_InvalidArgument, and in inputArgumentResults Bad_TypeMismatch for that
  argument and Good for the others.

``bind_method`` reads the method's InputArguments once, when it binds, and wraps
the handler so every call is checked first; handlers then receive exactly the
declared number of Variants, each of its declared type (or a null Variant where
the declaration allows null: strings, byte strings and arrays).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from asyncua import Node, Server, ua
from asyncua.common.ua_utils import get_base_data_type

from sdk.opcua.ids import status_code

_log = logging.getLogger(__name__)

Handler = Callable[..., Awaitable[Any]]

_SIGNED = frozenset({ua.VariantType.SByte, ua.VariantType.Int16, ua.VariantType.Int32, ua.VariantType.Int64})
_UNSIGNED = frozenset({ua.VariantType.Byte, ua.VariantType.UInt16, ua.VariantType.UInt32, ua.VariantType.UInt64})
_NUMBERS = _SIGNED | _UNSIGNED | {ua.VariantType.Float, ua.VariantType.Double}
_ANY = frozenset(ua.VariantType) - {ua.VariantType.Null}
# The abstract base DataTypes (OPC 10000-3 8.1, 10000-5 12.2) and the Variant types that carry their values.
_ABSTRACT: dict[int, frozenset[ua.VariantType]] = {
    ua.ObjectIds.BaseDataType: _ANY,
    ua.ObjectIds.Number: _NUMBERS,
    ua.ObjectIds.Integer: _SIGNED | _UNSIGNED,
    ua.ObjectIds.UInteger: _UNSIGNED,
    ua.ObjectIds.Enumeration: frozenset({ua.VariantType.Int32}),
    ua.ObjectIds.Structure: frozenset({ua.VariantType.ExtensionObject}),
}
# Types whose null value is an ordinary value of the type (a null String, a null ByteString).
_NULLABLE = frozenset({ua.VariantType.String, ua.VariantType.ByteString, ua.VariantType.XmlElement})


@dataclass(frozen=True)
class ArgumentSpec:
    """One declared input argument: its name, the Variant types that carry it, and its ValueRank."""

    name: str
    kinds: frozenset[ua.VariantType]
    value_rank: int

    @property
    def scalar(self) -> bool:
        """ValueRank Scalar (-1): the value must not be an array."""
        return self.value_rank == ua.ValueRank.Scalar

    @property
    def array(self) -> bool:
        """ValueRank OneDimension, OneOrMoreDimensions or n: the value must be an array."""
        return self.value_rank >= ua.ValueRank.OneOrMoreDimensions

    def accepts(self, value: Any) -> bool:
        """Whether ``value`` (a Variant as decoded) has this argument's DataType and ValueRank."""
        if not isinstance(value, ua.Variant):
            return False
        if value.VariantType == ua.VariantType.Null:
            # A null Variant is the null value of a string, a byte string or an array, nothing else.
            return not self.scalar or bool(self.kinds & _NULLABLE)
        if self.scalar and value.is_array or self.array and not value.is_array:
            return False
        return value.VariantType in self.kinds

    def describe(self) -> str:
        """How the argument is declared, for messages."""
        kinds = "/".join(sorted(k.name for k in self.kinds)) if self.kinds != _ANY else "any type"
        return f"{kinds}{'[]' if self.array else ''}"


async def _kinds(method: Node, data_type: ua.NodeId) -> frozenset[ua.VariantType]:
    base = (await get_base_data_type(Node(method.session, data_type))).nodeid
    number = base.Identifier if isinstance(base.Identifier, int) else 0
    if number in _ABSTRACT:
        return _ABSTRACT[number]
    return frozenset({ua.VariantType(number)})


async def read_signature(method: Node) -> list[ArgumentSpec]:
    """The method's InputArguments property as ArgumentSpecs; a method without the property takes none.

    Works on a server's node and on a client's alike (DataTypes are resolved to their
    built-in base type by browsing, OPC 10000-3 5.8.3).
    """
    try:
        prop = await method.get_child("0:InputArguments")
    except ua.UaStatusCodeError:
        return []
    arguments: list[ua.Argument] = await prop.read_value() or []
    return [ArgumentSpec(a.Name, await _kinds(method, a.DataType), a.ValueRank) for a in arguments]


def check_call(signature: list[ArgumentSpec], args: tuple[Any, ...]) -> ua.CallMethodResult | None:
    """None when ``args`` match ``signature``; otherwise the refusal OPC 10000-4 5.11.2 prescribes."""
    if len(args) > len(signature):
        return ua.CallMethodResult(StatusCode=status_code(ua.StatusCodes.BadTooManyArguments))
    if len(args) < len(signature):
        return ua.CallMethodResult(StatusCode=status_code(ua.StatusCodes.BadArgumentsMissing))
    results = [
        status_code(ua.StatusCodes.Good if spec.accepts(value) else ua.StatusCodes.BadTypeMismatch)
        for spec, value in zip(signature, args, strict=True)
    ]
    if all(r.is_good() for r in results):
        return None
    return ua.CallMethodResult(StatusCode=status_code(ua.StatusCodes.BadInvalidArgument), InputArgumentResults=results)


def _mismatches(signature: list[ArgumentSpec], refusal: ua.CallMethodResult) -> str:
    return ", ".join(
        f"{spec.name} must be {spec.describe()}"
        for spec, result in zip(signature, refusal.InputArgumentResults, strict=False)
        if not result.is_good()
    )


async def bind_method(server: Server, method: Node, handler: Handler) -> list[ArgumentSpec]:
    """Link ``handler`` to ``method``; calls whose arguments do not match InputArguments never reach it."""
    signature = await read_signature(method)
    name = getattr(handler, "__name__", "method")

    @functools.wraps(handler)  # keeps what the handler needs (users.required_role)
    async def checked(parent: ua.NodeId, *args: Any) -> Any:
        refusal = check_call(signature, args)
        if refusal is None:
            return await handler(parent, *args)
        _log.info(
            "%s refused: %s (%d arguments given, %d declared) %s",
            name,
            refusal.StatusCode.name,
            len(args),
            len(signature),
            _mismatches(signature, refusal),
        )
        return refusal

    server.link_method(method, checked)
    return signature
