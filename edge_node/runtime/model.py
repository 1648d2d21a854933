"""Loading a verified package into onnxruntime and running it, off the event loop unless it takes microseconds.

The runtime owns one bounded thread pool for inference; package verification
(file and hash work) runs in the default worker threads so that a large
install never delays the predictions of the models already serving.

Handing one inference to a worker thread and back costs the loop 0.3-0.4 ms of CPU time (a future, a thread wake-up,
a call_soon_threadsafe), more than a small model's whole run. So a model runs inline, on the loop, while the median
of its last INLINE_WINDOW runs is under INLINE_MAX_MS (the loop then stalls for less than one thread hand-off would
cost); its first INLINE_WINDOW runs, and every run once the median is over the threshold, go to the pool. A model
that slows down (larger inputs, a busy machine) moves back to the pool by itself: the median is taken anew after
every INLINE_WINDOW runs (a median, not a mean, so that one run stretched by preemption on a busy machine decides
nothing).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import statistics
import time
import weakref
from collections import deque
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


INLINE_MAX_MS = 0.5
"""A model whose median run time (over its last INLINE_WINDOW runs) is under this runs on the event loop."""
INLINE_WINDOW = 20
"""Runs a model's median is taken over; the first this many runs go to the pool whatever they take."""


class _RunTimes:
    """The recent run times of one model, and whether it may run inline."""

    def __init__(self) -> None:
        self.recent: deque[float] = deque(maxlen=INLINE_WINDOW)
        self.inline = False
        self._runs = 0

    def add(self, ms: float, inline_max_ms: float) -> None:
        self.recent.append(ms)
        self._runs += 1
        if self._runs % INLINE_WINDOW == 0:  # decided anew after each window: a median per run would cost more
            self.inline = statistics.median(self.recent) < inline_max_ms


class InferenceRuntime:
    """Loads and runs models: on a bounded pool of worker threads, or inline when a model takes microseconds."""

    def __init__(self, threads: int = 2, threads_per_session: int = 1, inline_max_ms: float = INLINE_MAX_MS) -> None:
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="ort")
        self._threads_per_session = threads_per_session
        self._inline_max_ms = inline_max_ms
        self._times: weakref.WeakKeyDictionary[ort.InferenceSession, _RunTimes] = weakref.WeakKeyDictionary()

    def close(self) -> None:
        """Stop the worker threads (after the pipelines stopped)."""
        self._pool.shutdown(wait=True, cancel_futures=True)

    async def load(self, package_path: Path, trust: TrustStore, into: Path) -> LoadedModel:
        """Verify the package (again: before it is loaded), load it, check its samples.

        Raises the PackageRejected subclass that names the problem; ``into`` is
        removed on failure.
        """
        verified = await asyncio.to_thread(verify_package, package_path, trust, into=into, load_model=False)
        return await self.load_verified(verified)

    async def load_verified(self, verified: VerifiedPackage, run_samples: bool = True) -> LoadedModel:
        """Load a package verified with its files kept (``verify_package(into=..., load_model=False)``) and check
        its interface (and, with ``run_samples``, its recorded samples); its folder is removed on failure."""
        loop = asyncio.get_running_loop()
        try:
            session = await loop.run_in_executor(
                self._pool, onnx_model.load_session, verified.model_path, self._threads_per_session
            )
            # Interface and recorded samples, on the session that will serve: also warms it up.
            await loop.run_in_executor(self._pool, check_session, session, verified.manifest, run_samples)
        except BaseException:
            if verified.directory is not None:
                await asyncio.to_thread(shutil.rmtree, verified.directory, True)
            raise
        _log.info("loaded %s %s (%s)", verified.manifest.name, verified.manifest.version, verified.sha256[:12])
        return LoadedModel(verified, session)

    def runs_inline(self, model: LoadedModel) -> bool:
        """Whether the model's next run is on the event loop (see the module's docstring)."""
        times = self._times.get(model.session)
        return times is not None and times.inline

    async def run(self, model: LoadedModel, feeds: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], float]:
        """One inference; returns the outputs by name and the latency in milliseconds."""
        times = self._times.get(model.session)
        if times is None:
            times = self._times[model.session] = _RunTimes()

        def timed() -> tuple[dict[str, np.ndarray], float]:
            start = time.perf_counter()
            outputs = onnx_model.run(model.session, feeds)
            return outputs, (time.perf_counter() - start) * 1000.0

        if times.inline:
            outputs, ms = timed()
        else:
            outputs, ms = await asyncio.get_running_loop().run_in_executor(self._pool, timed)
        times.add(ms, self._inline_max_ms)
        return outputs, ms
