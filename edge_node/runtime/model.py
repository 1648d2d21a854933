"""Loading a verified package into onnxruntime and running it, always off the event loop.

The runtime owns one bounded thread pool for inference; package verification
(file and hash work) runs in the default worker threads so that a large
install never delays the predictions of the models already serving.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from sdk.keys import TrustStore
from sdk.package import onnx_model
from sdk.package.manifest import Manifest
from sdk.package.verify import VerifiedPackage, check_session, verify_package

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedModel:
    """A verified package with its onnxruntime session, ready to serve."""

    package: VerifiedPackage
    session: ort.InferenceSession

    @property
    def manifest(self) -> Manifest:
        """The package's manifest."""
        return self.package.manifest

    @property
    def sha256(self) -> str:
        """SHA-256 of the package file."""
        return self.package.sha256


class InferenceRuntime:
    """Loads and runs models on a bounded pool of worker threads."""

    def __init__(self, threads: int = 2, threads_per_session: int = 1) -> None:
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="ort")
        self._threads_per_session = threads_per_session

    def close(self) -> None:
        """Stop the worker threads (after the pipelines stopped)."""
        self._pool.shutdown(wait=True, cancel_futures=True)

    async def load(self, package_path: Path, trust: TrustStore, into: Path) -> LoadedModel:
        """Verify the package (again: before it is loaded), load it, check its samples.

        Raises the PackageRejected subclass that names the problem; ``into`` is
        removed on failure.
        """
        verified = await asyncio.to_thread(verify_package, package_path, trust, into=into, load_model=False)
        loop = asyncio.get_running_loop()
        try:
            session = await loop.run_in_executor(
                self._pool, onnx_model.load_session, verified.model_path, self._threads_per_session
            )
            # Interface and recorded samples, on the session that will serve: also warms it up.
            await loop.run_in_executor(self._pool, check_session, session, verified.manifest, True)
        except BaseException:
            await asyncio.to_thread(shutil.rmtree, into, True)
            raise
        _log.info("loaded %s %s (%s)", verified.manifest.name, verified.manifest.version, verified.sha256[:12])
        return LoadedModel(verified, session)

    async def run(self, model: LoadedModel, feeds: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], float]:
        """One inference; returns the outputs by name and the latency in milliseconds."""
        loop = asyncio.get_running_loop()

        def timed() -> tuple[dict[str, np.ndarray], float]:
            start = time.perf_counter()
            outputs = onnx_model.run(model.session, feeds)
            return outputs, (time.perf_counter() - start) * 1000.0

        return await loop.run_in_executor(self._pool, timed)
