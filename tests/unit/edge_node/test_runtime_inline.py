"""A model of microseconds runs inline on the event loop after its first runs; a slow one stays on the pool."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edge_node.runtime import model as runtime_model
from edge_node.runtime.model import INLINE_WINDOW, InferenceRuntime
from sdk.package.build import build_package
from sdk.package.onnx_model import run as real_run
from sdk.package.spec import PackageSpec
from tests.conftest import Signer
from tests.unit.edge_node.test_pipeline import _slow_model


def _package(tmp_path: Path, signer: Signer, slow: bool) -> Path:
    model = tmp_path / "m.onnx"
    if slow:
        _slow_model(model)
        spec = PackageSpec.model_validate({"inputs": {"x": {"min": 0, "max": 1000}}, "sample_count": 1})
    else:
        ones = numpy_helper.from_array(np.ones((3, 1), dtype=np.float32), "ones")
        graph = helper.make_graph(
            [helper.make_node("MatMul", ["x", "ones"], ["y"])],
            "sum",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1])],
            [ones],
        )
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(model))
        spec = PackageSpec.model_validate(
            {"inputs": {"x": {"features": [{"name": f"t{i}", "min": 0, "max": 10} for i in range(3)]}}}
        )
    return build_package(
        model, tmp_path / "m.mlpkg", name="m", version="1.0.0", spec=spec, private_key=signer.private_key
    ).path


@pytest.mark.parametrize("slow", [False, True])
async def test_where_a_model_runs_follows_its_median_run_time(
    tmp_path: Path, signer: Signer, monkeypatch: pytest.MonkeyPatch, slow: bool
) -> None:
    threads: list[str] = []

    def recording_run(session: object, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        threads.append(threading.current_thread().name)
        return real_run(session, feeds)  # type: ignore[arg-type]

    monkeypatch.setattr(runtime_model.onnx_model, "run", recording_run)
    runtime = InferenceRuntime(threads=1)
    try:
        loaded = await runtime.load(_package(tmp_path, signer, slow), signer.trust, tmp_path / "unpacked")
        feeds = {"x": np.ones((1, 1) if slow else (1, 3), dtype=np.float32)}
        threads.clear()  # building and loading ran the model's samples
        for _ in range(INLINE_WINDOW + 5):
            outputs, latency = await runtime.run(loaded, feeds)
            assert latency > 0
        expected = 2.0 if slow else 3.0
        assert float(np.asarray(next(iter(outputs.values()))).reshape(-1)[0]) == pytest.approx(expected)
        on_loop = threading.current_thread().name
        assert all(name.startswith("ort") for name in threads[:INLINE_WINDOW])  # the first window: on the pool
        if slow:
            assert not runtime.runs_inline(loaded)
            assert all(name.startswith("ort") for name in threads)
        else:
            assert runtime.runs_inline(loaded)
            assert threads[INLINE_WINDOW:] == [on_loop] * 5
    finally:
        runtime.close()
