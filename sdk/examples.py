"""Where the shipped example model lives (examples/ at the top of the source tree)."""

from __future__ import annotations

from pathlib import Path

from sdk.errors import NotFound

_ROOT = Path(__file__).resolve().parent.parent / "examples"


def example_dir(name: str = "pump_health") -> Path:
    """The folder of a shipped example model (model.onnx, spec.toml, training.csv)."""
    folder = _ROOT / name
    if not (folder / "model.onnx").is_file():
        raise NotFound(
            f"example model {name!r} not found at {folder}: run from a source checkout "
            "(pip install -e .), where examples/ sits beside sdk/"
        )
    return folder
