"""Watch one prediction as a SCADA client would: subscribed over OPC UA, every update with its status.

The demo uses it to show that an upgrade and a rollback leave no gap: between the start of the
upgrade and the end of the rollback it counts the updates, the ones that were not Good, and the
longest time between two updates (SourceTimestamp to SourceTimestamp is the line's own cadence;
we measure arrival times at the client, which is what an HMI sees).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from asyncua import Client, ua


@dataclass
class Continuity:
    """What a subscriber saw during a window."""

    updates: int = 0
    not_good: dict[str, int] = field(default_factory=dict)
    longest_gap_s: float = 0.0

    def describe(self) -> str:
        """One line for the summary."""
        bad = ", ".join(f"{n} {name}" for name, n in self.not_good.items()) or "none"
        return f"{self.updates} prediction updates, not Good: {bad}, longest gap {self.longest_gap_s:.2f} s"


class PredictionWatch:
    """A subscription to one output variable; ``window()`` starts counting, ``result()`` ends it."""

    def __init__(self, client: Client, node_id: ua.NodeId, publishing_interval_ms: int = 50) -> None:
        self._client = client
        self._node_id = node_id
        self._interval = publishing_interval_ms
        self._subscription: Any = None
        self._window: Continuity | None = None
        self._last: float | None = None

    async def start(self) -> PredictionWatch:
        """Subscribe (the first notification is the current value)."""
        self._subscription = await self._client.create_subscription(self._interval, self)
        await self._subscription.subscribe_data_change(self._client.get_node(self._node_id))
        return self

    async def stop(self) -> None:
        """Unsubscribe."""
        if self._subscription is not None:
            await self._subscription.delete()
            self._subscription = None

    def window(self) -> None:
        """Start counting from now."""
        self._window, self._last = Continuity(), time.monotonic()

    def result(self) -> Continuity | None:
        """What was seen since ``window()`` (the time since the last update counts as a gap too); stops counting."""
        window, self._window = self._window, None
        if window is not None and self._last is not None:
            window.longest_gap_s = max(window.longest_gap_s, time.monotonic() - self._last)
        return window

    def datachange_notification(self, node: Any, value: Any, data: Any) -> None:
        """asyncua subscription handler: one update of the watched prediction."""
        window = self._window
        if window is None or self._last is None:
            return
        now = time.monotonic()
        window.longest_gap_s = max(window.longest_gap_s, now - self._last)
        self._last = now
        window.updates += 1
        status = data.monitored_item.Value.StatusCode
        if not status.is_good():
            window.not_good[status.name] = window.not_good.get(status.name, 0) + 1
