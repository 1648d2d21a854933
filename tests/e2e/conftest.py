"""Fixtures of the end-to-end tests: moto in server mode for S3 and SageMaker."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.aws_harness import AWS_VARIABLES_TO_CLEAR, offline_aws_env, reset_moto, start_moto


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    server, url = start_moto()
    try:
        yield url
    finally:
        server.stop()


@pytest.fixture
def aws(moto_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """Fresh moto state and test credentials that reach nothing but the moto server."""
    reset_moto(moto_url)
    for name in AWS_VARIABLES_TO_CLEAR:
        monkeypatch.delenv(name, raising=False)
    for name, value in offline_aws_env(str(tmp_path)).items():
        monkeypatch.setenv(name, value)
    return moto_url
