"""The base of the enumerations generated into ``nodesets/ids.py``: an integer with the NodeSet's own name.

Each member is the integer a client reads (an enumeration's value, or a state's StateNumber) and
carries the name the NodeSet gives it (``label``: what EnumStrings, a state's BrowseName or the
store show) and, for states of a DI state machine, the numeric NodeId of the state object (``node``).
"""

from __future__ import annotations

from enum import IntEnum
from typing import Self


class NodeSetEnum(IntEnum):
    """An enumeration declared in a NodeSet."""

    label: str
    node: int

    def __new__(cls, value: int, label: str = "", node: int = 0) -> Self:  # noqa: D102 - the Enum member factory
        member = int.__new__(cls, value)
        member._value_ = value
        member.label = label
        member.node = node
        return member

    @classmethod
    def from_label(cls, label: str) -> Self:
        """The member the NodeSet calls ``label``; ValueError for any other text."""
        for member in cls:
            if member.label == label:
                return member
        raise ValueError(f"{label!r} is not a {cls.__name__} ({', '.join(m.label for m in cls)})")
