"""Building, signing and verifying a DI Software Package (.uadipkg), next to the floor neither can go below.

Floor (same process, same model file): SHA-256 of the model's bytes (hashlib, 1 MiB reads) plus one bare
onnxruntime InferenceSession load of the model. ModelLine's build+sign loads the model (its interface and
sample outputs), hashes it, writes the ASiC-E container (metadata, manifest, model card, the model stored),
and signs the ASiCManifest (CAdES); its verify checks the container, the signature and the signer's chain
against the trust store, the metadata and manifest, unpacks the model checking its signed digest, hashes the
package file (the DI Hash) and loads the model in onnxruntime, comparing its interface with the manifest
(as an edge node's CloseAndCommit does; the samples run at install).

    python -m bench --only package_verify          # as part of the suite (--quick: 8 MiB)
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
from sdk.package.build import build_package
from sdk.package.verify import verify_package


def big_model(path: Path, size_mb: int) -> None:
    """A model of about ``size_mb`` MiB of weights (random, so they do not compress) behind a small interface, as a
    large real model has: y = sum(x · W) with x [1, 64] and W [64, n] (the manifest's samples stay small)."""
    rows = 64
    cols = max(1, size_mb * (1 << 20) // (4 * rows))
    weights = np.random.default_rng(0).standard_normal((rows, cols), dtype=np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w"], ["h"]),
            helper.make_node("ReduceSum", ["h", "axes"], ["y"], keepdims=1),
        ],
        "big",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, rows])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1])],
        [numpy_helper.from_array(weights, "w"), numpy_helper.from_array(np.array([1], dtype=np.int64), "axes")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


def _floor(model: Path) -> None:
    digest = hashlib.sha256()
    with open(model, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])


async def measure(rounds: Rounds, size_mb: int | None = None) -> None:
    """Figures: build+sign and verify of a DI package of a ``size_mb`` MiB model, vs SHA-256 + one bare load."""
    from tests.pki import Pki  # noqa: PLC0415 - a plant CA, as the tests make one

    size_mb = size_mb or (8 if rounds.quick else 100)
    with tempfile.TemporaryDirectory(prefix="bench-package-") as tmp:
        root = Path(tmp)
        pki = Pki(root)
        identity, trust = pki.issue("bench author"), pki.trust
        model = root / "big.onnx"
        await asyncio.to_thread(big_model, model, size_mb)
        package = root / "big.uadipkg"
        floor_name = "hashlib SHA-256 of the model + one bare onnxruntime load"

        async def build() -> None:
            await asyncio.to_thread(build_package, model, package, name="big", version="1.0.0", identity=identity)

        async def verify() -> None:
            await asyncio.to_thread(verify_package, package, trust, run_samples=False)

        async def floor() -> None:
            await asyncio.to_thread(_floor, model)

        await rounds.pair(f"build+sign DI package, {size_mb} MiB", "ms", timed_ms(build), timed_ms(floor), floor_name)
        await rounds.pair(f"verify DI package, {size_mb} MiB", "ms", timed_ms(verify), timed_ms(floor), floor_name)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=100, help="size of the synthetic model")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print_header()
    asyncio.run(measure(Rounds("package_verify", args.rounds, quick=False), args.size_mb))


if __name__ == "__main__":
    main()
