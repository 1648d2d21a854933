"""node-opcua, installed from tests/interop/package-lock.json by the README's test command (npm ci)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

HERE = Path(__file__).parent


@pytest.fixture(scope="session")
def node_opcua() -> Path:
    """The interop folder, with node-opcua installed; fails (not skips) when it is missing."""
    if shutil.which("node") is None:
        pytest.fail("Node.js is not installed: the interop tests need it (see README, Development)")
    if not (HERE / "node_modules" / "node-opcua-client").is_dir():
        pytest.fail("node-opcua is not installed: run 'npm ci --prefix tests/interop' (the README test command does)")
    return HERE
