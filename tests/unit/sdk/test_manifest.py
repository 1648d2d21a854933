"""The manifest schema refuses what would break a device or an OPC UA browse name."""

from __future__ import annotations

from datetime import datetime

import pytest
from pydantic import ValidationError

from sdk.package.manifest import FileEntry, Manifest, Range, TensorSpec


def _manifest(**overrides: object) -> dict[str, object]:
    base: dict[str, object] = {
        "name": "pump-health",
        "version": "1.2.3-rc.1+build.5",
        "created": "2026-11-25T10:00:00Z",
        "producer": {"version": "0.1.0"},
        "onnx": {"model_file": "model.onnx", "ir_version": 8, "opsets": {"": 17}},
        "inputs": [{"name": "x", "element_type": "float32", "shape": ["batch", 2]}],
        "outputs": [{"name": "y", "element_type": "float32", "shape": ["batch", 1]}],
        "files": [{"path": "model.onnx", "size": 10, "sha256": "a" * 64}],
    }
    base.update(overrides)
    return base


def test_valid_manifest_round_trips_through_its_bytes() -> None:
    m = Manifest.model_validate(_manifest())
    assert Manifest.model_validate_json(m.to_bytes()) == m
    assert m.to_bytes().endswith(b"\n")


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"version": "1.2"}, "semantic version"),
        ({"name": "pump/health"}, "model name"),
        ({"created": "2026-11-25T10:00:00"}, "time zone"),
        ({"format_version": 2}, "format_version"),
        ({"unknown": 1}, "Extra inputs are not permitted"),
        ({"files": [{"path": "other.onnx", "size": 1, "sha256": "a" * 64}]}, "not listed in files"),
        ({"files": [{"path": "../model.onnx", "size": 1, "sha256": "a" * 64}]}, "plain file name"),
        ({"files": [{"path": "model.onnx", "size": 1, "sha256": "XYZ"}]}, "64 lower-case hex"),
        ({"inputs": []}, "at least 1 item"),
    ],
)
def test_invalid_manifests(overrides: dict[str, object], match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        Manifest.model_validate(_manifest(**overrides))


def test_features_must_fit_the_last_dimension() -> None:
    with pytest.raises(ValidationError, match="last dimension is 2 but 1 features"):
        TensorSpec(name="x", element_type="float32", shape=[1, 2], features=[{"name": "a"}])  # type: ignore[arg-type, list-item]


def test_range_must_be_ordered() -> None:
    with pytest.raises(ValidationError, match="above max"):
        Range(min=2, max=1)


def test_input_features_flatten_tensors() -> None:
    m = Manifest.model_validate(
        _manifest(
            inputs=[
                {"name": "x", "element_type": "float32", "shape": [1, 2], "features": [{"name": "a"}, {"name": "b"}]},
                {"name": "z", "element_type": "int64", "shape": [1, 1], "units": "pcs"},
            ]
        )
    )
    assert [(f.name, f.units) for f in m.input_features()] == [("a", None), ("b", None), ("z", "pcs")]
    assert m.file("model.onnx") == FileEntry(path="model.onnx", size=10, sha256="a" * 64)
    assert isinstance(m.created, datetime)
