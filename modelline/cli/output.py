"""How commands talk to a person or a script: tables and messages, or JSON; progress on stderr."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

from sdk.sources.s3 import Progress as ProgressCallback


class Output:
    """Results go to stdout (a table, or JSON with --json); progress and notes go to stderr."""

    def __init__(self, as_json: bool = False, quiet: bool = False) -> None:
        self.as_json = as_json
        self.quiet = quiet
        self.out = Console(highlight=False)
        if not self.out.is_terminal:  # piped to a file or a script: do not cut hashes at 80 columns
            self.out = Console(highlight=False, width=160)
        self.err = Console(stderr=True, highlight=False)

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
