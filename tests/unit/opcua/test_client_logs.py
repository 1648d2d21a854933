"""A lost link is one WARNING line in the logs, not an asyncua traceback at ERROR."""

from __future__ import annotations

import logging

import pytest
from asyncua import ua

from sdk.opcua.client import quiet_lost_links


def _log_crash(exc: BaseException) -> None:
    """As asyncua's publish loop logs a failed iteration (logger.exception inside its except block)."""
    logger = logging.getLogger("asyncua.client.ua_session.UaSession")
    logger.error("Publish iteration crashed; retrying in 1s", exc_info=(type(exc), exc, exc.__traceback__))


@pytest.mark.parametrize(
    "exc",
    [ConnectionResetError("peer reset"), ua.UaStatusCodeError(ua.StatusCodes.BadConnectionClosed), TimeoutError()],
)
def test_a_lost_link_is_one_warning_line(caplog: pytest.LogCaptureFixture, exc: BaseException) -> None:
    quiet_lost_links()
    with caplog.at_level(logging.DEBUG, logger="asyncua"):
        _log_crash(exc)
    [record] = caplog.records
    assert record.levelno == logging.WARNING and record.exc_info is None
    assert record.getMessage().startswith(f"Publish iteration crashed; retrying in 1s: {type(exc).__name__}")
    assert "Traceback" not in caplog.text


def test_a_defect_keeps_its_traceback(caplog: pytest.LogCaptureFixture) -> None:
    quiet_lost_links()
    with caplog.at_level(logging.DEBUG, logger="asyncua"):
        _log_crash(KeyError("bug"))
    [record] = caplog.records
    assert record.levelno == logging.ERROR and record.exc_info is not None
