"""The collector on a real record queue: sampling, rate limit, statistics on the reference bins, log records."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from edge_node.monitor.collector import Collector, LogForwarder
from edge_node.monitor.queue import RecordQueue, parse_envelope
from edge_node.runtime import quality
from edge_node.runtime.pipeline import Inference, OutputValue, Reading
from sdk.binding import Binding
from sdk.monitor.records import LOG_STREAM, LogRecord, PredictionRecord
from sdk.monitor.statistics import PipelineStatistics
from sdk.package.build import BuildResult
from sdk.package.manifest import Manifest


@pytest.fixture
def manifest(build: Callable[..., BuildResult]) -> Manifest:
    return build().manifest


def inference(manifest: Manifest, speed: float, status: int = 0, latency: float = 1.0) -> Inference:
    now = datetime.now(UTC)
    readings: dict[str, Reading | None] = {f.name: Reading(1.0, source_time=now) for f in manifest.input_features()}
    readings["speed"] = Reading(speed, source_time=now)
    outputs = [OutputValue(o.name, None if status else 0.5, status, now, now) for o in manifest.outputs]
    return Inference("main", manifest, "cfg", readings, outputs, status, latency, 0, Reading("SN-1"), now)


async def queue_at(tmp_path: Path) -> RecordQueue:
    queue = RecordQueue(tmp_path / "records.sqlite3")
    await queue.open(["main", LOG_STREAM])
    return queue


async def test_sampling_and_rate_limit_count_what_they_leave_out(tmp_path: Path, manifest: Manifest) -> None:
    queue = await queue_at(tmp_path)
    now = [100.0]  # a clock of our own: the test does not depend on where a second begins
    collector = Collector(queue, sample_every=2, max_records_per_s=3, clock=lambda: now[0])
    collector.add_pipeline("main")
    for _ in range(10):  # one second: every 2nd of 10 is 5, the limit keeps 3
        collector.inferred(inference(manifest, 1475.0))
    now[0] = 101.0
    for _ in range(2):
        collector.inferred(inference(manifest, 1475.0))
    await queue.flush()
    records = [parse_envelope(e).record for e in (await queue.fetch("main", 0)).envelopes]
    assert len(records) == 4 and all(isinstance(r, PredictionRecord) for r in records)
    stats = collector.statistics("main")
    assert stats.inferences == 12 and stats.sampled_out == 8
    first = records[0]
    assert isinstance(first, PredictionRecord) and first.part_key == "SN-1" and first.inputs["speed"] == 1475.0
    await queue.close()


async def test_statistics_count_on_the_reference_bins_and_survive_a_restart(tmp_path: Path, manifest: Manifest) -> None:
    queue = await queue_at(tmp_path)
    collector = Collector(queue)
    collector.add_pipeline("main")
    edges = manifest.reference_stats["speed"].bin_edges
    inside = (edges[0] + edges[1]) / 2
    collector.inferred(inference(manifest, inside, latency=2.0))
    collector.inferred(inference(manifest, edges[0] - 1, latency=2.0))  # below the reference, inside valid range
    collector.inferred(inference(manifest, 99999.0, status=quality.BAD_OUT_OF_RANGE, latency=0))
    for _ in range(97):
        collector.inferred(inference(manifest, inside, latency=0.5))
    stats = collector.statistics("main")
    speed = stats.features["speed"]
    assert speed.counts[0] == 98 and speed.below == 1 and speed.out_of_range == 1
    assert stats.bad_outputs == {"0x803C0000": 1} and stats.inferences == 100
    assert sum(stats.latency_counts) == 99
    assert stats.p50_ms() is not None and 0.5 <= stats.p50_ms() < 0.5 * 1.26  # type: ignore[operator]
    assert stats.p99_ms() is not None and 2.0 <= stats.p99_ms() < 2.0 * 1.26  # type: ignore[operator]
    await collector.publish_statistics()
    await queue.close()

    again = await queue_at(tmp_path)
    restarted = Collector(again)
    restarted.add_pipeline("main")
    assert restarted.statistics("main") == stats
    await again.close()


def test_quantiles_of_an_empty_histogram_are_none() -> None:
    assert PipelineStatistics(pipeline="main").p50_ms() is None


async def test_log_forwarder_is_bounded_and_not_recursive(tmp_path: Path) -> None:
    queue = await queue_at(tmp_path)
    forwarder = LogForwarder(queue, asyncio.get_running_loop(), max_per_s=5, clock=lambda: 7.0)
    logger = logging.getLogger("test.forwarder")
    logger.addHandler(forwarder)
    logger.propagate = False
    try:
        logger.info("not recorded")
        for i in range(8):
            logger.error("failure %d", i)
        await asyncio.to_thread(logger.warning, "from a thread")
        await asyncio.sleep(0.05)
    finally:
        logger.removeHandler(forwarder)
        logger.propagate = True
    await queue.flush()
    records = [parse_envelope(e).record for e in (await queue.fetch(LOG_STREAM, 0)).envelopes]
    assert [r.message for r in records if isinstance(r, LogRecord)] == [f"failure {i}" for i in range(5)]
    assert forwarder.dropped == 4  # 3 errors and the thread's warning, beyond 5 a second
    await queue.close()


def test_feedback_and_part_key_leave_the_digest_and_the_fit_alone(manifest: Manifest) -> None:
    tag = {"endpoint": "opc.tcp://127.0.0.1:4840/", "node_id": "ns=2;s=X"}
    plain = Binding.model_validate({"inputs": {f.name: tag for f in manifest.input_features()}})
    extended = Binding.model_validate(plain.model_dump() | {"feedback": tag, "part_key": tag})
    assert plain.to_json() == Binding.model_validate_json(plain.to_json()).to_json()
    assert "feedback" not in plain.to_json() and plain.digest() != extended.digest()
    assert extended.problems_with(manifest) == [] == plain.problems_with(manifest)


async def test_batched_statistics_count_exactly_as_one_by_one(tmp_path: Path, manifest: Manifest) -> None:
    """Predictions with all inputs Good (``Inference.values``) are counted a batch at a time with numpy; what is
    read counts each of them exactly as FeatureCounts.add does one by one, read between batches or mid-batch."""
    import numpy as np

    from edge_node.monitor.collector import _Binned
    from sdk.monitor.statistics import FeatureCounts

    queue = await queue_at(tmp_path)
    try:
        collector = Collector(queue)
        collector.add_pipeline("main")
        features = manifest.input_features()
        speed = [f.name for f in features].index("speed")
        edges = manifest.reference_stats["speed"].bin_edges
        rng = np.random.default_rng(7)
        # Inside and outside the reference, on every edge (the last closes its bin), a few thousand to span batches.
        values = list(rng.uniform(edges[0] - 50, edges[-1] + 50, 3000)) + list(edges) * 3
        expected = FeatureCounts(bin_edges=list(edges), counts=[0] * (len(edges) - 1))
        rows = 0
        for i, value in enumerate(values):
            one = inference(manifest, float(value))
            vector = np.ones(len(features))
            vector[speed] = value
            collector.inferred(Inference(**{**vars(one), "values": vector}))
            expected.add(float(value))
            rows += 1
            if i in (5, 1500):  # read mid-batch: the waiting rows are counted first
                got = collector.statistics("main").features["speed"]
                assert (got.counts, got.below, got.above) == (expected.counts, expected.below, expected.above)
        assert rows > len(_Binned(PipelineStatistics(pipeline="x"), manifest).rows)  # more than one batch
        stats = collector.statistics("main")
        got = stats.features["speed"]
        assert stats.inferences == len(values)
        assert (got.counts, got.below, got.above, got.bad, got.out_of_range) == (
            expected.counts,
            expected.below,
            expected.above,
            0,
            0,
        )
        assert got.counts[-1] >= 3 and got.above > 0 and got.below > 0  # the edges were exercised
        # A record of such a prediction reads as one made feature by feature.
        one = inference(manifest, 7.0)
        vector = np.ones(len(features))
        vector[speed] = 7.0
        fast = collector._prediction(Inference(**{**vars(one), "values": vector}))
        assert fast.model_dump() == collector._prediction(one).model_dump()
    finally:
        await queue.close()
