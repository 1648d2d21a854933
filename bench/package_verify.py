"""What full package verification costs, next to the floor it cannot go below.

Baseline (same process, same file): SHA-256 of the model bytes plus a bare
onnxruntime InferenceSession load and one run. ModelLine's verify adds: archive
checks, unpacking, signature check, manifest parse, interface comparison and the
sample runs.

    python -m bench.package_verify                 # the shipped pump model and a 64 MiB model
    python -m bench.package_verify --size-mb 256 --repeat 3
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from sdk.examples import example_dir
from sdk.keys import TrustStore, generate_key_pair, load_private_key
from sdk.package.build import build_package
from sdk.package.verify import verify_package


def _big_model(path: Path, size_mb: int) -> None:
    """A MatMul over a weight matrix of about ``size_mb`` MiB (random, so it does not compress)."""
    cols = 256
    rows = max(1, size_mb * (1 << 20) // (4 * cols))
    weights = np.random.default_rng(0).standard_normal((rows, cols), dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "big",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, rows])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, cols])],
        [numpy_helper.from_array(weights, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


def _time(fn: Callable[[], object], repeat: int) -> float:
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def _baseline(model: Path) -> None:
    hashlib.sha256(model.read_bytes()).hexdigest()
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    feeds = {
        i.name: np.zeros([d if isinstance(d, int) else 1 for d in i.shape], dtype=np.float32)
        for i in session.get_inputs()
    }
    session.run(None, feeds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=64, help="size of the large synthetic model")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        files = generate_key_pair(root / "keys")
        key, trust = load_private_key(files.private_path), TrustStore.load(root / "keys")
        big = root / "big.onnx"
        _big_model(big, args.size_mb)
        cases = [("pump health (example)", example_dir() / "model.onnx"), (f"{args.size_mb} MiB MatMul", big)]
        print(f"{'model':<24} {'model bytes':>12} {'baseline ms':>12} {'verify ms':>10} {'overhead':>9}")
        for label, model in cases:
            package = build_package(
                model, root / f"{model.stem}.mlpkg", name="bench", version="1.0.0", private_key=key
            ).path
            base = _time(lambda m=model: _baseline(m), args.repeat)  # type: ignore[misc]
            verify = _time(lambda p=package: verify_package(p, trust), args.repeat)  # type: ignore[misc]
            size = model.stat().st_size
            print(f"{label:<24} {size:>12,} {base * 1e3:>12.1f} {verify * 1e3:>10.1f} {verify / base:>8.2f}x")


if __name__ == "__main__":
    main()
