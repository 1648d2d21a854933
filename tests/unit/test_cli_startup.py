"""The command line starts at once: ``--version`` and ``--help`` import no command module and no heavy library,
and a command imports only its own module (modelline/cli/main.py, COMMANDS)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest

from modelline.cli.main import COMMANDS, build_parser

HEAVY = ("asyncua", "onnxruntime", "numpy", "boto3", "rich", "pydantic", "cryptography", "asyncio")


def _commands(parser: argparse.ArgumentParser) -> list[tuple[str, str | None]]:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return [(choice.dest, choice.help) for choice in sub._choices_actions]


def test_the_command_table_matches_what_the_modules_register() -> None:
    assert _commands(build_parser()) == [(name, help_line) for name, (_, help_line) in COMMANDS.items()]
    assert _commands(build_parser(None)) == _commands(build_parser())  # the top-level help lists the same


def _loaded_after(argv: list[str]) -> list[str]:
    code = (
        "import json, sys\n"
        "from modelline.cli.main import main\n"
        "try:\n"
        f"    main({argv!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith(('modelline.cli.', *%r)))))\n" % (HEAVY,)
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return list(json.loads(out.strip().splitlines()[-1]))


@pytest.mark.parametrize("argv", [["--version"], ["--help"]])
def test_version_and_help_import_no_command_and_no_heavy_library(argv: list[str]) -> None:
    loaded = _loaded_after(argv)
    assert [m for m in loaded if m.split(".")[0] in HEAVY] == []
    assert [m for m in loaded if m.startswith("modelline.cli.") and m.endswith("_cmd")] == []


def test_a_command_imports_its_own_module_only() -> None:
    loaded = _loaded_after(["keys", "--help"])
    assert [m for m in loaded if m.endswith("_cmd")] == ["modelline.cli.keys_cmd"]
