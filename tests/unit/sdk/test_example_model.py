"""The shipped example model is reproducible from its script and behaves like a pump health model."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from sdk.package.build import build_package
from sdk.package.spec import PackageSpec
from sdk.package.verify import verify_package
from tests.conftest import Signer

HEALTHY = [2.0, 50.0, 4.6, 118.0, 1475.0]
WORN = [9.5, 71.0, 4.2, 111.0, 1475.0]
CAVITATING = [6.5, 52.0, 3.3, 100.0, 1475.0]


def _predict(model: Path, row: list[float]) -> tuple[float, float]:
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    score, life = session.run(None, {"sensors": np.asarray([row], dtype=np.float32)})
    return float(score[0, 0]), float(life[0, 0])


def test_shipped_model_separates_healthy_from_faulty_pumps(example: Path) -> None:
    healthy, worn, cavitating = (_predict(example / "model.onnx", r) for r in (HEALTHY, WORN, CAVITATING))
    assert healthy[0] < 0.1 < 0.9 < worn[0]
    assert cavitating[0] > 0.5
    assert healthy[1] > 3000 > worn[1] >= 0


@pytest.mark.slow
def test_training_script_rebuilds_a_packageable_model(example: Path, tmp_path: Path, signer: Signer) -> None:
    done = subprocess.run(
        [sys.executable, str(example / "train.py"), "--variant", "2", "--rows", "1500", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    spec = PackageSpec.load(example / "spec.toml").model_copy(update={"training_csv": tmp_path / "training.csv"})
    result = build_package(
        tmp_path / "model.onnx",
        tmp_path / "v2.mlpkg",
        name="pump-health",
        version="2.0.0",
        spec=spec,
        private_key=signer.private_key,
    )
    assert verify_package(result.path, signer.trust).manifest.reference_stats["speed"].count == 1500
    assert _predict(tmp_path / "model.onnx", HEALTHY)[0] < 0.5 < _predict(tmp_path / "model.onnx", WORN)[0]
