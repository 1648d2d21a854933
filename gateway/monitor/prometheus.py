"""A Prometheus ``/metrics`` endpoint for the Model Monitor's figures (off by default).

For plant IT that already runs Prometheus. The endpoint is served by
``prometheus_client``'s own HTTP server in its own thread; it never touches the
asyncio loop. The monitor publishes a *snapshot* (an immutable tuple of samples)
whenever its figures change, and the endpoint renders the newest snapshot, so a
scrape never waits on the gateway and never sees a half-updated set.

Metric names follow Prometheus conventions (``modelline_`` prefix, base units,
``_total`` for counters); labels are ``device``, ``pipeline`` and, where it
applies, ``feature``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from prometheus_client import start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from sdk.errors import UsageError

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Sample:
    """One value of one metric, with its labels."""

    name: str  # without the modelline_ prefix, e.g. "inferences_total"
    help: str
    kind: Literal["counter", "gauge"]
    labels: tuple[tuple[str, str], ...]
    value: float


class _Snapshot(Collector):
    """Renders the newest snapshot; swapping it is one assignment, safe across threads."""

    def __init__(self) -> None:
        self.samples: tuple[Sample, ...] = ()

    def collect(self) -> Iterator[Metric]:
        samples = self.samples
        families: dict[str, Metric] = {}
        for s in samples:
            family = families.get(s.name)
            label_names = [k for k, _ in s.labels]
            if family is None:
                if s.kind == "counter":
                    family = CounterMetricFamily(
                        f"modelline_{s.name.removesuffix('_total')}", s.help, labels=label_names
                    )
                else:
                    family = GaugeMetricFamily(f"modelline_{s.name}", s.help, labels=label_names)
                families[s.name] = family
            family.add_metric([v for _, v in s.labels], s.value)  # type: ignore[attr-defined]
        yield from families.values()


class MetricsEndpoint:
    """``http://<address>:<port>/metrics``; ``publish`` replaces what it shows."""

    def __init__(self, port: int, address: str = "127.0.0.1") -> None:
        self.port = port
        self.address = address
        self._snapshot = _Snapshot()
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(self._snapshot)
        self._server: object | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Listen (in prometheus_client's thread); UsageError if the port is taken."""
        try:
            server, thread = start_http_server(self.port, addr=self.address, registry=self._registry)
        except OSError as exc:
            raise UsageError(f"metrics endpoint {self.address}:{self.port}: {exc.strerror or exc}") from None
        self._server, self._thread = server, thread
        _log.info("Prometheus metrics at http://%s:%d/metrics", self.address, self.port)

    def publish(self, samples: list[Sample]) -> None:
        """Show these samples from the next scrape on."""
        self._snapshot.samples = tuple(samples)

    def stop(self) -> None:
        """Stop listening and release the port."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()  # type: ignore[attr-defined]
            server.server_close()  # type: ignore[attr-defined]
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
