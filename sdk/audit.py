"""Security-relevant actions, recorded: who did what, when, from where, and how it ended.

Domain and server code call ``record(...)``; it never blocks and never raises. Who and from where
default to the caller of the client request being handled (``caller``, set by the OPC UA layer,
sdk/opcua/sessions.py), so domain code records what it did without knowing about sessions. Each process
attaches the sinks it needs with ``add_sink`` (an append-only audit file, OPC UA AuditEvents,
the gateway's store). Without a sink a record is only logged on the ``modelline.audit`` logger.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

_log = logging.getLogger("modelline.audit")

Outcome = Literal["ok", "refused", "failed"]


class AuditRecord(BaseModel):
    """One audited action; the on-disk and on-wire form of the audit trail."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    action: str = Field(description="What was attempted: login, install, confirm, revert, deploy, rollback, ...")
    outcome: Outcome
    who: str = Field("", description="User name, 'anonymous', a certificate's subject, or '' for the server itself.")
    address: str = Field("", description="The client's address (host:port), when a client acted.")
    target: str = Field("", description="What it acted on: a device, slot, model version, user, certificate...")
    detail: str = Field("", description="The reason for a refusal or failure, or what changed.")
    seq: int = Field(0, ge=0, description="Its number in the audit log that holds it (1, 2, 3...); 0 until written.")
    device: str = Field("", description="On the gateway: the edge device it was collected from ('' its own).")


MAX_FETCH = 1000  # records one FetchAuditRecords returns at most


class AuditLog(Protocol):
    """Where a process keeps its audit trail (append-only): a file on an edge node, the store on the gateway."""

    async def append(self, records: list[AuditRecord]) -> list[AuditRecord]:
        """Write records durably, numbering them; returns them with their ``seq``."""

    async def fetch(self, device: str, after: int, limit: int) -> list[AuditRecord]:
        """Records after sequence ``after``, oldest first (``device``: collected from it; '' this process's)."""

    async def newest(self) -> int:
        """The sequence of this process's newest record (0: none yet)."""


_caller: ContextVar[tuple[str, str] | None] = ContextVar("modelline_audit_caller", default=None)


def set_caller(who: str, address: str) -> Token[tuple[str, str] | None]:
    """Name the client whose request the current context handles (reset with ``reset_caller``)."""
    return _caller.set((who, address))


def caller() -> tuple[str, str] | None:
    """(who, address) of the client request being handled, or None (the server's own work)."""
    return _caller.get()


def reset_caller(token: Token[tuple[str, str] | None]) -> None:
    """Undo ``set_caller``."""
    _caller.reset(token)


def reason_of(exc: BaseException) -> str:
    """A refusal's reason with its kind: "untrusted key: signed by key ...", "signature invalid: ..."."""
    kind = re.sub(r"(?<!^)(?=[A-Z])", " ", type(exc).__name__).lower()
    return f"{kind}: {exc}"


Sink = Callable[[AuditRecord], None]
_sinks: list[Sink] = []


def add_sink(sink: Sink) -> Callable[[], None]:
    """Send every later record to ``sink`` (called on the recording thread; must not block); returns a remover."""
    _sinks.append(sink)

    def remove() -> None:
        if sink in _sinks:
            _sinks.remove(sink)

    return remove


def record(
    action: str, outcome: Outcome, *, who: str = "", address: str = "", target: str = "", detail: str = ""
) -> AuditRecord:
    """Record one action; never raises (a failing sink is logged). ``who`` and ``address`` not given are the
    current client request's caller's (``set_caller``); outside a client request the action is the server's."""
    calling = _caller.get()
    if calling is not None:
        who, address = who or calling[0], address or calling[1]
    entry = AuditRecord(action=action, outcome=outcome, who=who, address=address, target=target, detail=detail)
    _log.info(
        "%s %s by %s%s%s%s",
        action,
        outcome,
        who or "server",
        f" from {address}" if address else "",
        f" on {target}" if target else "",
        f": {detail}" if detail else "",
    )
    for sink in list(_sinks):
        try:
            sink(entry)
        except Exception:
            _log.exception("audit sink %r failed", sink)
    return entry
