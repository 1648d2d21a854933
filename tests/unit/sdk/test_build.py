"""Building packages: what the manifest records, and what a build refuses."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from sdk import errors
from sdk.package.build import build_package
from sdk.package.manifest import ElementType
from sdk.package.spec import PackageSpec
from sdk.package.verify import read_package, verify_package
from tests.conftest import Signer


def test_round_trip_build_inspect_verify(build: object, signer: Signer, example: Path) -> None:
    result = build()  # type: ignore[operator]
    info = read_package(result.path)
    assert info.manifest == result.manifest
    assert info.sha256 == result.sha256
    assert info.metadata is not None and not info.legacy
    assert [(s.role, s.subject) for s in info.signatures] == [("author", signer.subject)]

    m = verify_package(result.path, signer.trust).manifest
    assert (m.name, m.version) == ("pump-health", "1.0.0")
    assert [t.name for t in m.inputs] == ["sensors"]
    sensors = m.inputs[0]
    assert sensors.element_type is ElementType.FLOAT32
    assert sensors.shape == ["batch", 5]
    assert [f.name for f in sensors.features] == [
        "vibration_rms",
        "bearing_temperature",
        "discharge_pressure",
        "flow_rate",
        "speed",
    ]
    assert sensors.features[0].units == "mm/s" and sensors.features[0].valid.max == 45.0
    assert [o.name for o in m.outputs] == ["anomaly_score", "remaining_life"]
    assert m.outputs[1].units == "h"
    assert m.onnx.opsets == {"": 17} and m.onnx.ir_version == 8
    assert m.created.tzinfo is not None
    assert m.description.startswith("Centrifugal pump health")


def test_sample_outputs_match_a_fresh_onnxruntime_run(build: object, example: Path) -> None:
    manifest = build().manifest  # type: ignore[operator]
    assert len(manifest.samples) == 3
    session = ort.InferenceSession(str(example / "model.onnx"), providers=["CPUExecutionProvider"])
    for sample in manifest.samples:
        feeds = {k: np.asarray(v, dtype=np.float32) for k, v in sample.inputs.items()}
        fresh = dict(zip(["anomaly_score", "remaining_life"], session.run(None, feeds), strict=True))
        for name, expected in sample.outputs.items():
            np.testing.assert_allclose(fresh[name], np.asarray(expected), rtol=1e-6, atol=1e-6)


def test_samples_come_from_training_rows(build: object, example: Path) -> None:
    manifest = build().manifest  # type: ignore[operator]
    with open(example / "training.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    first = [
        float(rows[0][f]) for f in ("vibration_rms", "bearing_temperature", "discharge_pressure", "flow_rate", "speed")
    ]
    np.testing.assert_allclose(manifest.samples[0].inputs["sensors"], [first], rtol=1e-6)


def test_reference_statistics_from_training_csv(build: object, example: Path) -> None:
    stats = build().manifest.reference_stats  # type: ignore[operator]
    with open(example / "training.csv", newline="") as fh:
        speed = np.array([float(r["speed"]) for r in csv.DictReader(fh)])
    s = stats["speed"]
    assert s.count == speed.size
    assert s.mean == pytest.approx(speed.mean())
    assert s.std == pytest.approx(speed.std(ddof=1))
    assert (s.min, s.max) == (pytest.approx(speed.min()), pytest.approx(speed.max()))
    assert s.bin_edges[0] == pytest.approx(speed.min()) and s.bin_edges[-1] == pytest.approx(speed.max())
    assert sum(s.frequencies) == pytest.approx(1.0)
    assert set(stats) == {"vibration_rms", "bearing_temperature", "discharge_pressure", "flow_rate", "speed"}


def test_without_spec_inputs_come_from_the_graph_alone(build: object, signer: Signer) -> None:
    result = build(spec=None)  # type: ignore[operator]
    m = result.manifest
    assert m.inputs[0].features == [] and m.reference_stats == {}
    assert len(m.samples) == 3  # from generic values, still reproducible
    verify_package(result.path, signer.trust)


def test_spec_names_an_unknown_input(example: Path, tmp_path: Path) -> None:
    spec = PackageSpec.model_validate({"inputs": {"sensor": {"label": "typo"}}})
    with pytest.raises(errors.BuildError, match=r"spec names input\(s\) sensor but the model's inputs are sensors"):
        build_package(example / "model.onnx", tmp_path / "x.mlpkg", name="p", version="1.0.0", spec=spec)


def test_spec_feature_count_must_fit(example: Path, tmp_path: Path) -> None:
    spec = PackageSpec.model_validate({"inputs": {"sensors": {"features": [{"name": "only_one"}]}}})
    with pytest.raises(errors.BuildError, match="last dimension is 5 but 1 features are named"):
        build_package(example / "model.onnx", tmp_path / "x.mlpkg", name="p", version="1.0.0", spec=spec)
    assert not (tmp_path / "x.mlpkg").exists()


def test_spec_file_errors_are_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "spec.toml"
    bad.write_text("sample_count = 'three'\n")
    with pytest.raises(errors.BuildError, match=r"spec file .*spec.toml: sample_count: "):
        PackageSpec.load(bad)
    bad.write_text("[inputs\n")
    with pytest.raises(errors.BuildError, match="not valid TOML"):
        PackageSpec.load(bad)


@pytest.mark.parametrize(
    ("name", "version", "match"),
    [("pump health", "1.0.0", "model name"), ("pump", "1.0", "not a semantic version")],
)
def test_name_and_version_rules(example: Path, tmp_path: Path, name: str, version: str, match: str) -> None:
    with pytest.raises(errors.BuildError, match=match):
        build_package(example / "model.onnx", tmp_path / "x.mlpkg", name=name, version=version)


def test_non_tensor_output_is_refused_with_a_hint(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("ZipMap", ["probabilities"], ["labelled"], domain="ai.onnx.ml", classlabels_int64s=[0, 1])],
        "classifier",
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 2])],
        [
            helper.make_value_info(
                "labelled",
                helper.make_sequence_type_proto(
                    helper.make_map_type_proto(TensorProto.INT64, helper.make_tensor_type_proto(TensorProto.FLOAT, []))
                ),
            )
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "zipmap.onnx"))
    with pytest.raises(errors.BuildError, match=r"output 'labelled' is a seq\(map.*zipmap"):
        build_package(tmp_path / "zipmap.onnx", tmp_path / "x.mlpkg", name="c", version="1.0.0")


def test_external_weight_files_are_refused(tmp_path: Path) -> None:
    weights = numpy_helper.from_array(np.ones((4, 1), dtype=np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "ext",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1])],
        [weights],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(
        model,
        str(tmp_path / "ext.onnx"),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="ext.weights",
        size_threshold=0,
    )
    with pytest.raises(errors.BuildError, match="external data files"):
        build_package(tmp_path / "ext.onnx", tmp_path / "x.mlpkg", name="e", version="1.0.0")


def test_missing_model_file(tmp_path: Path) -> None:
    with pytest.raises(errors.NotFound, match="does not exist"):
        build_package(tmp_path / "nope.onnx", tmp_path / "x.mlpkg", name="e", version="1.0.0")


def test_unloadable_model_file(tmp_path: Path) -> None:
    (tmp_path / "junk.onnx").write_bytes(b"not onnx")
    with pytest.raises(errors.ModelLoadFailed, match="onnxruntime cannot load junk.onnx"):
        build_package(tmp_path / "junk.onnx", tmp_path / "x.mlpkg", name="e", version="1.0.0")


def test_integer_and_multi_input_models_get_samples(tmp_path: Path, signer: Signer) -> None:
    graph = helper.make_graph(
        [
            helper.make_node("Cast", ["count"], ["count_f"], to=TensorProto.FLOAT),
            helper.make_node("Add", ["count_f", "level"], ["total"]),
        ],
        "two_inputs",
        [
            helper.make_tensor_value_info("count", TensorProto.INT64, [1, 1]),
            helper.make_tensor_value_info("level", TensorProto.FLOAT, [1, 1]),
        ],
        [helper.make_tensor_value_info("total", TensorProto.FLOAT, [1, 1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "two.onnx"))
    spec = PackageSpec.model_validate({"inputs": {"count": {"min": 0, "max": 100}, "level": {"min": 2, "max": 3}}})
    result = build_package(
        tmp_path / "two.onnx",
        tmp_path / "two.mlpkg",
        name="two",
        version="0.1.0",
        spec=spec,
        private_key=signer.private_key,
    )
    for sample in result.manifest.samples:
        count, level = sample.inputs["count"][0][0], sample.inputs["level"][0][0]  # type: ignore[index]
        assert isinstance(count, int) and 0 <= count <= 100
        assert 2 <= level <= 3
    verify_package(result.path, signer.trust)


def test_builds_are_reproducible(example: Path, signer: Signer, tmp_path: Path) -> None:
    from datetime import UTC, datetime

    def clock() -> datetime:
        return datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)

    spec = PackageSpec.load(example / "spec.toml")
    first, second = (
        build_package(
            example / "model.onnx",
            tmp_path / f"{n}.mlpkg",
            name="p",
            version="1.0.0",
            spec=spec,
            private_key=signer.private_key,
            clock=clock,
        )
        for n in ("a", "b")
    )
    assert first.sha256 == second.sha256  # same inputs, same key, same time: the same bytes
    assert (tmp_path / "a.mlpkg").read_bytes() == (tmp_path / "b.mlpkg").read_bytes()


def _wine_model(path: Path) -> Path:
    graph = helper.make_graph(
        [helper.make_node("ReduceSum", ["features"], ["score"], keepdims=1)],
        "wine",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, [1, 2])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, [1, 1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_features_keep_a_plain_name_with_a_dataset_label_and_csv_column(tmp_path: Path, signer: Signer) -> None:
    """A public dataset's column name (with '/') is the label and the CSV column; the node-safe name stays plain."""
    model = _wine_model(tmp_path / "wine.onnx")
    (tmp_path / "wine.csv").write_text("alcohol,od280/od315_of_diluted_wines\n14.2,3.92\n13.2,3.4\n12.4,2.1\n")
    (tmp_path / "spec.toml").write_text(
        'training_csv = "wine.csv"\n'
        "[inputs.features]\n"
        "features = [\n"
        '  { name = "alcohol", label = "Alcohol (% vol)" },\n'
        '  { name = "od280_od315", label = "OD280/OD315 of diluted wines", column = "od280/od315_of_diluted_wines" },\n'
        "]\n"
    )
    spec = PackageSpec.load(tmp_path / "spec.toml")
    result = build_package(
        model, tmp_path / "wine.mlpkg", name="wine", version="1.0.0", spec=spec, private_key=signer.private_key
    )
    features = result.manifest.inputs[0].features
    assert [(f.name, f.label) for f in features] == [
        ("alcohol", "Alcohol (% vol)"),
        ("od280_od315", "OD280/OD315 of diluted wines"),
    ]
    stats = result.manifest.reference_stats["od280_od315"]
    assert (stats.count, stats.min, stats.max) == (3, pytest.approx(2.1), pytest.approx(3.92))
    np.testing.assert_allclose(result.manifest.samples[0].inputs["features"], [[14.2, 3.92]], rtol=1e-6)
    verify_package(result.path, signer.trust)

    (tmp_path / "bad.toml").write_text(
        '[inputs.features]\nfeatures = [{ name = "alcohol" }, { name = "od280/od315_of_diluted_wines" }]\n'
    )
    with pytest.raises(errors.BuildError, match=r"keep a name like this as label = 'od280/od315_of_diluted_wines'"):
        PackageSpec.load(tmp_path / "bad.toml")
    (tmp_path / "typo.toml").write_text(
        'training_csv = "wine.csv"\n[inputs.features]\n'
        'features = [{ name = "alcohol" }, { name = "od280", column = "od280/od315" }]\n'
    )
    with pytest.raises(errors.BuildError, match=r"has no column 'od280/od315' \(the column of feature od280\)"):
        build_package(
            model, tmp_path / "t.mlpkg", name="t", version="1.0.0", spec=PackageSpec.load(tmp_path / "typo.toml")
        )
    with pytest.raises(errors.BuildError, match="label: 'tab\\\\there' must be printable text"):
        PackageSpec.load(
            _written(tmp_path / "tab.toml", '[inputs.features]\nfeatures = [{ name = "a", label = "tab\\there" }]\n')
        )


def _written(path: Path, text: str) -> Path:
    path.write_text(text)
    return path
