"""How commands talk to a person or a script: tables and messages, or JSON; progress on stderr."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cached_property
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # rich loads when something is printed, not when the command line is parsed
    from rich.console import Console

ProgressCallback = Callable[[int, int | None], None]
"""Called with (bytes so far, total bytes or None)."""


class Output:
    """Results go to stdout (a table, or JSON with --json); progress and notes go to stderr."""

    def __init__(self, as_json: bool = False, quiet: bool = False) -> None:
        self.as_json = as_json
        self.quiet = quiet

    @cached_property
    def out(self) -> Console:
        """stdout."""
        from rich.console import Console

        out = Console(highlight=False)
        if not out.is_terminal:  # piped to a file or a script: do not cut hashes at 80 columns
            out = Console(highlight=False, width=160)
        return out

    @cached_property
    def err(self) -> Console:
        """stderr."""
        from rich.console import Console

        return Console(stderr=True, highlight=False)

    def result(self, data: dict[str, Any], human: Any = None) -> None:
        """Print the command's result: ``data`` as JSON, or ``human`` (text or a rich renderable)."""
        if self.as_json:
            sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
        elif human is not None:
            self.out.print(human)

    def note(self, message: str) -> None:
        """A progress note for a person; silent with --json or --quiet."""
        if not (self.as_json or self.quiet):
            self.err.print(message)

    @contextmanager
    def transfer(self, label: str) -> Iterator[ProgressCallback]:
        """A byte progress bar on stderr (shown only on a terminal, never with --json/--quiet)."""
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        show = self.err.is_terminal and not (self.as_json or self.quiet)
        progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=self.err,
            transient=True,
            disable=not show,
        )
        task = progress.add_task(label, total=None)

        def update(done: int, total: int | None) -> None:
            progress.update(task, completed=done, total=total)

        with progress:
            yield update

    @contextmanager
    def counting(self, label: str, total: int | None) -> Iterator[Callable[[int], None]]:
        """A count progress bar on stderr (items done of ``total``), shown only on a terminal, never with
        --json/--quiet; the callback may be called from a worker thread."""
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        show = self.err.is_terminal and not (self.as_json or self.quiet)
        progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=self.err,
            transient=True,
            disable=not show,
        )
        task = progress.add_task(label, total=total)

        def update(done: int) -> None:
            progress.update(task, completed=done)

        with progress:
            yield update
