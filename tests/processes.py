"""The installed `modelline` command, run as a process the way a user or a script runs it."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

MODELLINE = str(Path(sys.executable).parent / "modelline")


async def run_modelline(*argv: str, timeout: float = 120) -> tuple[int, str, str]:
    """Run `modelline ARGV...`; its exit code, stdout and stderr."""
    proc = await asyncio.create_subprocess_exec(
        MODELLINE, *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    return proc.returncode or 0, out.decode(), err.decode()
