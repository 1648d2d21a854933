"""The house rules that tools can check: ruff's lint set and strict mypy on the product code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PRODUCT = ["nodesets", "sdk", "edge_node", "gateway", "modelline"]


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *argv], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
    )


def test_ruff_lint_is_clean() -> None:
    done = _run("ruff", "check", *PRODUCT, "tests", "examples", "bench")
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.slow
def test_mypy_strict_is_clean() -> None:
    done = _run("mypy", *PRODUCT)
    assert done.returncode == 0, done.stdout + done.stderr
