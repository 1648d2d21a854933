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


class ServerProcess:
    """A `modelline gateway` or `modelline edge` process, its output in a log file, killed for real on demand."""

    def __init__(self, name: str, argv: list[str], log: Path, env: dict[str, str]) -> None:
        self.name = name
        self.argv = argv
        self.log = log
        self.env = env
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def running(self) -> bool:
        """Started and not yet ended."""
        return self.proc is not None and self.proc.returncode is None

    async def start(self, url: str, within: float = 90) -> None:
        """Start (again, on the same settings and data) and wait until it answers at ``url``."""
        from asyncua import Client, ua  # only these tests need a client here

        from tests.edge_harness import wait_for
        from tests.tls import seed_process

        seed_process(self.argv, self.env)  # its data folder trusts the test CA (tests/tls.py)

        assert not self.running, f"{self.name} runs already"
        with self.log.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                MODELLINE, *self.argv, env=self.env, stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log
            )

        async def up() -> bool:
            assert self.running, f"{self.name} exited with {self.proc and self.proc.returncode}: {self.tail()}"
            try:
                await Client(url, timeout=2).connect_and_get_server_endpoints()  # listening; no session needed
            except (OSError, TimeoutError, ua.UaError):
                return False
            return True

        await wait_for(up, timeout=within, what=f"{self.name} to listen at {url}")

    async def kill(self) -> None:
        """SIGKILL: no clean-up of any kind, as a power cut or the OOM killer."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
        if self.proc is not None:
            await self.proc.wait()

    async def stop(self) -> int | None:
        """SIGTERM, then SIGKILL if it has not ended within 30 s; its exit code (None if killed)."""
        if self.proc is None or self.proc.returncode is not None:
            return self.proc.returncode if self.proc else None
        self.proc.terminate()
        try:
            return await asyncio.wait_for(self.proc.wait(), 30)
        except TimeoutError:
            await self.kill()
            return None

    def tail(self, chars: int = 3000) -> str:
        """The end of its log."""
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""
