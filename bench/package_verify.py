"""What full package verification costs, next to the floor it cannot go below.

Baseline (same process, same file): SHA-256 of the model bytes plus a bare
onnxruntime InferenceSession load and one run. ModelLine's verify adds: archive
checks, unpacking, signature check, manifest parse, interface comparison and the
sample runs.

    python -m bench --only package_verify          # as part of the suite
    python -m bench.package_verify --size-mb 256 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from bench.suite import Rounds, print_header, timed_ms
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


def _baseline(model: Path) -> None:
    hashlib.sha256(model.read_bytes()).hexdigest()
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    feeds = {
        i.name: np.zeros([d if isinstance(d, int) else 1 for d in i.shape], dtype=np.float32)
        for i in session.get_inputs()
    }
    session.run(None, feeds)


async def measure(rounds: Rounds, size_mb: int | None = None) -> None:
    """Figures: verify time of the example model's package and of a large one, vs hash + bare load + run."""
    size_mb = size_mb or (16 if rounds.quick else 64)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        files = generate_key_pair(root / "keys")
        key, trust = load_private_key(files.private_path), TrustStore.load(root / "keys")
        big = root / "big.onnx"
        _big_model(big, size_mb)
        cases = [("pump health (example)", example_dir() / "model.onnx"), (f"{size_mb} MiB MatMul", big)]
        for label, model in cases:
            package = build_package(
                model, root / f"{model.stem}.mlpkg", name="bench", version="1.0.0", private_key=key
            ).path

            async def ours(p: Path = package) -> None:
                verify_package(p, trust)

            async def floor(m: Path = model) -> None:
                _baseline(m)

            await rounds.pair(
                f"verify {label}", "ms", timed_ms(ours), timed_ms(floor), "SHA-256 + bare onnxruntime load and run"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=64, help="size of the large synthetic model")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print_header()
    asyncio.run(measure(Rounds("package_verify", args.rounds, quick=False), args.size_mb))


if __name__ == "__main__":
    main()
