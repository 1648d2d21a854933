"""One process per data folder: an ``flock`` on ``<data_dir>/<name>.lock`` held while the process runs.

The kernel releases the lock when its holder exits in any way (SIGKILL included), so a lock file
left behind never blocks a start; a second process on the same folder (two edge nodes on one
slot state, or a restore under a running gateway) is refused with one line naming the holder.

The folder holds model packages (the plant's intellectual property), databases, logins' audit and
the server's private key: it is the service user's alone (mode 0700, tightened with a warning when
found open to others), so that what is inside is private whatever each file's own mode is.
"""

from __future__ import annotations

import fcntl
import logging
import os
import stat
from pathlib import Path
from typing import IO

from sdk.errors import InvalidState

_log = logging.getLogger(__name__)


def lock_data_dir(data_dir: Path, lock_name: str, holder_kind: str, purpose: str) -> IO[str]:
    """Take ``<data_dir>/<lock_name>`` (held until the returned file is closed); refuse if another process holds it."""
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    _make_private(data_dir)
    handle = (data_dir / lock_name).open("a+", encoding="utf-8")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise InvalidState(
            f"{holder_kind} is running on data folder {data_dir} ({holder} holds {data_dir / lock_name}): "
            f"stop it before {purpose}"
        ) from None
    except BaseException:
        handle.close()
        raise
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()}\n")
    handle.flush()
    return handle


def _make_private(folder: Path) -> None:
    """Mode 0700 for ``folder``: nobody but its owner may list or open what it holds."""
    mode = stat.S_IMODE(folder.stat().st_mode)
    if mode & 0o077:
        _log.warning("data folder %s was open to other users (mode %04o): made private (0700)", folder, mode)
        folder.chmod(0o700)
