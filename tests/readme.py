"""The README as test data: its guide commands, its tables of messages, its exit codes.

Tests take what the README shows from here, so that a guide, a quoted message or an exit
code that no longer matches the code fails a test instead of misleading a user.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from functools import cache
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
GUIDES = "## Guides"
ELLIPSIS = "…"


@dataclass(frozen=True)
class Command:
    """One command line of a guide's bash block (continuations joined, comment dropped)."""

    section: str
    text: str

    @property
    def argv(self) -> list[str]:
        """The arguments after `modelline`."""
        tokens = shlex.split(self.text, comments=True)
        assert tokens[0] == "modelline", self.text
        return tokens[1:]


@cache
def text() -> str:
    """The README."""
    return README.read_text(encoding="utf-8")


@cache
def sections() -> dict[str, str]:
    """Each `### ` section of the guides by its title."""
    guides = text().split(f"\n{GUIDES}\n", 1)[1].split("\n## ", 1)[0]
    parts = re.split(r"^### (.+)$", guides, flags=re.M)
    return {title.strip(): body for title, body in zip(parts[1::2], parts[2::2], strict=True)}


def section(title: str) -> str:
    """The body of the guide whose title starts with ``title``."""
    matches = [body for name, body in sections().items() if name.startswith(title)]
    assert len(matches) == 1, f"README has {len(matches)} guides titled {title!r}"
    return matches[0]


def _blocks(body: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", body, flags=re.M | re.S)


def commands() -> list[Command]:
    """Every `modelline` command in the guides' bash blocks, in README order."""
    found = []
    for title, body in sections().items():
        for block in _blocks(body, "bash"):
            for line in re.sub(r"\\\n\s*", "", block).splitlines():
                tokens = shlex.split(line, comments=True)
                if tokens and tokens[0] == "modelline":
                    found.append(Command(title, shlex.join(tokens)))
    return found


def command(title: str, *starts: str) -> Command:
    """The one command of guide ``title`` whose arguments start with ``starts``."""
    matches = [c for c in commands() if c.section.startswith(title) and c.argv[: len(starts)] == list(starts)]
    assert len(matches) == 1, f"README guide {title!r} shows {len(matches)} commands starting {starts}"
    return matches[0]


def blocks(title: str, language: str) -> list[str]:
    """The code blocks of one language in guide ``title``."""
    return _blocks(section(title), language)


def inline_commands() -> list[str]:
    """`modelline …` code spans in the running text of the whole README."""
    prose = re.sub(r"^```.*?^```", "", text(), flags=re.M | re.S)
    return [span for span in re.findall(r"`(modelline [^`]+)`", prose)]


def table(title: str) -> list[list[str]]:
    """The rows (cells without backticks) of the first table in guide ``title``, header left out."""
    rows = [line for line in section(title).splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in row.strip("|").split(" | ")] for row in rows[2:]]


def messages() -> list[str]:
    """Every example message quoted in the verification and troubleshooting tables."""
    quoted = [row[1] for row in table("Look inside a package")] + [row[0] for row in table("Troubleshooting")]
    return [span for cell in quoted for span in re.findall(r"`([^`]+)`", cell)[-1:] if " " in span]


def pattern(message: str) -> re.Pattern[str]:
    """A regular expression for a quoted message: each `…` stands for text that varies."""
    return re.compile(".+?".join(re.escape(part) for part in message.split(ELLIPSIS)))


def documented(key: str) -> re.Pattern[str]:
    """The pattern of the one quoted message that contains ``key``."""
    matches = [m for m in messages() if m == key] or [m for m in messages() if key in m]
    assert len(matches) == 1, f"{len(matches)} README messages contain {key!r}: {matches}"
    return pattern(matches[0])


def assert_documented(output: str, key: str) -> None:
    """``output`` says what the README quotes for the message containing ``key``."""
    expected = documented(key)
    assert expected.search(output), f"README quotes {expected.pattern!r}, the code said: {output.strip()[-600:]}"


def exit_codes() -> dict[int, str]:
    """The exit codes as the README lists them."""
    body = section("Exit codes and errors")
    listed = re.search(r"^0 ok · .*?\.$", body, flags=re.M | re.S)
    assert listed, "README lists no exit codes"
    pairs = (item.split(" ", 1) for item in listed.group(0).rstrip(".").replace("\n", " ").split(" · "))
    return {int(code): meaning for code, meaning in pairs}
