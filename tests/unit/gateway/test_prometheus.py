"""The /metrics endpoint: what a Prometheus server scrapes parses with prometheus_client's own parser."""

from __future__ import annotations

import asyncio
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.monitor.prometheus import MetricsEndpoint, Sample
from sdk.errors import UsageError
from sdk.opcua.ports import free_port


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return str(response.read().decode())


async def test_published_samples_are_scraped_and_replaced() -> None:
    endpoint = MetricsEndpoint(free_port())
    endpoint.start()
    try:
        labels = (("device", "edge-1"), ("pipeline", "main"))
        endpoint.publish(
            [
                Sample("inferences_total", "Inferences recorded.", "counter", labels, 42),
                Sample("drift_score", "Input drift (PSI).", "gauge", labels, 0.31),
                Sample("drift_score", "Input drift (PSI).", "gauge", (("device", "edge-2"), ("pipeline", "main")), 0),
            ]
        )
        families = {f.name: f for f in text_string_to_metric_families(await asyncio.to_thread(_scrape, endpoint.port))}
        assert families["modelline_inferences"].type == "counter"
        (inferences,) = [s for s in families["modelline_inferences"].samples if s.name.endswith("_total")]
        assert inferences.value == 42 and inferences.labels == dict(labels)
        drift = {s.labels["device"]: s.value for s in families["modelline_drift_score"].samples}
        assert drift == {"edge-1": 0.31, "edge-2": 0.0}

        endpoint.publish([Sample("drift_score", "Input drift (PSI).", "gauge", labels, 0.5)])
        families = {f.name: f for f in text_string_to_metric_families(await asyncio.to_thread(_scrape, endpoint.port))}
        assert "modelline_inferences" not in families
        assert [s.value for s in families["modelline_drift_score"].samples] == [0.5]
    finally:
        endpoint.stop()
    with pytest.raises(OSError, match="refused"):
        await asyncio.to_thread(_scrape, endpoint.port)  # the port is released


def test_a_taken_port_is_a_usage_error() -> None:
    first = MetricsEndpoint(free_port())
    first.start()
    try:
        with pytest.raises(UsageError, match="metrics endpoint"):
            MetricsEndpoint(first.port).start()
    finally:
        first.stop()
