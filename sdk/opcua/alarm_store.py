"""What an alarm book keeps across restarts: each condition's state, written before it is announced.

OPC 10000-9 5.5.2 and 5.7 describe a condition's state (ActiveState, AckedState, ConfirmedState,
Severity, Message, the EventId of its last notification); a gateway restart must bring back an
active, unacknowledged alarm as active and unacknowledged, or an operator never sees it again.
``AlarmStore`` is the small interface the book writes through; ``JsonAlarmStore`` is the embedded
default: one JSON file, replaced in one step (write a temporary file, fsync, rename), off the loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sdk.errors import DatabaseUnusable
from sdk.opcua.values import NO_DATE

_log = logging.getLogger(__name__)


class AlarmState(BaseModel):
    """One condition's persistent state (OPC 10000-9 5.5.2 ConditionType, 5.7.2 AcknowledgeableConditionType)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    enabled: bool = True
    active: bool = False
    acked: bool = True
    confirmed: bool = True
    severity: int = Field(default=1, ge=1, le=1000)
    last_severity: int = Field(default=1, ge=1, le=1000)
    message: str = ""
    comment: str = ""
    user: str = ""
    time: datetime = NO_DATE
    event_id: str = ""
    """Hex of the EventId of the condition's last notification (what Acknowledge and Confirm must name)."""

    @property
    def retain(self) -> bool:
        """OPC 10000-9 5.5.2 Retain: the condition still matters (active, or waiting for an operator); a
        disabled condition never does (5.5.4)."""
        return self.enabled and (self.active or not self.acked or not self.confirmed)


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid")
    conditions: dict[str, AlarmState] = {}


class AlarmStore(Protocol):
    """Where an alarm book keeps condition states (a file, a table)."""

    async def load(self) -> dict[str, AlarmState]:
        """Every stored state by condition key; empty on first start."""
        ...

    async def save(self, states: Mapping[str, AlarmState]) -> None:
        """Replace the stored states; done (durably) when it returns."""
        ...


FILE_NAME = "alarms.json"


class JsonAlarmStore:
    """Condition states in one JSON file, replaced atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = asyncio.Lock()
        self.unreadable: list[str] = []
        """Keys of stored states left out by the last ``load`` ("*": the whole file)."""

    @classmethod
    def in_dir(cls, data_dir: Path) -> JsonAlarmStore:
        """The store ``<data_dir>/alarms.json``."""
        return cls(data_dir / FILE_NAME)

    async def load(self) -> dict[str, AlarmState]:
        """The stored states. A state that does not validate is left out and named in ``unreadable``; a file
        that is not JSON at all is moved aside to ``<name>.damaged``: neither stops a server from starting
        (DESIGN.md, Principles), both are logged as errors."""
        try:
            text = await asyncio.to_thread(self.path.read_text, encoding="utf-8")
        except FileNotFoundError:
            return {}
        entries = _entries(text)
        if entries is None:
            aside = self.path.with_name(self.path.name + ".damaged")
            _log.error("alarm state file %s is unreadable: moved to %s, alarms start cleared", self.path, aside)
            await asyncio.to_thread(os.replace, self.path, aside)
            self.unreadable = ["*"]
            return {}
        states: dict[str, AlarmState] = {}
        for key, entry in entries.items():
            try:
                states[key] = AlarmState.model_validate(entry)
            except ValidationError as exc:
                _log.error("alarm %r: stored state is unreadable and left out: %s", key, str(exc).splitlines()[0])
                self.unreadable.append(key)
        return states

    async def save(self, states: Mapping[str, AlarmState]) -> None:
        """Write all states to a temporary file, fsync it and rename it over the old one."""
        text = _File(conditions=dict(states)).model_dump_json(indent=1)
        async with self._lock:
            try:
                await asyncio.to_thread(_replace, self.path, text)
            except OSError as exc:
                raise DatabaseUnusable(f"alarm state file {self.path} cannot be written: {exc}") from None


def _entries(text: str) -> dict[str, object] | None:
    """The file's "conditions" object, or None when the text is not such a file."""
    try:
        entries = json.loads(text).get("conditions")
    except (ValueError, AttributeError):
        return None
    return entries if isinstance(entries, dict) else None


def _replace(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
