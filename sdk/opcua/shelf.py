"""A cache of asyncua's standard OPC UA address space, so that a server starts in a fraction of a second.

asyncua builds the standard address space (the nodes of OPC 10000-5) in about 2.5 s per server
start, on every start. It can keep those nodes in a shelf and load them lazily from there, but it
only finds the shelf when a file of exactly the given name (or that name plus ``.db``) exists, and
Python's portable ``dbm.dumb`` backend writes ``<name>.dat`` and ``<name>.dir``: the shelf would be
written at every start and never read. Here the shelf is built once per asyncua and Python version
in a private folder, a marker file of the expected name is added where the backend wrote none, and
the folder is renamed into place in one step, so that servers starting at the same time never see
half a shelf. The cache lives in ``$MODELLINE_CACHE_DIR``, else ``$XDG_CACHE_HOME/modelline``, else
``~/.cache/modelline``; when it cannot be written, servers simply start the slow way.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

import asyncua
from asyncua import Server

CACHE_ENV = "MODELLINE_CACHE_DIR"
NAME = "standard-address-space"

_log = logging.getLogger(__name__)


def cache_dir() -> Path:
    """Where ModelLine keeps caches that can be deleted at any time."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "modelline"


def _folder() -> Path:
    python = f"{sys.version_info[0]}.{sys.version_info[1]}"
    return cache_dir() / f"asyncua-{asyncua.__version__}-py{python}"


def new_build_folder(folder: Path) -> Path | None:
    """A private folder beside ``folder`` to build a cache in (None when the cache folder cannot be written)."""
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=".build-", dir=folder.parent))
    except OSError as exc:
        _log.info("no address space cache (%s): servers start without it", exc)
        return None


def publish(build: Path, folder: Path, name: str = NAME) -> None:
    """Rename the built cache into place in one step (a marker file ``name`` where the dbm backend wrote none)."""
    marker = build / name
    if not marker.exists() and not marker.with_suffix(".db").exists():  # dbm.dumb: <name>.dat and <name>.dir
        marker.touch()
    try:
        os.rename(build, folder)  # atomic; fails when another server published first
    except OSError:
        shutil.rmtree(build, ignore_errors=True)


def is_cached() -> bool:
    """Whether the standard address space is cached already (else the next server start builds it)."""
    return (_folder() / NAME).is_file()


async def init_server(server: Server) -> None:
    """``server.init()``, taking the standard address space from the cache (and filling the cache)."""
    folder = _folder()
    shelf = folder / NAME
    if shelf.is_file():
        try:
            await server.init(shelf_file=shelf)
        except Exception as exc:  # a damaged cache must never keep a server from starting
            _log.warning("address space cache %s unusable (%s); removed, building the address space", folder, exc)
            await asyncio.to_thread(shutil.rmtree, folder, True)
            await server.init()
        return
    build = await asyncio.to_thread(new_build_folder, folder)
    await server.init(shelf_file=build / NAME if build else None)
    if build is not None:
        await asyncio.to_thread(publish, build, folder)
