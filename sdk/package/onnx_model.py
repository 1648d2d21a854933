"""What an ONNX model takes and gives, as onnxruntime sees it, and running it on samples.

onnxruntime is the ground truth: the interface recorded in a manifest is the one
an InferenceSession reports, so what is verified is what will run on the line.
These functions block (model load, inference): async callers run them in a worker.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from sdk.errors import ModelLoadFailed
from sdk.package.manifest import Dim, ElementType, OnnxInfo, Sample, TensorSpec, Tolerance

# onnxruntime's type strings for tensors (NodeArg.type) -> manifest element types.
_ORT_TYPES: dict[str, ElementType] = {
    "tensor(float)": ElementType.FLOAT32,
    "tensor(double)": ElementType.FLOAT64,
    "tensor(int8)": ElementType.INT8,
    "tensor(int16)": ElementType.INT16,
    "tensor(int32)": ElementType.INT32,
    "tensor(int64)": ElementType.INT64,
    "tensor(uint8)": ElementType.UINT8,
    "tensor(uint16)": ElementType.UINT16,
    "tensor(uint32)": ElementType.UINT32,
    "tensor(uint64)": ElementType.UINT64,
    "tensor(bool)": ElementType.BOOL,
    "tensor(string)": ElementType.STRING,
}

NUMPY_DTYPES: dict[ElementType, Any] = {
    ElementType.FLOAT32: np.float32,
    ElementType.FLOAT64: np.float64,
    ElementType.INT8: np.int8,
    ElementType.INT16: np.int16,
    ElementType.INT32: np.int32,
    ElementType.INT64: np.int64,
    ElementType.UINT8: np.uint8,
    ElementType.UINT16: np.uint16,
    ElementType.UINT32: np.uint32,
    ElementType.UINT64: np.uint64,
    ElementType.BOOL: np.bool_,
    ElementType.STRING: np.object_,
}


@dataclass(frozen=True)
class PortSignature:
    """One input or output as onnxruntime reports it."""

    name: str
    ort_type: str
    shape: list[Dim]

    @property
    def element_type(self) -> ElementType | None:
        """The manifest element type, or None for non-tensor values (sequences, maps)."""
        return _ORT_TYPES.get(self.ort_type)


def load_session(model_path: Path, threads: int = 1) -> ort.InferenceSession:
    """Open an onnxruntime session on the CPU; ModelLoadFailed with onnxruntime's reason."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only: warnings go to our own messages
    try:
        return ort.InferenceSession(str(model_path), sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own untyped exceptions for every load failure
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        reason = reason.replace(str(model_path), model_path.name)  # the package's file name, not a server path
        raise ModelLoadFailed(f"onnxruntime cannot load {model_path.name}: {reason}") from None


def _shape(raw: Sequence[Any] | None) -> list[Dim]:
    return [d if isinstance(d, int | str) else None for d in (raw or [])]


def describe(session: ort.InferenceSession) -> tuple[list[PortSignature], list[PortSignature]]:
    """The inputs and outputs of a session, in graph order."""
    return (
        [PortSignature(a.name, a.type, _shape(a.shape)) for a in session.get_inputs()],
        [PortSignature(a.name, a.type, _shape(a.shape)) for a in session.get_outputs()],
    )


def read_onnx_info(model_path: Path, model_file: str) -> tuple[OnnxInfo, str]:
    """IR version, opsets and producer from the ONNX file; also its doc string.

    Raises ValueError when the model keeps weights in external files, which a
    one-file package cannot carry.
    """
    import onnx  # build-time only; the runtime needs just onnxruntime
    from onnx.external_data_helper import uses_external_data

    proto = onnx.load(str(model_path), load_external_data=False)
    if any(uses_external_data(t) for t in proto.graph.initializer):
        raise ValueError("the model keeps its weights in external data files; save it as one .onnx file")
    info = OnnxInfo(
        model_file=model_file,
        ir_version=proto.ir_version,
        opsets={op.domain: op.version for op in proto.opset_import},
        producer_name=proto.producer_name,
        producer_version=proto.producer_version,
    )
    return info, proto.doc_string or proto.graph.doc_string


def one_sample_shape(shape: Sequence[Dim], last: int | None = None) -> list[int]:
    """The shape of one sample: symbolic or unknown dimensions become 1, the last one ``last`` if given."""
    dims = [d if isinstance(d, int) and d > 0 else 1 for d in shape]
    if last is not None and dims:
        dims[-1] = last
    return dims


def feeds_from(sample_inputs: Mapping[str, Any], inputs: Sequence[TensorSpec]) -> dict[str, np.ndarray]:
    """Numpy arrays of the manifest's element types, ready for ``session.run``."""
    return {t.name: np.asarray(sample_inputs[t.name], dtype=NUMPY_DTYPES[t.element_type]) for t in inputs}


def run(session: ort.InferenceSession, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run the model once; outputs by name."""
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, dict(feeds)), strict=True))


def compare(actual: np.ndarray, expected: Any, tolerance: Tolerance) -> str | None:
    """None when ``actual`` reproduces ``expected``; else a short description of the difference."""
    want = np.asarray(expected)
    if actual.shape != want.shape:
        return f"shape {list(actual.shape)} instead of {list(want.shape)}"
    if actual.dtype.kind in "fc":
        want_f = want.astype(np.float64)
        got_f = actual.astype(np.float64)
        if not np.allclose(got_f, want_f, rtol=tolerance.rtol, atol=tolerance.atol, equal_nan=True):
            worst = float(np.nanmax(np.abs(got_f - want_f)))
            return f"differs by up to {worst:.6g} (tolerance rtol={tolerance.rtol:g}, atol={tolerance.atol:g})"
        return None
    if not np.array_equal(actual, want.astype(actual.dtype)):
        return "values differ"
    return None


def check_samples(
    session: ort.InferenceSession,
    samples: Sequence[Sample],
    inputs: Sequence[TensorSpec],
    tolerance: Tolerance,
) -> list[str]:
    """Run every sample and list the outputs that do not match (empty list: all match)."""
    problems = []
    for index, sample in enumerate(samples, start=1):
        outputs = run(session, feeds_from(sample.inputs, inputs))
        for name, expected in sample.outputs.items():
            if name not in outputs:
                problems.append(f"sample {index}: model has no output {name!r}")
                continue
            diff = compare(outputs[name], expected, tolerance)
            if diff:
                problems.append(f"sample {index}, output {name!r}: {diff}")
    return problems
