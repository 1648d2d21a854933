"""The one reconnect loop: waits grow while a peer stays away and start over once a session got connected."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from sdk.reconnect import reconnecting


async def test_backoff_grows_while_down_and_starts_over_after_a_connected_session(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # 3 refused tries, then a session that connects and is lost, then 2 refused tries, then done.
    script = ["refused", "refused", "refused", "lost", "refused", "refused", "done"]
    downs: list[str] = []

    async def session(connected: Callable[[], None]) -> None:
        step = script.pop(0)
        if step == "done":
            return
        if step == "lost":
            connected()
            raise ConnectionError("connection lost")
        raise OSError("connection refused")

    async def down(reason: str) -> None:
        downs.append(reason)

    with caplog.at_level(logging.DEBUG, logger="sdk.reconnect"):
        await reconnecting("plc", session, (0.001, 0.004), on_down=down)
    delays = [float(r.args[2]) for r in caplog.records]  # type: ignore[index]
    assert delays == [0.001, 0.002, 0.004, 0.001, 0.002, 0.004]
    # Each outage and each new reason is one WARNING; the same reason again is only DEBUG.
    levels = [r.levelname for r in caplog.records]
    assert levels == ["WARNING", "DEBUG", "DEBUG", "WARNING", "WARNING", "DEBUG"]
    assert downs[0] == "OSError: connection refused" and downs[3] == "ConnectionError: connection lost"
    assert script == []
