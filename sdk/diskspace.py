"""Free disk space, looked at before work that fills a disk (a package transfer, an install).

The one function that asks the operating system is injectable (``FreeSpace``), so
that tests can show a full disk without filling one.
"""

from __future__ import annotations

import asyncio
import errno
import shutil
from collections.abc import Callable
from pathlib import Path

from sdk.errors import DiskFull

FreeSpace = Callable[[Path], int]
"""Free bytes on the filesystem that holds a folder (blocking: called in a worker thread)."""

DEFAULT_RESERVE_BYTES = 64 << 20


def free_bytes(folder: Path) -> int:
    """Bytes an unprivileged process may still write on the filesystem of ``folder``."""
    return shutil.disk_usage(folder).free


def megabytes(size: int) -> str:
    """A size for a one-line message: '30 MB', '2.5 MB', '12 kB' (decimal units, as disk tools show them)."""
    value = size / 1_000_000
    if value < 1:
        return f"{size / 1000:.0f} kB"
    return f"{value:.1f} MB" if value < 10 else f"{value:.0f} MB"


async def ensure_free(folder: Path, needed: int, free_space: FreeSpace = free_bytes, *, reclaimable: int = 0) -> None:
    """Raise DiskFull ("needs 30 MB, 12 MB free") unless ``needed`` bytes fit in ``folder``.

    ``reclaimable`` is what the work that asks already holds there (a partly written file): it
    counts as free, because a refusal releases it.
    """
    free = await asyncio.to_thread(free_space, folder) + reclaimable
    if free < needed:
        raise DiskFull(f"needs {megabytes(needed)}, {megabytes(free)} free")


def is_disk_full(exc: BaseException) -> bool:
    """Whether an error is the filesystem refusing to grow (no space, or over a quota)."""
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)
