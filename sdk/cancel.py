"""Stopping long-running loops reliably on Python 3.11."""

from __future__ import annotations

import asyncio


def honour_cancel() -> None:
    """Raise CancelledError when the running task has been asked to stop.

    On Python 3.11 ``asyncio.wait_for`` can return a result and drop a cancellation that arrived
    at the same moment (CPython gh-86296, fixed in 3.12); a ``while True`` loop around it then never
    stops, and neither does the service that waits for it. Such loops call this after each wait.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
