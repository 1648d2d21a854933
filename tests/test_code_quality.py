"""The house rules that tools can check: ruff's lint set and strict mypy on the product code."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from nodesets import ids
from nodesets.enums import NodeSetEnum

ROOT = Path(__file__).resolve().parent.parent
PRODUCT = ["nodesets", "sdk", "edge_node", "gateway", "modelline"]


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *argv], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
    )


def test_ruff_lint_is_clean() -> None:
    done = _run("ruff", "check", *PRODUCT, "tests", "examples", "bench")
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.slow
def test_mypy_strict_is_clean() -> None:
    done = _run("mypy", *PRODUCT)
    assert done.returncode == 0, done.stdout + done.stderr


# --- structure ------------------------------------------------------------------------------------
# Layers, bottom to top: a package may import its own layer's code only from itself, and any lower layer.
LAYERS = {"nodesets": 0, "sdk": 1, "edge_node": 2, "gateway": 2, "modelline": 3}
# Domain code decides and speaks no OPC UA; the opcua/ folders translate (DESIGN.md, Principles).
DOMAIN = [
    "edge_node/slots",
    "edge_node/runtime",
    "edge_node/monitor",
    "gateway/deployments",
    "gateway/devices",
    "gateway/models",
    "gateway/monitor",
    "gateway/store",
]
OPC_UA_MODULES = ("asyncua", "sdk.opcua", "sdk.di_client", "sdk.file_client")


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def _product_files() -> list[Path]:
    return [p for package in LAYERS for p in sorted((ROOT / package).rglob("*.py"))]


def test_layers_import_only_downwards() -> None:
    wrong = []
    for path in _product_files():
        package = path.relative_to(ROOT).parts[0]
        for name in _imports(path):
            target = name.split(".")[0]
            if target in LAYERS and target != package and LAYERS[target] >= LAYERS[package]:
                wrong.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not wrong, "\n".join(wrong)


def test_domain_code_speaks_no_opc_ua() -> None:
    wrong = [
        f"{path.relative_to(ROOT)} imports {name}"
        for folder in DOMAIN
        for path in sorted((ROOT / folder).rglob("*.py"))
        for name in _imports(path)
        if name == "asyncua" or name.startswith(OPC_UA_MODULES)
    ]
    assert not wrong, "\n".join(wrong)


def test_identity_is_written_only_in_the_generated_module() -> None:
    """No type NodeId number, NodeId text or list of state names outside nodesets/ (they come from nodesets.ids)."""
    numbers = {v for cls in (ids.ModelLine, ids.DI) for k, v in vars(cls).items() if k.isupper() and v >= 100}
    enums = [
        {m.label for m in e}
        for e in vars(ids).values()
        if isinstance(e, type) and issubclass(e, NodeSetEnum) and e is not NodeSetEnum
    ]
    wrong = []
    for path in [*_product_files(), *sorted((ROOT / "tests").rglob("*.py")), *sorted((ROOT / "bench").rglob("*.py"))]:
        if path.parts[len(ROOT.parts)] == "nodesets" or path.name == "test_nodesets.py":
            continue
        where = path.relative_to(ROOT)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and type(node.value) is int and node.value in numbers:
                wrong.append(f"{where}:{node.lineno}: NodeId number {node.value}")
            elif (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and re.search(r"ns=[1-9]\d*;i=", node.value)
            ):
                wrong.append(f"{where}:{node.lineno}: NodeId text {node.value!r}")
            elif isinstance(node, ast.Tuple | ast.List | ast.Set | ast.Dict):
                items = node.keys if isinstance(node, ast.Dict) else node.elts
                texts = {i.value for i in items if isinstance(i, ast.Constant) and isinstance(i.value, str)}
                if any(len(texts & labels) >= 2 for labels in enums):
                    wrong.append(f"{where}:{node.lineno}: state names {sorted(texts)}")
    assert not wrong, "\n".join(wrong)
