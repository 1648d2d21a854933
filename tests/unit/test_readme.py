"""What the README says against what the code does, where that needs no running servers.

The guides themselves are run command by command in tests/e2e/test_readme_guides.py.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import re
import tomllib
from pathlib import Path

import pytest
from asyncua import ua

from edge_node.runtime import quality
from modelline.cli.main import EXIT_INTERNAL, EXIT_INTERRUPTED, build_parser
from sdk.binding import Binding
from sdk.errors import EXIT_CODES, ModelLineError
from sdk.examples import example_dir
from tests import readme

ROOT = Path(__file__).resolve().parents[2]


def _all_subclasses(cls: type) -> set[type]:
    found = set(cls.__subclasses__())
    return found.union(*(_all_subclasses(c) for c in found)) if found else found


def test_exit_codes_are_the_ones_the_readme_lists() -> None:
    assert readme.exit_codes() == EXIT_CODES
    for package in ("sdk", "edge_node", "gateway"):  # import every module so that every error class exists
        for module in pkgutil.walk_packages([str(ROOT / package)], f"{package}."):
            importlib.import_module(module.name)
    errors = _all_subclasses(ModelLineError) | {ModelLineError}
    assert len(errors) > 15
    undocumented = {e.__name__: e.exit_code for e in errors if e.exit_code not in EXIT_CODES}
    assert undocumented == {}
    assert {EXIT_INTERNAL, EXIT_INTERRUPTED} <= EXIT_CODES.keys()


def _subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser | None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found = action.choices.get(name)
            return found if isinstance(found, argparse.ArgumentParser) else None
    return None


def _options(parser: argparse.ArgumentParser) -> set[str]:
    return {option for action in parser._actions for option in action.option_strings}


@pytest.mark.parametrize("span", readme.inline_commands())
def test_commands_named_in_the_text_exist_with_their_options(span: str) -> None:
    parser = build_parser()
    words = span.split()[1:]
    while words and (sub := _subparser(parser, words[0])) is not None:
        parser, words = sub, words[1:]
    assert parser.prog != "modelline", f"README names an unknown command: {span}"
    unknown = [w for w in words if w.startswith("--") and w not in _options(parser)]
    assert unknown == [], f"{span}: {parser.prog} has no {unknown}"


@pytest.mark.parametrize("command", readme.commands(), ids=lambda c: c.text[10:60])
def test_guide_commands_parse(command: readme.Command) -> None:
    args = build_parser().parse_args(command.argv)
    assert callable(args.handler)


def test_every_quoted_message_is_compared_with_real_output_by_some_test() -> None:
    call = re.compile(r'assert_documented\(\s*[^,()]+(?:\([^()]*\))?[^,()]*,\s*"((?:[^"\\]|\\.)*)"\s*\)')
    keys = {key for path in (ROOT / "tests").rglob("*.py") for key in call.findall(path.read_text(encoding="utf-8"))}
    checked = {readme.documented(key).pattern for key in keys}
    unchecked = [m for m in readme.messages() if readme.pattern(m).pattern not in checked]
    assert unchecked == []


def test_binding_example_is_a_valid_binding_and_matches_the_shipped_file(tmp_path: Path) -> None:
    (block,) = readme.blocks("Bind model inputs", "toml")
    shown = tomllib.loads(block)
    shipped = tomllib.loads((example_dir() / "binding.toml").read_text(encoding="utf-8"))
    assert (
        shown["trigger"] == shipped["trigger"] and shown["publishing_interval_ms"] == shipped["publishing_interval_ms"]
    )
    assert shown["inputs"].items() <= shipped["inputs"].items()
    (tmp_path / "binding.toml").write_text(block, encoding="utf-8")
    Binding.load(tmp_path / "binding.toml")


def test_prediction_status_codes_are_the_ones_the_edge_node_sets() -> None:
    named = [re.search(r"\b(Good|Uncertain_\w+|Bad_\w+)", row[0]) for row in readme.table("Read predictions")]
    codes = {m[1] for m in named if m}
    assert len(codes) >= 7
    source = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "edge_node").rglob("*.py"))
    used = {getattr(ua.StatusCodes, name) for name in re.findall(r"StatusCodes\.(\w+)", source)}
    used |= {value for name, value in vars(quality).items() if name.startswith(("BAD_", "UNCERTAIN_"))}
    for code in codes - {"Good", "Bad_SensorFailure"}:  # Bad_SensorFailure is the README's example of a PLC's own code
        value = getattr(ua.StatusCodes, code.replace("_", ""), None)
        assert value is not None, f"{code} is not an OPC UA StatusCode"
        assert value in used, f"the README lists {code}, which the edge node never sets"


def test_quick_start_keeps_its_two_commands_and_puts_modelline_on_the_path() -> None:
    quick = readme.text().split("## Quick start", 1)[1].split("\n## ", 1)[0]
    lines = [
        line for block in re.findall(r"^```bash\n(.*?)^```", quick, flags=re.M | re.S) for line in block.splitlines()
    ]
    assert len([line for line in lines if line and not line.startswith("#")]) == 2
    assert "source .venv/bin/activate" in quick.rsplit("```", 1)[1]  # said after the two commands


@pytest.mark.parametrize(
    "path",
    ["keys/signing.key", "keys/signing.pub", "pump-health-1.0.0.mlpkg", "pump-health.mlpkg", "sig.bin", "demo-data/x"],
)
def test_what_the_guides_write_in_the_clone_is_ignored_by_git(path: str) -> None:
    import subprocess

    done = subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT, check=False, timeout=30)
    assert done.returncode == 0, f"{path} would show up as untracked (add it to .gitignore)"


def test_ci_runs_the_readme_test_command() -> None:
    """.ci/run's last line is the README quick start's second command, word for word."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    quick_start = text.split("```bash", 1)[1].split("```", 1)[0]
    commands = [line for line in quick_start.splitlines() if line and not line.startswith("#")]
    assert len(commands) == 2, commands
    ci = [line for line in (ROOT / ".ci/run").read_text().splitlines() if line and not line.startswith("#")]
    assert ci[-1] == commands[1]
    assert "-m pytest" in commands[1] and "-m bench --quick" in commands[1]
