"""What an ONNX model takes and gives, as onnxruntime sees it, and running it on samples.

onnxruntime is the ground truth: the interface recorded in a manifest is the one
an InferenceSession reports, so what is verified is what will run on the line.
These functions block (model load, inference): async callers run them in a worker.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Iterator, Mapping, Sequence
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


def load_session(model_path: Path, threads: int = 1, *, check_only: bool = False) -> ort.InferenceSession:
    """Open an onnxruntime session on the CPU; ModelLoadFailed with onnxruntime's reason.

    ``check_only``: a session that checks the model (its interface, a few samples) and does not serve: the
    weights are not pre-packed for the CPU's kernels (``session.disable_prepacking``), which for a large model is
    a third of the load (python -m bench.package_verify) and changes nothing the checks see.
    """
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only: warnings go to our own messages
    if check_only:
        options.add_session_config_entry("session.disable_prepacking", "1")
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
    one-file package cannot carry. Only the fields named are read, from the protobuf encoding
    (onnx.proto: ModelProto, GraphProto, TensorProto): the weights are stepped over, not parsed, as
    onnx.load would (a third of a large model's build time). onnxruntime has loaded the file before.
    """
    with open(model_path, "rb") as fh:
        if os.fstat(fh.fileno()).st_size == 0:
            raise ValueError(f"{model_path.name} is empty")
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return _onnx_info(data, model_file)


# Field numbers of onnx.proto (https://github.com/onnx/onnx/blob/main/onnx/onnx.proto).
_MODEL_IR_VERSION, _MODEL_PRODUCER, _MODEL_PRODUCER_VERSION, _MODEL_DOC, _MODEL_GRAPH, _MODEL_OPSET = 1, 2, 3, 6, 7, 8
_GRAPH_INITIALIZER, _GRAPH_DOC = 5, 10
_OPSET_DOMAIN, _OPSET_VERSION = 1, 2
_TENSOR_EXTERNAL_DATA, _TENSOR_DATA_LOCATION, _EXTERNAL = 13, 14, 1
_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5


def _onnx_info(view: mmap.mmap, model_file: str) -> tuple[OnnxInfo, str]:
    ir_version = 0
    opsets: dict[str, int] = {}
    texts = {_MODEL_PRODUCER: "", _MODEL_PRODUCER_VERSION: "", _MODEL_DOC: ""}
    graph_doc = ""
    try:
        for number, wire, start, end, value in _fields(view, 0, len(view)):
            if number == _MODEL_IR_VERSION and wire == _VARINT:
                ir_version = value
            elif number in texts and wire == _LEN:
                texts[number] = _text(view, start, end)
            elif number == _MODEL_OPSET and wire == _LEN:
                domain, version = "", 0
                for n, w, s, e, v in _fields(view, start, end):
                    if n == _OPSET_DOMAIN and w == _LEN:
                        domain = _text(view, s, e)
                    elif n == _OPSET_VERSION and w == _VARINT:
                        version = v
                opsets[domain] = version
            elif number == _MODEL_GRAPH and wire == _LEN:
                for n, w, s, e, _ in _fields(view, start, end):
                    if n == _GRAPH_DOC and w == _LEN:
                        graph_doc = _text(view, s, e)
                    elif n == _GRAPH_INITIALIZER and w == _LEN and _external(view, s, e):
                        raise ValueError(
                            "the model keeps its weights in external data files; save it as one .onnx file"
                        )
    except IndexError:
        raise ValueError("the file is not an ONNX model (its encoding ends early)") from None
    info = OnnxInfo(
        model_file=model_file,
        ir_version=ir_version,
        opsets=opsets,
        producer_name=texts[_MODEL_PRODUCER],
        producer_version=texts[_MODEL_PRODUCER_VERSION],
    )
    return info, texts[_MODEL_DOC] or graph_doc


def _external(view: mmap.mmap, start: int, end: int) -> bool:
    """Whether a TensorProto keeps its data in an external file (onnx.external_data_helper.uses_external_data)."""
    return any(
        n == _TENSOR_DATA_LOCATION and w == _VARINT and v == _EXTERNAL for n, w, _, _, v in _fields(view, start, end)
    )


def _text(view: mmap.mmap, start: int, end: int) -> str:
    return view[start:end].decode("utf-8", "replace")


def _varint(view: mmap.mmap, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = view[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, at
        shift += 7
        if shift > 63:
            raise ValueError("the file is not an ONNX model (a varint runs over 64 bits)")


def _fields(view: mmap.mmap, start: int, end: int) -> Iterator[tuple[int, int, int, int, int]]:
    """(field number, wire type, value start, value end, varint value) of each field of one protobuf message."""
    at = start
    while at < end:
        key, at = _varint(view, at)
        number, wire = key >> 3, key & 7
        value = 0
        if wire == _VARINT:
            value, after = _varint(view, at)
        elif wire == _LEN:
            length, at = _varint(view, at)
            after = at + length
        elif wire == _I64:
            after = at + 8
        elif wire == _I32:
            after = at + 4
        else:
            raise ValueError(f"the file is not an ONNX model (protobuf wire type {wire})")
        if after > end:
            raise ValueError("the file is not an ONNX model (a field runs past its message)")
        yield number, wire, at, after, value
        at = after


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
