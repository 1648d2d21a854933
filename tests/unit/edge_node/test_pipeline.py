"""The pipeline on its own: real onnxruntime, a recording sink in place of the OPC UA nodes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edge_node.opcua.software_update import version_kind
from edge_node.runtime.model import InferenceRuntime, LoadedModel
from edge_node.runtime.pipeline import OutputValue, Pipeline, PipelineStatus, Reading
from nodesets.ids import SoftwareVersionFileType
from sdk.binding import Binding
from sdk.errors import UsageError
from sdk.package.build import BuildResult, build_package
from sdk.package.spec import PackageSpec
from tests.conftest import Signer


class RecordingSink:
    """Stands in for the OPC UA binding: remembers what the pipeline published."""

    def __init__(self) -> None:
        self.outputs: list[OutputValue] = []
        self.status = PipelineStatus()

    async def model_changed(self, manifest: object) -> None: ...
    async def binding_changed(self, binding: object) -> None: ...
    async def input_changed(self, feature: str, reading: Reading) -> None: ...

    async def publish(self, outputs: list[OutputValue]) -> None:
        self.outputs.extend(outputs)

    async def status_changed(self, status: PipelineStatus) -> None:
        self.status = status

    async def predicted(
        self, outputs: list[OutputValue], status: PipelineStatus, inputs: dict[str, Reading] | None = None
    ) -> None:
        await self.publish(outputs)
        await self.status_changed(status)


def _slow_model(path: Path) -> None:
    """y = x * 2 after 40 large MatMuls that cancel out: correct, and slow on purpose (tens of ms)."""
    size = 128
    eye = numpy_helper.from_array(np.eye(size, dtype=np.float32), "eye")
    nodes = [helper.make_node("Expand", ["x", "shape"], ["wide"]), helper.make_node("MatMul", ["wide", "eye"], ["m0"])]
    for i in range(1, 40):
        nodes.append(helper.make_node("MatMul", [f"m{i - 1}", "eye"], [f"m{i}"]))
    nodes += [
        helper.make_node("ReduceMean", ["m39"], ["mean"], keepdims=1, axes=[0, 1]),
        helper.make_node("Mul", ["mean", "two"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "slow",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1])],
        [
            eye,
            numpy_helper.from_array(np.array([size, size], dtype=np.int64), "shape"),
            numpy_helper.from_array(np.array([2.0], dtype=np.float32), "two"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


@pytest.mark.timeout(120)
async def test_triggers_faster_than_inference_skip_to_the_newest(tmp_path: Path, signer: Signer) -> None:
    _slow_model(tmp_path / "slow.onnx")
    spec = PackageSpec.model_validate({"inputs": {"x": {"min": 0, "max": 1000}}, "sample_count": 1})
    package = build_package(
        tmp_path / "slow.onnx",
        tmp_path / "slow.mlpkg",
        name="slow",
        version="1.0.0",
        spec=spec,
        private_key=signer.private_key,
    ).path
    runtime = InferenceRuntime(threads=1)
    sink = RecordingSink()
    pipeline = Pipeline("p", runtime, sink)
    worker = asyncio.create_task(pipeline.run())
    try:
        await pipeline.set_model(await runtime.load(package, signer.trust, tmp_path / "unpacked"))
        await pipeline.set_binding(
            Binding.model_validate({"inputs": {"x": {"endpoint": "opc.tcp://plc:4840", "node_id": "ns=2;s=X"}}})
        )
        for value in range(1, 101):  # 100 readings, far faster than the model runs
            await pipeline.offer("x", Reading(float(value)))
            await asyncio.sleep(0)
        for _ in range(400):  # until the worker is idle and has served the newest value
            if sink.outputs and sink.outputs[-1].value == pytest.approx(200.0) and not pipeline._wake.is_set():
                break
            await asyncio.sleep(0.05)
        status = pipeline.status
        good = [o for o in sink.outputs if o.status == 0]
        assert good[-1].value == pytest.approx(200.0)  # the newest reading was served
        assert status.skipped_count > 0
        assert status.inference_count + status.skipped_count >= 100 - 1  # every trigger either ran or was folded
        assert status.inference_count < 100
    finally:
        worker.cancel()
        runtime.close()


def test_generate_options_mean_a_software_version_file_type() -> None:
    # Null means Pending (OPC 10000-20 allows BaseDataType options)
    assert version_kind(None) is SoftwareVersionFileType.PENDING
    assert [version_kind(i) for i in (0, 1, 2)] == [
        SoftwareVersionFileType.CURRENT,
        SoftwareVersionFileType.PENDING,
        SoftwareVersionFileType.FALLBACK,
    ]
    for bad in (3, -1, "1", True, 1.0):
        with pytest.raises(UsageError, match="not a SoftwareVersionFileType"):
            version_kind(bad)


class GatedRuntime(InferenceRuntime):
    """Holds each answer until the test opens ``gate`` (when one is set): an inference caught mid-run."""

    def __init__(self, threads: int) -> None:
        super().__init__(threads=threads)
        self.gate: asyncio.Event | None = None
        self.held = asyncio.Event()

    async def run(self, model: LoadedModel, feeds: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], float]:
        answer = await super().run(model, feeds)
        if self.gate is not None:
            self.held.set()
            await self.gate.wait()
        return answer


@pytest.mark.timeout(120)
async def test_good_evidence_names_the_model_and_binding_that_made_it(tmp_path: Path, signer: Signer) -> None:
    _slow_model(tmp_path / "slow.onnx")
    spec = PackageSpec.model_validate({"inputs": {"x": {"min": 0, "max": 1000}}, "sample_count": 1})
    package = build_package(
        tmp_path / "slow.onnx",
        tmp_path / "slow.mlpkg",
        name="slow",
        version="1.0.0",
        spec=spec,
        private_key=signer.private_key,
    ).path
    old = Binding.model_validate({"inputs": {"x": {"endpoint": "opc.tcp://plc:4840", "node_id": "ns=2;s=X"}}})
    new = old.model_copy(update={"publishing_interval_ms": 100})  # the same tag, another binding
    runtime = GatedRuntime(threads=1)
    sink = RecordingSink()
    pipeline = Pipeline("p", runtime, sink)
    worker = asyncio.create_task(pipeline.run())
    try:
        await pipeline.set_model(await runtime.load(package, signer.trust, tmp_path / "unpacked"))
        await pipeline.set_binding(old)
        first = pipeline.status.configuration
        assert first.startswith(f"slow 1.0.0 binding {old.digest()} #")
        await pipeline.offer("x", Reading(1.0))
        for _ in range(400):
            if pipeline.status.good_configuration == first:
                break
            await asyncio.sleep(0.01)
        assert pipeline.status.good_configuration == first

        runtime.gate = asyncio.Event()
        await pipeline.offer("x", Reading(2.0))
        await asyncio.wait_for(runtime.held.wait(), 10)  # an inference with the old binding is running now
        before = pipeline.status.inference_count
        published = len(sink.outputs)
        await pipeline.set_binding(new)  # the reading of the kept tag stays: the new binding runs on it
        runtime.gate.set()
        second = pipeline.status.configuration
        assert second != first and second.startswith(f"slow 1.0.0 binding {new.digest()} #")
        for _ in range(400):
            if pipeline.status.good_configuration == second:
                break
            await asyncio.sleep(0.01)
        assert pipeline.status.good_configuration == second
        # The answer that was running when the binding changed was dropped, not published for either
        # configuration: one inference and one set of outputs since, made with the new binding.
        assert pipeline.status.inference_count == before + 1
        assert len(sink.outputs) == published + 1
    finally:
        worker.cancel()
        runtime.close()


async def test_the_kept_feature_vector_assembles_as_feature_by_feature(build: Callable[..., BuildResult]) -> None:
    """The pipeline keeps its readings as a feature vector as they arrive (the common case costs no pass over the
    features); after any sequence of readings, Bad, Uncertain, stale, text, huge or older ones included, it
    assembles the same tensors, status, reason and newest source time as the feature-by-feature way."""
    import random
    from datetime import UTC, datetime, timedelta

    manifest = build().manifest
    names = [f.name for f in manifest.input_features()]
    pipeline = Pipeline("p", InferenceRuntime(threads=1), RecordingSink())
    tags = {n: {"endpoint": "opc.tcp://plc:4840", "node_id": f"ns=2;s={n}"} for n in names}
    await pipeline.set_binding(Binding.model_validate({"inputs": tags}))
    rng = random.Random(3)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    kinds: list[object] = [1.0, 2.5, 7, True, -1.0, 1e9, float("nan"), "7", 2**60, None]
    seen_good = seen_other = 0
    for step in range(600):
        name = rng.choice(names)
        value = rng.choice(kinds) if rng.random() < 0.3 else rng.uniform(0, 10)
        status = rng.choice([0, 0, 0, 0x40000000, 0x80000000])  # Good, Uncertain, Bad
        when = start + timedelta(seconds=rng.randint(0, 50))  # often older than the newest
        if rng.random() < 0.03:
            await pipeline.mark_stale({rng.choice(names)}, rng.random() < 0.5)
        else:
            await pipeline.offer(name, Reading(value, status=status, source_time=when))
        feeds, status_, reason, newest, vector = pipeline._assemble(manifest)
        want = pipeline._assemble_one_by_one(manifest)
        assert (status_, reason, newest) == want[1:], step
        assert feeds.keys() == want[0].keys() and all(np.array_equal(feeds[k], want[0][k]) for k in feeds)
        if vector is not None:
            seen_good += 1
            assert status_ == 0 and list(vector) == [float(pipeline._values[n].value) for n in names]
        else:
            seen_other += 1
        if step % 50 == 49:  # back to all Good now and then, so the vector way is exercised often
            for n in names:
                await pipeline.offer(n, Reading(rng.uniform(0, 10), source_time=start + timedelta(seconds=step)))
    assert seen_good > 10 and seen_other > 100
